"""Smoke runs of the targeted and universal apps on a tiny classifier."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv import classify
from cifar_denoise_adv import sweep as sweep_app
from cifar_denoise_adv import targeted
from cifar_denoise_adv import universal
from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.adversarial import sweep as sweep_lib
from cifar_denoise_adv.adversarial import targeted_job
from cifar_denoise_adv.adversarial import universal_job
from cifar_denoise_adv.adversarial import universal_progress
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import export
from cifar_denoise_adv.core import precision as precision_lib
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models
from tests.conftest import folder_snapshot
from tests.conftest import tensorboard_events
from tests.conftest import write_cifar


def _quiet(message):
    del message


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack_apps")
    data_dir, _ = write_cifar(root / "data", "python", per_file=4)
    run_dir = root / "classifier"
    config = classify.APP.parse(
        [
            "classify",
            f"--data_dir={data_dir}",
            f"--run_dir={run_dir}",
            "--width=4",
            "--epochs=1",
            "--batch_size=8",
            # The rate the old shared flag gave: 0.1 diverges on 20 images.
            "--learning_rate=1e-3",
            "--warmup_epochs=0.5",
            "--validation_images=4",
        ]
    )
    classify.APP.job(config, log=_quiet)
    return data_dir, str(run_dir)


@pytest.mark.parametrize("attack", ["fgsm", "iterative", "apgd_dlr"])
def test_targeted_app_writes_every_promised_output(classifier_run, tmp_path, attack):
    data_dir, classifier_dir = classifier_run
    run_dir = tmp_path / attack
    config = targeted.APP.parse(
        [
            "targeted",
            f"--data_dir={data_dir}",
            f"--classifier={classifier_dir}",
            f"--run_dir={run_dir}",
            f"--attack={attack}",
            "--epsilon=0.03",
            "--num_steps=3",
            "--step_size=0.01",
            "--indices=0,1,2,3",
            "--target_mode=least_likely",
            "--num_examples=4",
        ]
    )
    logged = []
    targeted.APP.job(config, log=logged.append)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == attack and metrics["images"] == 4
    # The rates in TensorBoard too, and a warning when the classifier is weak.
    events = tensorboard_events(run_dir / "tb")
    for name in ("targeted_success_rate", "untargeted_misclassification_rate"):
        assert events[name] == [(0, pytest.approx(metrics[name]))]
    assert events["original_perturbed_perturbation"] == [(0, 4)]
    _check_weak_classifier_warnings(metrics, logged)
    assert metrics["settings"]["epsilon"] == 0.03
    assert metrics["linf_norm"]["max"] <= 0.03 + 1e-6
    assert metrics["psnr_perturbed_vs_original_db"]["median"] > 25
    assert metrics["perturbation_figure_scale"] == pytest.approx(0.5 / 0.03)
    for i in range(4):
        assert (run_dir / f"example_{i}.png").stat().st_size > 0
    assert (run_dir / "flags.cfg").exists() and list((run_dir / "tb").iterdir())
    _, labels = data.read_local_arrays(data_dir, "test")
    assert metrics["indices"] == [0, 1, 2, 3]
    targets = np.array(metrics["targets"])
    assert np.all(targets != labels[:4])
    # The rates are those of the recorded predictions after the attack.
    after = np.array(metrics["predicted_after"])
    success = metrics["targeted_success_rate"]
    assert success == pytest.approx(np.mean(after == targets))
    misclassified = metrics["untargeted_misclassification_rate"]
    assert misclassified == pytest.approx(np.mean(after != labels[:4]))


@pytest.mark.parametrize("level", [None, 0, 1])
def test_attack_apps_attack_the_classifier_with_the_chosen_tta(
    classifier_run, tmp_path, level
):
    """--classifier_tta: unset attacks the model as exported (level 2), 0 the
    network alone (its accuracy is the classify run's without TTA)."""
    data_dir, classifier_dir = classifier_run
    flag = [] if level is None else [f"--classifier_tta={level}"]
    run_dir = tmp_path / "tta"
    config = targeted.APP.parse(
        [
            "targeted",
            f"--data_dir={data_dir}",
            f"--classifier={classifier_dir}",
            f"--run_dir={run_dir}",
            "--epsilon=0.03",
            "--indices=0,1",
            "--num_examples=2",
            *flag,
        ]
    )
    targeted.APP.job(config, log=_quiet)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    used = 2 if level is None else level
    assert metrics["classifier_tta"] == {"exported": 2, "used": used}
    trained = json.loads((Path(classifier_dir) / "metrics.json").read_text())
    expected = {2: "test_accuracy", 0: "test_accuracy_without_tta"}
    if used in expected:
        assert metrics["clean_accuracy_all_test"] == pytest.approx(
            trained[expected[used]]
        )
    network, exported = classifier.test_time_augmentation(
        classifier.load_attacked(config)[0]
    )
    assert exported == used


def _check_weak_classifier_warnings(metrics, logged):
    """A warning in the output and metrics.json for each accuracy below 50%."""
    accuracies = dict(metrics.get("clean_accuracy") or {})
    if "clean_accuracy_on_chosen" in metrics:
        accuracies = {
            "chosen": metrics["clean_accuracy_on_chosen"],
            "all": metrics["clean_accuracy_all_test"],
        }
    weak = sum(accuracy < 0.5 for accuracy in accuracies.values())
    said = [w for w in metrics["warnings"] if "the classifier is right on only" in w]
    assert len(said) == weak
    assert [line for line in logged if line.startswith("warning: ")] == [
        f"warning: {warning}" for warning in metrics["warnings"]
    ]


def test_weak_classifier_warnings_name_the_images_and_the_accuracy():
    warnings = classifier.weak_classifier_warnings(
        {"test images attacked": (0.18, 400), "test images": (0.76, 768)}
    )
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "the classifier is right on only 18.0% of the 400 test images attacked "
        "(below 50%)"
    )


