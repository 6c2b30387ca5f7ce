"""Every flag file parses with the app it names; flags are checked when parsed."""

import os
import pathlib
import subprocess
import sys

import pytest

from cifar_denoise_adv import classify
from cifar_denoise_adv import compare
from cifar_denoise_adv import defend
from cifar_denoise_adv import denoise
from cifar_denoise_adv import denoise_image
from cifar_denoise_adv import noise
from cifar_denoise_adv import sweep
from cifar_denoise_adv import targeted
from cifar_denoise_adv import universal
from cifar_denoise_adv.core import apps
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.study import __main__ as study
from cifar_denoise_adv.study import plan

FLAG_DIR = pathlib.Path(__file__).resolve().parent.parent / "flags"
FLAG_FILES = sorted(str(p) for p in FLAG_DIR.glob("*.cfg"))
APPS = {
    app.name: app
    for app in (
        noise.APP,
        denoise.APP,
        classify.APP,
        targeted.APP,
        universal.APP,
        sweep.APP,
        compare.APP,
        denoise_image.APP,
        defend.APP,
        study.APP,
    )
}


def _app_of(path):
    first_line = pathlib.Path(path).read_text().splitlines()[0]
    assert first_line.startswith("# app: "), "each flag file names its app first"
    name = first_line[len("# app: ") :].split(".")[0]
    assert name in APPS, f"{path}: unknown app {name!r}"
    return APPS[name]


def test_there_are_flag_files():
    assert FLAG_FILES
    assert {_app_of(path).name for path in FLAG_FILES} >= {
        "noise",
        "denoise",
        "classify",
        "targeted",
        "universal",
        "defend",
        "study",
    }


@pytest.mark.parametrize("path", FLAG_FILES, ids=lambda p: pathlib.Path(p).name)
def test_flag_file_parses_with_its_app(path, tmp_path, monkeypatch):
    # From another folder: nested --flagfile= lines still resolve.
    monkeypatch.chdir(tmp_path)
    app = _app_of(path)
    # An unknown flag name or an out-of-range value raises here.
    config = app.parse(["prog", f"--flagfile={path}"])
    assert isinstance(config, app.config)
    if app is study.APP:
        # The study's steps, as run_study reads them: each step's flag file
        # read by its app's parser.
        config = config_lib.resolve(config)
        steps = plan.plans(config, log=lambda message: None)
        configured = [s.name for s in plan.STEPS if config.flagfile(s)]
        assert [p.step.name for p in steps] == configured
        for step_plan in steps:
            name = step_plan.step.name
            assert step_plan.run_dir == os.path.join(config.study_dir, name)
            step_file = apps.find_flagfile(step_plan.flagfile)
            assert _app_of(step_file) is plan.APPS[step_plan.step.app]


def test_nested_flag_files_keep_the_including_files_values():
    classifier = classify.APP.parse(["prog", f"--flagfile={FLAG_DIR}/classifier.cfg"])
    cpu = classify.APP.parse(["prog", f"--flagfile={FLAG_DIR}/classifier_cpu.cfg"])
    assert (classifier.epochs, cpu.epochs) == (40, 30)
    assert (classifier.noise_augment, cpu.noise_augment) == (0.0, 0.1)
    assert (classifier.validation_images, cpu.validation_images) == (5000, 0)
    assert cpu.width == classifier.width == 64 and cpu.cutmix == 0.5


def test_a_flag_after_the_flagfile_overrides_it():
    path = FLAG_DIR / "noise.cfg"
    assert noise.APP.parse(["prog", f"--flagfile={path}"]).sigma == 0.1
    config = noise.APP.parse(["prog", f"--flagfile={path}", "--sigma=0.05"])
    assert config.sigma == 0.05
    config = universal.APP.parse(
        ["prog", f"--flagfile={FLAG_DIR}/universal.cfg", "--xi=4/255"]
    )
    assert config.xi == 4 / 255 and config.method == "sgd"


