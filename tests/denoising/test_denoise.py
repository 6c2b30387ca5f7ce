"""The denoise app, its export, resume, init_from; denoise_image; compare."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv import compare
from cifar_denoise_adv import denoise
from cifar_denoise_adv import denoise_image
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import compare as compare_lib
from cifar_denoise_adv.denoising import denoise_job
from cifar_denoise_adv.denoising import inference

TINY = dict(
    num_blocks=1,
    filters=4,
    downscale=2,
    batch_size=8,
    num_examples=6,
    validation_images=4,
)


def _argv(app, **settings):
    return [app] + [f"--{name}={value}" for name, value in settings.items()]


def _run_app(data_dir, run_dir, **overrides):
    settings = dict(TINY, data_dir=data_dir, run_dir=str(run_dir), epochs=1)
    settings.update(overrides)
    denoise.APP.job(denoise.APP.parse(_argv("denoise", **settings)), log=print)
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.conftest import write_cifar

    root = tmp_path_factory.mktemp("denoise")
    data_dir, _ = write_cifar(root / "data", "python", per_file=4)
    run_dir = root / "run"
    return data_dir, run_dir, _run_app(data_dir, run_dir)


def test_smoke_run_writes_every_promised_output(finished_run):
    _, run_dir, metrics = finished_run
    for name in (
        "metrics.json",
        "flags.cfg",
        "recovery_examples.png",
        "psnr_histogram.png",
        "psnr_per_image.npz",
        "model.keras",
        "saved_model/saved_model.pb",
    ):
        assert (run_dir / name).exists(), name
    assert any("events" in n for _, _, f in os.walk(run_dir / "tb") for n in f)
    assert metrics["images"] == {"train": 16, "validation": 4, "test": 4}
    assert (
        "validation"
        in metrics["evaluated_on"][
            "history (val_*), TensorBoard validation, image grids"
        ]
    )
    assert len(metrics["history"]["val_psnr"]) == 1
    assert metrics["sigma"] == 0.1 and metrics["test_noise_seed"] == 1
    assert set(metrics["psnr_db"]) == {"recovered", "noisy", "gain"}
    assert metrics["train_images_per_s"] > 0 and metrics["inference_images_per_s"] > 0
    assert "tensorflow" in metrics["versions"]
    assert len(metrics["history"]["val_psnr"]) == 1
    per_image = np.load(run_dir / "psnr_per_image.npz")
    assert per_image["recovered"].shape == (4,)
    np.testing.assert_allclose(
        per_image["recovered"].mean(),
        metrics["psnr_db"]["recovered"]["mean"],
        atol=1e-6,
    )
    assert "--arch=resnet" in (run_dir / "flags.cfg").read_text()


def test_export_reloads_with_the_same_outputs(finished_run):
    _, run_dir, metrics = finished_run
    assert metrics["saved_model_max_abs_difference"] < 1e-5
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    from_keras = inference.load_denoiser(str(run_dir / "model.keras"))(images)
    from_saved = inference.load_denoiser(str(run_dir / "saved_model"))(images)
    np.testing.assert_allclose(from_keras, from_saved, atol=1e-5)


def test_the_saved_model_signature_names_its_tensors(finished_run):
    _, run_dir, _ = finished_run
    signature = tf.saved_model.load(str(run_dir / "saved_model")).signatures[
        "serving_default"
    ]
    assert list(signature.structured_input_signature[1]) == ["noisy"]
    assert list(signature.structured_outputs) == ["denoised"]
    images = np.zeros((1, 32, 32, 3), np.float32)
    assert signature(noisy=tf.constant(images))["denoised"].shape == (1, 32, 32, 3)


def test_resume_after_an_interrupted_run(finished_run, tmp_path, monkeypatch):
    data_dir, _, _ = finished_run
    run_dir = tmp_path / "run"

    def crash_after_first_epoch(self, epoch, logs=None):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(summaries.ImageGrids, "on_epoch_end", crash_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            _run_app(data_dir, run_dir, epochs=3)
    assert training.completed_epochs(str(run_dir)) == 1
    assert not (run_dir / "metrics.json").exists()

    metrics = _run_app(data_dir, run_dir, epochs=3)
    assert metrics["resumed_from_epoch"] == 1
    # The history and seconds of every epoch, the interrupted piece's included.
    assert len(metrics["history"]["loss"]) == 3
    assert len(metrics["history"]["val_psnr"]) == 3
    assert metrics["train_seconds_total"] > metrics["train_seconds_this_run"] > 0
    model = keras.models.load_model(run_dir / "model.keras")
    steps_per_epoch = 2  # 16 images (20 minus 4 held out), batch 8
    assert int(model.optimizer.iterations.numpy()) == 3 * steps_per_epoch

    # Complete: the same command again trains nothing and re-evaluates.
    again = _run_app(data_dir, run_dir, epochs=3)
    assert again["resumed_from_epoch"] == 3 and again["train_seconds_this_run"] == 0
    assert again["history"] == metrics["history"]
    assert again["train_seconds_total"] == metrics["train_seconds_total"]
    assert again["train_images_per_s"] == metrics["train_images_per_s"]
    assert again["psnr_db"]["recovered"]["mean"] == pytest.approx(
        metrics["psnr_db"]["recovered"]["mean"], abs=1e-4
    )


def test_denoise_image_on_a_50x40_png_and_a_folder(finished_run, tmp_path):
    _, run_dir, _ = finished_run
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    inference.write_png(str(folder / "a.png"), rng.uniform(size=(50, 40, 3)))
    gray = tf.io.encode_png(np.zeros((8, 8, 1), np.uint8)).numpy()
    (folder / "gray.png").write_bytes(gray)
    (folder / "broken.jpg").write_bytes(b"not an image")
    app = denoise_image.APP

    def run(**settings):
        logged = []
        record = app.job(app.parse(_argv("denoise_image", **settings)), logged.append)
        return app.exit_status(record), "\n".join(logged)

    status, _ = run(
        model=run_dir, input=folder / "a.png", output=tmp_path / "a_out.png"
    )
    assert status == 0
    assert inference.read_rgb_image(str(tmp_path / "a_out.png")).shape == (50, 40, 3)

    status, logged = run(
        model=run_dir / "model.keras", input=folder, output=tmp_path / "out"
    )
    assert status == 1
    assert os.listdir(tmp_path / "out") == ["a.png"]
    assert "gray.png: a grayscale image; expected RGB" in logged
    assert "broken.jpg: cannot read it" in logged

    with pytest.raises(UserError, match="--model"):
        inference.load_denoiser(str(tmp_path))
    with pytest.raises(UserError, match="--input"):
        inference.plan_outputs(str(tmp_path / "nope"), str(tmp_path))


def test_compare_pairs_two_runs(finished_run, tmp_path):
    _, run_dir, metrics = finished_run
    other = tmp_path / "other"
    other.mkdir()
    per_image = np.load(run_dir / "psnr_per_image.npz")
    outputs.save_npz(
        str(other / denoise_job.PSNR_FILE),
        recovered=per_image["recovered"] + np.array([1.0, 2.0, 3.0, 2.0]),
        noisy=per_image["noisy"],
    )
    outputs.write_json(str(other / "metrics.json"), {**metrics, "model": "other"})
    logged = []
    config = compare.APP.parse(
        ["compare", f"--runs={run_dir},{other}", f"--run_dir={tmp_path / 'c'}"]
    )
    compare.APP.job(config, log=logged.append)
    result = json.loads((tmp_path / "c" / "comparison.json").read_text())
    pair = result["pairs"][0]
    assert pair["mean_difference"] == pytest.approx(2.0)
    assert pair["standard_error"] == pytest.approx(np.std([1, 2, 3, 2], ddof=1) / 2)
    assert pair["fraction_better"] == 1.0
    assert "paired mean difference" in "\n".join(logged)
    assert (tmp_path / "c" / "comparison.md").read_text() == logged[0]

    outputs.write_json(str(other / "metrics.json"), {**metrics, "sigma": 0.2})
    with pytest.raises(UserError, match="same noisy test images"):
        compare_lib.compare_runs([str(run_dir), str(other)])


def test_mirrored_strategy_over_two_logical_cpus(finished_run, tmp_path):
    data_dir, _, _ = finished_run
    # Logical devices must be set before TensorFlow starts: a fresh process.
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from cifar_denoise_adv.denoising import denoise_job
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        from cifar_denoise_adv.core import training
        training.make_strategy = lambda name: strategy
        config = denoise_job.DenoiseConfig(
            num_blocks=1, filters=4, downscale=2, batch_size=8, epochs=1,
            validation_images=4, strategy="mirrored", run_dir={str(tmp_path / "run")!r},
            data_dir={data_dir!r})
        metrics = denoise_job.run(config, verbose=0)
        print("replicas", strategy.num_replicas_in_sync, metrics["psnr_db"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout
    assert (tmp_path / "run" / "metrics.json").exists()


def test_init_from_starts_with_the_other_runs_weights(finished_run, tmp_path):
    data_dir, run_dir, first = finished_run
    metrics = _run_app(
        data_dir, tmp_path / "second", init_from=str(run_dir), learning_rate=1e-12
    )
    # With a negligible learning rate the second run keeps the first's weights.
    assert metrics["psnr_db"]["recovered"]["mean"] == pytest.approx(
        first["psnr_db"]["recovered"]["mean"], abs=1e-3
    )
    assert metrics["initialised_from"]["epochs"] == 1
    other_arch = dict(num_blocks=2)
    with pytest.raises(UserError, match="does not match"):
        _run_app(data_dir, tmp_path / "third", init_from=str(run_dir), **other_arch)


def _lone_npy(path):
    with open(path, "wb") as f:
        np.save(f, np.zeros(4))


@pytest.mark.parametrize(
    "content, fault",
    [
        (bytes(range(7, 250, 3)) * 4, "not a valid .npz file (not a zip archive"),
        (b"not an npz at all", "not a valid .npz file (not a zip archive"),
        (b"", "not a valid .npz file (empty)"),
        (b"PK\x03\x04 truncated zip", "not a valid .npz file (truncated or corrupt"),
        (_lone_npy, "not a valid .npz file (a single .npy array)"),
        ({"recovered": np.array([{}], dtype=object)}, "it holds pickled Python"),
        ({"noisy": np.zeros(4)}, "no array 'recovered'"),
        ({"recovered": np.zeros((2, 2))}, "'recovered' has shape (2, 2)"),
    ],
)
def test_compare_over_a_bad_psnr_file_names_its_fault_in_one_line(
    finished_run, tmp_path, content, fault
):
    _, run_dir, _ = finished_run
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.json").write_text((run_dir / "metrics.json").read_text())
    path = other / denoise_job.PSNR_FILE
    if isinstance(content, dict):
        np.savez(path, **content)
    elif callable(content):
        content(path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError) as error:
        compare_lib.compare_runs([str(run_dir), str(other)])
    message = str(error.value)
    assert message.startswith(f"{path}: {fault}") and "\n" not in message
    assert "expected the psnr_per_image.npz a denoise run writes" in message
    if "pickled" not in fault:
        assert "pickled" not in message


@pytest.mark.parametrize(
    "content, fault",
    [
        (bytes(range(128, 256)), "not valid JSON ('utf-8' codec can't decode"),
        (b"not json", "not valid JSON (Expecting value"),
        (b"[1, 2]", "holds an array, not a JSON object"),
    ],
)
def test_compare_over_a_bad_metrics_file_names_its_fault_in_one_line(
    finished_run, tmp_path, content, fault
):
    _, run_dir, _ = finished_run
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(run_dir / denoise_job.PSNR_FILE, other)
    (other / "metrics.json").write_bytes(content)
    with pytest.raises(UserError) as error:
        compare_lib.compare_runs([str(run_dir), str(other)])
    assert str(error.value).startswith(f"{other / 'metrics.json'}: {fault}")
    assert str(error.value).endswith("expected the metrics.json a denoise run writes.")


def test_the_runs_keras_file_reloads_in_a_fresh_process(finished_run, tmp_path):
    from tests.reload import assert_keras_files_reload

    _, run_dir, _ = finished_run
    assert_keras_files_reload(run_dir, ["model.keras"], tmp_path=tmp_path)