def test_fewer_correct_images_than_asked_for_is_said_in_one_line():
    # The instance: --num_images=5000, 59 of 768 test images right.
    config = targeted_job.TargetedConfig(num_images=5000, seed=0)
    labels = np.arange(768) % 10
    predicted = np.where(np.arange(768) < 59, labels, (labels + 1) % 10)
    chosen = targeted_job.choose_images(config, predicted, labels)
    assert len(chosen) == 59
    assert targeted_job._clamped(config, len(chosen), 768) == [
        "--num_images=5000: only 59 of the 768 test images are classified correctly "
        "(the only ones a targeted attack is measured on), so 59 are attacked"
    ]
    assert targeted_job._clamped(config, 5000, 10000) == []
    given = targeted_job.TargetedConfig(num_images=5000, indices=(1, 2))
    assert targeted_job._clamped(given, 2, 768) == []


def test_choose_images_and_targets():
    config = targeted_job.TargetedConfig(num_images=3, seed=0)
    labels = np.array([0, 1, 2, 3, 4, 5])
    predicted = np.array([0, 1, 9, 3, 9, 5])
    chosen = targeted_job.choose_images(config, predicted, labels)
    assert len(chosen) == 3 and set(chosen) <= {0, 1, 3, 5}

    logits = np.eye(10)[labels] + 0.01 * np.arange(10)
    random_targets = targeted_job.choose_targets(config, logits, labels)
    assert np.all(random_targets != labels) and random_targets.max() < 10
    least = targeted_job.choose_targets(
        targeted_job.TargetedConfig(target_mode="least_likely"), logits, labels
    )
    assert np.all(least == np.where(labels == 0, 1, 0))
    # A misclassified image whose least likely class is its own class gets
    # the least likely of the others.
    wrong = np.zeros((1, 10))
    wrong[0, 4], wrong[0, 2] = -5.0, -1.0
    least_wrong = targeted_job.choose_targets(
        targeted_job.TargetedConfig(target_mode="least_likely"), wrong, np.array([4])
    )
    assert least_wrong.tolist() == [2]
    given = targeted_job.TargetedConfig(target_mode="given", targets=(7,))
    assert np.all(targeted_job.choose_targets(given, logits, labels) == 7)
    with pytest.raises(UserError, match="true class"):
        targeted_job.choose_targets(
            targeted_job.TargetedConfig(target_mode="given", targets=(3,)),
            logits,
            labels,
        )
    with pytest.raises(UserError, match="--indices"):
        targeted_job.choose_images(
            targeted_job.TargetedConfig(indices=(9,)), predicted, labels
        )
    with pytest.raises(UserError, match="--targets"):
        targeted_job.TargetedConfig(target_mode="given")