@pytest.mark.parametrize(
    "app, flag",
    [
        (noise.APP, "--sigma=-1"),
        (noise.APP, "--target_psnr=-3"),
        (denoise.APP, "--epochs=0"),
        (denoise.APP, "--learning_rate=0"),
        (denoise.APP, "--arch=unet"),
        (classify.APP, "--dropout=0.95"),
        (targeted.APP, "--epsilon=8"),
        (targeted.APP, "--targets=3,10"),
        (universal.APP, "--xi=10"),
        (sweep.APP, "--sweep_xi=2/255,0"),
        (universal.APP, "--delta=1.5"),
        (defend.APP, "--epsilons=2/255,8"),
        (defend.APP, "--eot_draws=0"),
        (defend.APP, "--reference_epsilon=3/255"),
        (study.APP, "--rerun=noise,nonsense"),
        # Ranges added by the audit of every setting (issue 18).
        (noise.APP, "--sigma=0"),
        (denoise.APP, "--sigma=0"),
        (classify.APP, "--cutout=33"),
        (classify.APP, "--seed=4294967296"),
        (universal.APP, "--overshoot=1.5"),
        (targeted.APP, "--step_size=0"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_flag(app, flag):
    name = flag.split("=")[0]
    with pytest.raises(UserError, match=f"^{name}="):
        app.parse(["prog", flag])


def test_pixel_values_in_0_255_units_get_a_hint():
    with pytest.raises(UserError, match="0-255 units: write 10/255"):
        universal.APP.parse(["prog", "--xi=10"])


def test_universal_xi_10_ends_in_the_line_that_says_how_to_write_it(tmp_path):
    # The command a user types: one line on stderr, status 2, nothing written.
    result = subprocess.run(
        [sys.executable, "-m", "cifar_denoise_adv.universal", "--xi=10"]
        + [f"--run_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=FLAG_DIR.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --xi=10: expected [0, 1] pixel units; 10 looks like 0-255 units: "
        "write 10/255 (= 0.039216)."
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_l2_budget_is_checked_against_the_l2_range():
    # Above 1 is fine for L2 (up to sqrt(32 * 32 * 3) = 55.4), not for L-inf.
    config = sweep.APP.parse(
        ["prog", "--norm=l2", "--xi=2", "--sgd_step_size=0.5", "--sweep_xi=1,4"]
    )
    assert (config.xi, config.sgd_step_size, config.sweep_xi) == (2.0, 0.5, (1, 4))
    with pytest.raises(UserError, match=r"^--xi=2: expected \[0, 1\] pixel units"):
        universal.APP.parse(["prog", "--norm=linf", "--xi=2"])
    with pytest.raises(UserError, match=r"^--xi=100: an L2 norm .* sqrt\(3072\)"):
        universal.APP.parse(["prog", "--norm=l2", "--xi=100"])
    with pytest.raises(UserError, match="^--sgd_step_size=2: expected"):
        universal.APP.parse(["prog", "--sgd_step_size=2"])  # L-inf: at most 1


@pytest.mark.parametrize(
    "app, flag, expected",
    [
        (universal.APP, "--delta=20", "--delta=20: expected a fraction in [0, 1]; "),
        (universal.APP, "--overshoot=2", "2 looks like a percentage: write 0.02."),
        (classify.APP, "--dropout=50", "50 looks like a percentage: write 0.5."),
        (classify.APP, "--seed=4294967296", "expected >= 0 and <= 4294967295."),
        (noise.APP, "--sigma=25", "25 looks like 0-255 units: write 25/255"),
    ],
)
def test_other_out_of_range_settings_say_what_to_write(app, flag, expected):
    with pytest.raises(UserError) as error:
        app.parse(["prog", flag])
    assert expected in str(error.value)


def test_a_value_that_is_not_a_number_is_refused_naming_the_flag():
    with pytest.raises(UserError, match="--xi"):
        universal.APP.parse(["prog", "--xi=ten"])
    with pytest.raises(UserError, match="--epochs"):
        denoise.APP.parse(["prog", "--epochs=many"])


@pytest.mark.parametrize(
    "app, flag",
    [
        (targeted.APP, "--sigma=0.5"),
        (targeted.APP, "--epochs=99"),
        (noise.APP, "--attack=fgsm"),
        (classify.APP, "--num_blocks=8"),
        (compare.APP, "--data_dir=/tmp"),
        (study.APP, "--epochs=3"),
    ],
)
def test_a_flag_of_another_app_is_refused_naming_it(app, flag):
    name = flag.split("=")[0]
    with pytest.raises(UserError, match=f"{name}: not a flag of the {app.name} app"):
        app.parse(["prog", flag])


def test_a_test_flag_of_absl_ends_in_one_line_not_a_silent_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cifar_denoise_adv.noise", "--test_tmpdir=/x"]
        + [f"--run_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=FLAG_DIR.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --test_tmpdir: not a flag of the noise app but one of "
        "absl.testing.absltest, which the apps do not use (see --help)."
    )
    assert not (tmp_path / "run").exists()


def test_a_missing_flag_file_is_named():
    with pytest.raises(UserError, match="no such flag file"):
        noise.APP.parse(["prog", "--flagfile=no_such_file.cfg"])


def test_stray_arguments_are_refused():
    with pytest.raises(UserError, match="unexpected arguments: extra"):
        noise.APP.parse(["prog", "extra"])


def test_a_short_run_with_the_classifiers_warm_up_names_both_flags():
    # The cosine schedule warms up for 2 epochs by default: --epochs=2 would
    # end at the peak rate, never decaying. (The triangle schedule of
    # flags/classifier_cpu.cfg has its own warm-up, which always fits.)
    cpu = f"--flagfile={FLAG_DIR}/classifier_cpu.cfg"
    with pytest.raises(UserError, match="--warmup_epochs=2 .*--epochs=2"):
        classify.APP.parse(["prog", cpu, "--schedule=cosine", "--epochs=2"])
    assert classify.APP.parse(["prog", cpu, "--epochs=2"]).epochs == 2
