"""What a TF/Keras user expects of the package, tried in fresh processes.

`import cifar_denoise_adv` is enough to load a run's .keras file; an app
prints no TensorFlow start-up lines; the wheel that `pip install .` builds
ships the flag files and the console scripts, which work from any folder.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

from cifar_denoise_adv.adversarial import airbench
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import schedules
from cifar_denoise_adv.denoising import models
from tests.conftest import write_cifar

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONSOLE_SCRIPTS = {
    "cifar-noise": "cifar_denoise_adv.noise:APP.main",
    "cifar-denoise": "cifar_denoise_adv.denoise:APP.main",
    "cifar-compare": "cifar_denoise_adv.compare:APP.main",
    "cifar-denoise-image": "cifar_denoise_adv.denoise_image:APP.main",
    "cifar-classify": "cifar_denoise_adv.classify:APP.main",
    "cifar-targeted": "cifar_denoise_adv.targeted:APP.main",
    "cifar-universal": "cifar_denoise_adv.universal:APP.main",
    "cifar-defend": "cifar_denoise_adv.defend:APP.main",
    "cifar-study": "cifar_denoise_adv.study.__main__:APP.main",
}
STARTUP_MARKERS = ("oneDNN", "cudart_stub", "cuInit", "absl::InitializeLog", "I0000")


def _python(code_or_args, cwd, pythonpath=ROOT, **kwargs):
    """Runs a fresh Python (the user's environment: no TF_CPP_MIN_LOG_LEVEL)."""
    env = {k: v for k, v in os.environ.items() if k != console.LOG_LEVEL_ENV}
    env["PYTHONPATH"] = str(pythonpath)
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def test_keras_files_load_in_a_fresh_python_after_one_import(tmp_path):
    denoiser = models.build_denoiser(num_blocks=1, filters=4, downscale=2)
    denoiser.compile(optimizer="adam", loss="mse", metrics=[models.psnr])
    net = classifier.build_classifier(width=4)
    net.compile(optimizer="sgd", loss=classifier.SparseSmoothedCrossentropy(0.1))
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    # The classify app's default: airbench inside test-time augmentation,
    # trained with the triangle schedule.
    whitening = airbench.whitening_kernel(
        images, classifier.CIFAR10_MEAN, classifier.CIFAR10_STD
    )
    network = airbench.build_airbench(whitening, width=4, depth=3)
    network.compile(
        optimizer=keras.optimizers.SGD(schedules.Triangle(0.1, 10)),
        loss=classifier.SparseSmoothedCrossentropy(0.2),
    )
    tta = classifier.with_test_time_augmentation(network, 2)
    denoiser.save(tmp_path / "denoiser.keras")
    net.save(tmp_path / "classifier.keras")
    tta.save(tmp_path / "airbench.keras")
    np.savez(
        tmp_path / "expected.npz",
        images=images,
        denoised=denoiser.predict(images, verbose=0),
        logits=net.predict(images, verbose=0),
        airbench=tta.predict(images, verbose=0),
    )
    # Keras first, as many users write it: TensorFlow's import lines are out
    # before the package can filter them, but not the cuInit line.
    code = textwrap.dedent(
        """
        import keras
        import numpy as np

        import cifar_denoise_adv

        expected = np.load("expected.npz")
        for name, key in (
            ("denoiser", "denoised"), ("classifier", "logits"), ("airbench", "airbench")
        ):
            model = keras.saving.load_model(f"{name}.keras")
            got = model.predict(expected["images"], verbose=0)
            print(name, float(np.abs(got - expected[key]).max()))
        """
    )
    result = _python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    differences = dict(line.split() for line in result.stdout.splitlines())
    assert set(differences) == {"denoiser", "classifier", "airbench"}
    assert all(float(d) < 1e-5 for d in differences.values())
    if not console.has_nvidia_driver():
        assert "cuInit" not in result.stderr, result.stderr


def test_the_readmes_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Python use", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    # Where the example looks: the subset beside the checkout, the runs in it.
    checkout = tmp_path / "checkout"
    write_cifar(tmp_path / "shared" / "cifar10", "python", per_file=4)
    (checkout / "runs" / "resnet").mkdir(parents=True)
    (checkout / "runs" / "classifier").mkdir()
    models.build_denoiser(num_blocks=1, filters=4, downscale=2).save(
        checkout / "runs" / "resnet" / "model.keras"
    )
    # As the classify app exports it: the network inside test-time augmentation.
    classifier.with_test_time_augmentation(
        classifier.build_classifier(width=4), 2
    ).save(checkout / "runs" / "classifier" / "model.keras")
    result = _python(code, cwd=checkout)
    assert result.returncode == 0, result.stderr[-3000:]
    # NumPy in, NumPy out: `fooled.success.mean()` is a NumPy method.
    assert "DeepFool changes" in result.stdout
    assert "universal perturbation fools" in result.stdout
    # The package is imported first: no TensorFlow start-up lines.
    assert not [m for m in STARTUP_MARKERS if m in result.stderr], result.stderr


def test_an_app_prints_no_tensorflow_startup_lines(tmp_path):
    result = _python(["-m", "cifar_denoise_adv.noise", "--help"], cwd=tmp_path)
    assert "--target_psnr" in result.stdout, result.stderr[-3000:]
    # Our grouped help, not absl's: no file path header, no test/TPU flags.
    assert result.stdout.startswith("The `noise` app: ")
    assert "noise.py:" not in result.stdout and "test_tmpdir" not in result.stdout
    printed = result.stdout + result.stderr
    assert not [marker for marker in STARTUP_MARKERS if marker in printed], printed


def test_an_app_prints_its_own_lines_only(tmp_path):
    # No TensorFlow start-up lines, and a file TensorFlow cannot decode is one
    # line of ours (no C++ warnings, no op internals).
    models.build_denoiser(num_blocks=1, filters=4, downscale=2).save(
        tmp_path / "denoiser.keras"
    )
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    keras.utils.save_img(tmp_path / "in" / "good.png", pixels, scale=False)
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = _python(
        ["-m", "cifar_denoise_adv.denoise_image", "--model=denoiser.keras"]
        + ["--input=in", "--output=out"],
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "skipped in/bad.png: cannot read it as a PNG or JPEG image (Invalid PNG. "
        "Failed to initialize decoder.).",
        "denoised in/good.png",
        "1 of 2 images denoised into out",
    ]
    assert result.stderr == ""


@pytest.mark.parametrize(
    "line, noise",
    [
        ("WARNING: All log messages before absl::InitializeLog() is called", True),
        ("I0000 00:00:1796081815.653868   22743 port.cc:153] oneDNN custom", True),
        ("W0000 00:00:1796081815.1 22743 cpu_feature_guard.cc:9] This binary", True),
        (
            "E0000 00:00:1796081817.704666 22743 cuda_platform.cc:52] failed call "
            "to cuInit: INTERNAL: CUDA error",
            True,
        ),
        ("E0000 00:00:1796081817.7 22743 saver.cc:12] cannot write the file", False),
        ("Traceback (most recent call last):", False),
    ],
)
def test_startup_noise_is_told_from_what_matters(line, noise):
    assert console.is_startup_noise(line, nvidia_driver=False) is noise


def test_a_failed_cuinit_is_shown_where_an_nvidia_driver_is_loaded():
    line = "E0000 00:00:17.7 22743 cuda_platform.cc:52] failed call to cuInit: x"
    assert not console.is_startup_noise(line, nvidia_driver=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel `pip install .` builds, installed into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building writes build/ and egg-info
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for name in ("cifar_denoise_adv", "flags"):
        shutil.copytree(
            ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-w", str(root / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("*.whl")
    target = root / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target)]
        + [str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return wheel, target


def test_the_wheel_ships_the_flag_files_the_license_and_the_scripts(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    shipped = {
        n.split("/")[-1] for n in names if n.startswith("cifar_denoise_adv/flags/")
    }
    assert shipped == {p.name for p in (ROOT / "flags").glob("*.cfg")}
    assert any(n.endswith("LICENSE") for n in names)
    for script, target in CONSOLE_SCRIPTS.items():
        assert f"{script} = {target}" in scripts


def test_the_installed_flag_files_work_by_name_from_any_folder(installed, tmp_path):
    _, target = installed
    code = textwrap.dedent(
        """
        from cifar_denoise_adv import denoise
        from cifar_denoise_adv.core import apps

        print(apps.installed_flag_dir())
        config = denoise.APP.parse(["denoise", "--flagfile=plain.cfg"])
        print(config.arch, config.num_blocks, config.downscale)
        """
    )
    result = _python(code, cwd=tmp_path, pythonpath=target)
    assert result.returncode == 0, result.stderr[-3000:]
    folder, settings = result.stdout.splitlines()
    assert pathlib.Path(folder) == target / "cifar_denoise_adv" / "flags"
    assert settings == "plain 12 2"


def test_a_console_script_runs_help(installed, tmp_path):
    _, target = installed
    script = target / "bin" / "cifar-universal"
    env = {k: v for k, v in os.environ.items() if k != console.LOG_LEVEL_ENV}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [str(script), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "--max_passes" in result.stdout, result.stderr[-3000:]
    assert "The `universal` app" in result.stdout
    assert not [m for m in STARTUP_MARKERS if m in result.stdout + result.stderr]