@pytest.mark.parametrize("method", ["deepfool", "sgd"])
def test_universal_app_writes_every_promised_output(classifier_run, tmp_path, method):
    data_dir, classifier_dir = classifier_run
    run_dir = tmp_path / method
    config = universal.APP.parse(
        [
            "universal",
            f"--data_dir={data_dir}",
            f"--classifier={classifier_dir}",
            f"--run_dir={run_dir}",
            f"--method={method}",
            "--xi=8/255",
            "--max_passes=1",
            "--max_iter_deepfool=3",
            "--sgd_epochs=1",
            "--num_examples=4",
        ]
    )
    logged = []
    universal.APP.job(config, log=logged.append)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == method
    assert metrics["images"] == {"train": 20, "test": 4}
    # TensorBoard: the rate after each pass, the final rates, v and examples.
    events = tensorboard_events(run_dir / "tb")
    per_pass = events["fooling_rate/train_after_each_pass"]
    rates = metrics["history"]["fooling_rates"]
    assert per_pass == [(i + 1, pytest.approx(r)) for i, r in enumerate(rates)]
    passes = metrics["history"]["passes"]
    for name in ("fooling_rate_train", "fooling_rate_test"):
        assert events[f"final/{name}"] == [(passes, pytest.approx(metrics[name]))]
    assert events["perturbation_v_scaled"] == [(passes, 1)]
    assert events["fooled_test_images_first/x_and_x_plus_v"] == [(passes, 4)]
    _check_weak_classifier_warnings(metrics, logged)
    v = np.load(run_dir / "v.npy")
    assert v.shape == (32, 32, 3)
    assert np.abs(v).max() <= 8 / 255 + 1e-6
    assert metrics["v_linf"] == pytest.approx(float(np.abs(v).max()))
    assert "differs from its prediction on x" in metrics["fooling_definition"]
    # The fooled test images, by clean and new prediction: as many as the
    # test rate says, and none that kept its prediction.
    flows = np.array(metrics["fooled_flows_test"])
    assert flows.shape == (10, 10) and np.all(np.diag(flows) == 0)
    assert flows.sum() == round(4 * metrics["fooling_rate_test"])
    # Each rate is what the saved v (or noise of the same norm and seed) does.
    model = classifier.load_classifier(classifier_dir)
    images = {
        split: data.load_arrays(split, data_dir)[0] for split in ("train", "test")
    }
    noise = attacks.random_perturbation_like(v.shape, 8 / 255, np.inf, seed=0)
    for split, count in (("train", 20), ("test", 4)):
        rate = metrics[f"fooling_rate_{split}"]
        assert rate * count == pytest.approx(round(rate * count))
        assert rate == pytest.approx(attacks.fooling_rate(model, images[split], v))
        assert metrics[f"random_noise_fooling_rate_{split}"] == pytest.approx(
            attacks.fooling_rate(model, images[split], noise)
        )
    # The chessboard baseline: the square that fools most training images,
    # its rates on both splits, and the verdict against both baselines.
    by_square = metrics["chessboard_fooling_rate_train_by_square"]
    assert sorted(int(s) for s in by_square) == [1, 2, 4, 8]
    square = metrics["chessboard_square"]
    assert by_square[str(square)] == max(by_square.values())
    board = attacks.chessboard_perturbation(v.shape, 8 / 255, np.inf, square)
    for split in ("train", "test"):
        assert metrics[f"chessboard_fooling_rate_{split}"] == pytest.approx(
            attacks.fooling_rate(model, images[split], board)
        )
    assert metrics["beats_baselines_test"] == (
        metrics["fooling_rate_test"]
        > max(
            metrics["random_noise_fooling_rate_test"],
            metrics["chessboard_fooling_rate_test"],
        )
    )
    for name in ("perturbation.png", "fooled_flows.png", "examples.png", "flags.cfg"):
        assert (run_dir / name).stat().st_size > 0, name


def test_universal_sweep(classifier_run, denoiser_run, tmp_path):
    data_dir, classifier_dir = classifier_run
    config = sweep_lib.SweepConfig(
        max_passes=1,
        max_iter_deepfool=2,
        sgd_epochs=1,
        num_examples=4,
        classifier=classifier_dir,
        run_dir=str(tmp_path),
        data_dir=data_dir,
    )
    logged = []

    def sweep(config, xis):
        return sweep_app.APP.job(
            dataclasses.replace(config, sweep_xi=tuple(xis)), log=logged.append
        )

    results = sweep(config, [2 / 255, 8 / 255])
    assert len(results["sgd"]["test"]) == 2 and len(results["random"]["train"]) == 2
    assert len(results["chessboard"]["test"]) == 2
    # The rate against xi as TensorBoard scalars, step = xi x 255.
    events = tensorboard_events(tmp_path / "tb")
    for method in ("deepfool", "sgd", "random", "chessboard"):
        for split in ("train", "test"):
            logged_rates = events[f"fooling_rate_vs_xi/{method}_{split}"]
            assert [step for step, _ in logged_rates] == [2, 8]
            expected = results[method][split]
            assert [rate for _, rate in logged_rates] == pytest.approx(expected)
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert json.loads((tmp_path / "sweep.json").read_text())["xi"] == results["xi"]
    train_images = json.loads((tmp_path / "sgd_xi2.0" / "metrics.json").read_text())
    assert results["images"] == train_images["images"]
    seconds = results["sgd"]["seconds"] + results["deepfool"]["seconds"]
    assert results["compute_seconds"] == pytest.approx(sum(seconds))
    # After each run it computed: the minutes the other runs need.
    remaining = [
        re.fullmatch(
            r"sweep: this (\w+) run took [\d.]+ s; about [\d.]+ minutes left at "
            r"this rate \((\d) runs?(; \w+ not yet timed)?\)",
            line,
        )
        for line in logged
        if "minutes left" in line
    ]
    assert all(remaining) and len(remaining) == 3
    first, second = universal_job.METHODS
    assert [m.groups() for m in remaining] == [
        (first, "3", f"; {second} not yet timed"),
        (first, "2", f"; {second} not yet timed"),
        (second, "1", None),
    ]

    # Run again: every (method, xi) run is reused, none recomputed.
    logged.clear()
    again = sweep(config, [8 / 255, 2 / 255])
    assert not [line for line in logged if "minutes left" in line]
    assert again["sgd"] == results["sgd"] and again["deepfool"] == results["deepfool"]
    assert sum("reused" in line for line in logged) == 4
    # One closing line per method: the budget reaching the level, or that none did.
    for method in ("deepfool", "sgd"):
        xi = again[method]["xi_reaching_level_train"]
        expected = (
            f"sweep: {method} reaches 65.17% of the training images at xi = "
            f"{xi * 255:.2f}/255"
            if xi is not None
            else f"sweep: {method} does not reach 65.17% of the training images at "
            "any xi of the grid (largest 8/255)"
        )
        assert expected in logged
    # A changed setting reruns the runs it concerns.
    logged.clear()
    sweep(dataclasses.replace(config, sgd_epochs=2), [2 / 255])
    assert [line for line in logged if "reused" in line] == [
        "sweep: deepfool at xi 2.0/255: done before, reused"
    ]

    # A denoiser as --classifier is refused before --overwrite removes anything.
    before = folder_snapshot(tmp_path)
    bad = dataclasses.replace(config, classifier=denoiser_run, overwrite=True)
    with pytest.raises(UserError, match=_NOT_A_CLASSIFIER):
        sweep(bad, [2 / 255])
    assert folder_snapshot(tmp_path) == before


def test_the_universal_loops_say_the_minutes_left_after_their_first_pass(
    monkeypatch,
):
    sgd = universal_job.UniversalConfig(method="sgd", sgd_epochs=10)
    assert universal_progress.remaining_line(sgd, 12.0) == (
        "epoch 1 took 12.0 s; about 1.8 minutes left at this rate (9 epochs)"
    )
    deepfool = universal_job.UniversalConfig(method="deepfool", max_passes=5)
    assert universal_progress.remaining_line(deepfool, 30.0) == (
        "pass 1 took 30.0 s; at most 2.0 minutes left at this rate (4 passes), "
        "fewer if it reaches the rate"
    )
    logged = []
    progress = universal_progress.lines(logged.append, "", sgd)
    monkeypatch.setattr(universal_progress.summaries, "write", lambda *a, **k: None)
    progress({"pass": 1, "fooling_rate": 0.5, "elapsed_s": 6.0})
    progress({"pass": 2, "fooling_rate": 0.6, "elapsed_s": 12.0})
    assert logged[1] == (
        "epoch 1 took 6.0 s; about 0.9 minutes left at this rate (9 epochs)"
    )
    assert len(logged) == 3


def test_the_sweep_is_its_own_app_and_the_universal_app_has_no_mode_flag():
    names = {f.name for f in dataclasses.fields(universal_job.UniversalConfig)}
    assert "sweep_xi" not in names
    with pytest.raises(UserError, match="--sweep_xi"):
        sweep_app.APP.parse(["sweep", "--sweep_xi="])
    # Each (method, xi) run is a universal job's config, the grid left out.
    config = sweep_app.APP.parse(["sweep", "--sweep_xi=2/255", "--sgd_epochs=3"])
    sub = config.universal("sgd", 2 / 255, "/tmp/x")
    assert isinstance(sub, universal_job.UniversalConfig)
    assert (sub.method, sub.xi, sub.sgd_epochs) == ("sgd", 2 / 255, 3)


def test_universal_config_rejects_a_final_step_above_the_first():
    with pytest.raises(UserError, match="--sgd_final_step_size"):
        universal_job.UniversalConfig(sgd_step_size=0.002, sgd_final_step_size=0.01)


def test_budget_reaching_interpolates_the_first_crossing():
    xis = [2.0, 4.0, 8.0]
    assert sweep_lib.budget_reaching(xis, [0.1, 0.5, 0.9], 0.7) == 6.0
    assert sweep_lib.budget_reaching(xis, [0.1, 0.7, 0.9], 0.7) == 4.0
    assert sweep_lib.budget_reaching(xis, [0.8, 0.9, 0.95], 0.7) == 2.0
    assert sweep_lib.budget_reaching(xis, [0.1, 0.2, 0.3], 0.7) is None
    assert sweep_lib.REFERENCE_FOOLING_RATE == 0.6517


def test_xi_parsing():
    assert config_lib.parse_number("10/255", "xi") == pytest.approx(10 / 255)
    assert config_lib.parse_number("0.05", "xi") == 0.05
    with pytest.raises(UserError, match="--xi"):
        config_lib.parse_number("ten", "xi")
    with pytest.raises(UserError, match="--xi"):
        config_lib.parse_number("1/0", "xi")
    assert universal.APP.parse(["universal", "--xi=10/255"]).xi == 10 / 255


@pytest.fixture(scope="module")
def denoiser_run(tmp_path_factory):
    """A run folder holding a denoiser: the wrong kind for --classifier."""
    folder = tmp_path_factory.mktemp("denoiser")
    export.save_keras(
        models.build_denoiser(1, 4, downscale=2), str(folder / training.KERAS_FILE)
    )
    return str(folder)


_NOT_A_CLASSIFIER = "^--classifier=.*the model takes inputs of shape"


def _universal(data_dir, classifier_dir, run_dir, *extra):
    return universal.APP.parse(
        [
            "universal",
            f"--data_dir={data_dir}",
            f"--classifier={classifier_dir}",
            f"--run_dir={run_dir}",
            "--method=sgd",
            "--xi=8/255",
            "--sgd_epochs=1",
            "--max_passes=1",
            "--max_iter_deepfool=2",
            "--num_examples=2",
            *extra,
        ]
    )


def test_a_run_refused_at_its_first_check_leaves_nothing_in_the_way(
    classifier_run, denoiser_run, tmp_path
):
    """A denoiser as --classifier: one line, no folder; the corrected command
    then runs there without --overwrite."""
    data_dir, classifier_dir = classifier_run
    run_dir = tmp_path / "u_bad"
    with pytest.raises(UserError, match=_NOT_A_CLASSIFIER):
        universal.APP.job(_universal(data_dir, denoiser_run, run_dir), log=_quiet)
    assert not run_dir.exists()
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=_NOT_A_CLASSIFIER):
        universal.APP.job(_universal(data_dir, denoiser_run, run_dir), log=_quiet)
    assert folder_snapshot(run_dir) == {"notes.txt": b"mine"}
    logged = []
    universal.APP.job(_universal(data_dir, classifier_dir, run_dir), log=logged.append)
    record = json.loads((run_dir / runs.RUN_FILE).read_text())
    assert record["state"] == "done" and record["foreign"] == ["notes.txt"]


def test_overwrite_with_a_bad_input_keeps_every_finished_attack_run(
    classifier_run, denoiser_run, tmp_path
):
    """The classifier and the data are checked before --overwrite removes
    the earlier run (the sweep: test_universal_sweep)."""
    data_dir, classifier_dir = classifier_run
    missing = str(tmp_path / "missing")
    targeted_argv = [
        "targeted",
        f"--run_dir={tmp_path / 'targeted'}",
        "--epsilon=0.03",
        "--indices=0,1",
        "--num_examples=1",
    ]

    def targeted_config(classifier_dir, data_dir, *extra):
        return targeted.APP.parse(
            [
                *targeted_argv,
                f"--classifier={classifier_dir}",
                f"--data_dir={data_dir}",
                *extra,
            ]
        )

    finished = {
        "targeted": (
            targeted.APP,
            targeted_config(classifier_dir, data_dir),
            [
                targeted_config(denoiser_run, data_dir, "--epsilon=0.02"),
                targeted_config(classifier_dir, missing, "--epsilon=0.02"),
            ],
        ),
        "universal": (
            universal.APP,
            _universal(data_dir, classifier_dir, tmp_path / "universal"),
            [
                _universal(data_dir, denoiser_run, tmp_path / "universal", "--xi=0.1"),
                _universal(missing, classifier_dir, tmp_path / "universal", "--xi=0.1"),
            ],
        ),
    }
    for name, (app, config, bad_configs) in finished.items():
        app.job(config, log=_quiet)
        before = folder_snapshot(tmp_path / name)
        for bad in bad_configs:
            with pytest.raises(UserError, match="^--(classifier|data_dir)="):
                app.job(dataclasses.replace(bad, overwrite=True), log=_quiet)
            assert folder_snapshot(tmp_path / name) == before, name


def test_classify_with_overwrite_and_a_bad_data_dir_keeps_the_run(
    classifier_run, tmp_path
):
    data_dir, classifier_dir = classifier_run
    run_dir = tmp_path / "classifier"
    shutil.copytree(classifier_dir, run_dir)
    before = folder_snapshot(run_dir)
    config = classify.APP.parse(
        [
            "classify",
            f"--data_dir={tmp_path / 'missing'}",
            f"--run_dir={run_dir}",
            "--width=8",
            "--overwrite",
        ]
    )
    with pytest.raises(UserError, match="^--data_dir="):
        classify.APP.job(config, log=_quiet)
    assert folder_snapshot(run_dir) == before


def test_attack_apps_take_the_precision_flag(classifier_run, tmp_path):
    """--precision re-creates the classifier under a Keras policy: its layers
    compute in that dtype, its logits stay float32, and float32 keeps the
    trained model's predictions."""
    data_dir, classifier_dir = classifier_run
    trained = json.loads((Path(classifier_dir) / "metrics.json").read_text())

    def targeted_run(name, *flags):
        config = targeted.APP.parse(
            [
                "targeted",
                f"--data_dir={data_dir}",
                f"--classifier={classifier_dir}",
                f"--run_dir={tmp_path / name}",
                "--epsilon=0.03",
                "--indices=0,1",
                "--num_examples=2",
                *flags,
            ]
        )
        targeted.APP.job(config, log=_quiet)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        return config, metrics

    config, metrics = targeted_run("f32", "--precision=float32")
    assert metrics["config"]["precision"] == "float32"
    assert metrics["clean_accuracy_all_test"] == pytest.approx(trained["test_accuracy"])
    model, _, _ = classifier.load_attacked(config)
    assert model.output.dtype == "float32"
    try:
        precision_lib.check_precision("mixed_bfloat16")
    except UserError:
        pytest.skip("this machine has no bfloat16 units")
    config, metrics = targeted_run("bf16", "--precision=mixed_bfloat16")
    model, _, _ = classifier.load_attacked(config)
    dtypes = {
        layer.compute_dtype
        for layer in model._flatten_layers(include_self=False)
        if layer.weights and not isinstance(layer, keras.Model)
    }
    assert dtypes == {"bfloat16"}
    assert model.output.dtype == "float32"
    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
    assert model(images).dtype == "float32"


def test_auto_attacks_in_the_trained_precision_where_native_else_float32(
    classifier_run, tmp_path, monkeypatch
):
    """The default --precision=auto: as trained where this CPU computes it
    natively; a bfloat16-trained classifier on an AVX2-only CPU in float32."""
    data_dir, classifier_dir = classifier_run
    trained = json.loads((Path(classifier_dir) / "metrics.json").read_text())
    argv = [
        "targeted",
        f"--data_dir={data_dir}",
        f"--classifier={classifier_dir}",
        "--epsilon=0.03",
        "--indices=0,1",
        "--num_examples=2",
    ]
    lines = []
    config = targeted.APP.parse([*argv, f"--run_dir={tmp_path / 'auto'}"])
    targeted.APP.job(config, log=lines.append)
    metrics = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert metrics["config"]["precision"] == "auto"
    assert metrics["precision"]["precision"] == trained["precision"]["precision"]
    assert metrics["precision"]["reason"].startswith("as trained; this CPU")
    assert f"precision: {trained['precision']['precision']} (as trained; " in "\n".join(
        lines
    )
    # An AVX2-only CPU, the classifier trained in bfloat16 (played).
    monkeypatch.setattr(
        precision_lib,
        "_read_cpuinfo",
        lambda: "model name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2 fma\n",
    )
    monkeypatch.setattr(precision_lib, "gpus", lambda: [])
    monkeypatch.setattr(
        precision_lib, "trained_precision", lambda model: "mixed_bfloat16"
    )
    lines = []
    config = targeted.APP.parse([*argv, f"--run_dir={tmp_path / 'avx2'}"])
    model, _, used = classifier.load_attacked(config, lines.append)
    assert used.precision == "float32" and used.device == "AMD EPYC 7B13"
    assert lines[-1] == (
        "precision: float32 (trained in mixed_bfloat16, which this machine would "
        "only emulate; this CPU has AVX2, no bfloat16 units)"
    )
    dtypes = {
        layer.compute_dtype
        for layer in model._flatten_layers(include_self=False)
        if layer.weights and not isinstance(layer, keras.Model)
    }
    assert dtypes == {"float32"}


def test_a_precision_the_machine_cannot_run_is_one_line(classifier_run, tmp_path):
    data_dir, classifier_dir = classifier_run
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU runs mixed_float16")
    config = targeted.APP.parse(
        [
            "targeted",
            f"--data_dir={data_dir}",
            f"--classifier={classifier_dir}",
            f"--run_dir={tmp_path / 'f16'}",
            "--precision=mixed_float16",
        ]
    )
    with pytest.raises(UserError, match="--precision=mixed_float16 needs a GPU"):
        targeted.APP.job(config, log=_quiet)
    assert not (tmp_path / "f16" / "metrics.json").exists()


def test_the_classifiers_keras_file_reloads_in_a_fresh_process(
    classifier_run, tmp_path
):
    from tests.reload import assert_keras_files_reload

    _, classifier_dir = classifier_run
    assert_keras_files_reload(
        classifier_dir, ["model.keras"], ["model.keras"], tmp_path=tmp_path
    )
