"""Job configs: range checks naming the flag, identity, resolved paths."""

import dataclasses
import os

import pytest

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising.denoise_job import DenoiseConfig
from cifar_denoise_adv.denoising.noise_job import NoiseConfig


def test_the_python_api_refuses_what_the_flags_refuse():
    with pytest.raises(UserError, match="^--epochs=0: expected >= 1"):
        DenoiseConfig(epochs=0)
    with pytest.raises(UserError, match="^--learning_rate=0: expected > 0"):
        DenoiseConfig(learning_rate=0.0)
    with pytest.raises(UserError, match="^--epochs=2.5: expected a whole number"):
        DenoiseConfig(epochs=2.5)
    with pytest.raises(UserError, match="^--epochs=True: expected a number"):
        DenoiseConfig(epochs=True)
    with pytest.raises(UserError, match="^--arch=unet: expected one of resnet, plain"):
        DenoiseConfig(arch="unet")
    with pytest.raises(UserError, match="looks like 0-255 units"):
        NoiseConfig(sigma=25.0)


def test_identity_leaves_out_folders_and_figures():
    config = NoiseConfig(run_dir="a", num_examples=2, sigma=0.2)
    identity = config_lib.identity(config)
    assert "run_dir" not in identity and "num_examples" not in identity
    assert identity["sigma"] == 0.2 and "data_dir" in identity
    assert identity == config_lib.identity(dataclasses.replace(config, run_dir="b"))


def test_resolve_makes_paths_absolute_and_reads_the_data_dir_from_the_environment(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config_lib.ENV_DATA_DIR, "cifar")
    resolved = config_lib.resolve(NoiseConfig(run_dir="runs/noise"))
    assert resolved.run_dir == str(tmp_path / "runs" / "noise")
    assert resolved.data_dir == str(tmp_path / "cifar")
    assert config_lib.resolve(resolved) == resolved  # idempotent
    monkeypatch.delenv(config_lib.ENV_DATA_DIR)
    assert config_lib.resolve(NoiseConfig(run_dir="r")).data_dir == ""
    assert os.path.isabs(config_lib.resolve(NoiseConfig(run_dir="r")).run_dir)


def test_a_setting_the_mode_ignores_is_named_when_it_was_changed():
    from cifar_denoise_adv.adversarial.classify_job import ClassifyConfig
    from cifar_denoise_adv.adversarial.sweep import SweepConfig
    from cifar_denoise_adv.adversarial.targeted_job import TargetedConfig
    from cifar_denoise_adv.adversarial.universal_job import UniversalConfig
    from cifar_denoise_adv.defense.defend_job import DefendConfig

    # The instance: the triangle schedule has its own warm-up.
    notes = config_lib.ignored_notes(ClassifyConfig(epochs=2, warmup_epochs=5))
    assert notes == [
        "--warmup_epochs=5 is ignored: --schedule=triangle has its own warm-up "
        "(only --schedule=cosine uses --warmup_epochs)"
    ]
    # At its default an ignored setting says nothing; used, nothing either.
    assert config_lib.ignored_notes(ClassifyConfig(epochs=2)) == []
    cosine = ClassifyConfig(epochs=9, warmup_epochs=5, schedule="cosine")
    assert config_lib.ignored_notes(cosine) == []
    assert config_lib.ignored_notes(ClassifyConfig(dropout=0.3)) == [
        "--dropout=0.3 is ignored: only --arch=resnet9 uses it, not --arch=airbench"
    ]
    assert config_lib.ignored_notes(ClassifyConfig(augment=False, cutmix=0.5)) == [
        "--cutmix=0.5 is ignored: --noaugment turns training augmentation off"
    ]
    fgsm = TargetedConfig(attack="fgsm", num_steps=3, step_size=2 / 255)
    assert config_lib.ignored_notes(fgsm) == [
        "--step_size=2/255 is ignored: only --attack=iterative uses it, not "
        "--attack=fgsm",
        "--num_steps=3 is ignored: only --attack=iterative uses it, not --attack=fgsm",
    ]
    assert config_lib.ignored_notes(TargetedConfig(indices=(1, 2), num_images=9)) == [
        "--num_images=9 is ignored: --indices names the images to attack"
    ]
    sgd = UniversalConfig(method="sgd", delta=0.3, sgd_epochs=3)
    assert config_lib.ignored_notes(sgd) == [
        "--delta=0.3 is ignored: only --method=deepfool uses it, not --method=sgd"
    ]
    sweep = SweepConfig(method="deepfool", delta=0.3, sweep_xi=(2 / 255,))
    assert config_lib.ignored_notes(sweep) == [
        "--method=deepfool is ignored: the sweep runs both methods at each "
        "budget of --sweep_xi"
    ]
    plain = DefendConfig(randomised=False, eot_draws=4)
    assert config_lib.ignored_notes(plain) == [
        "--eot_draws=4 is ignored: --norandomised leaves the randomised defense out"
    ]


def test_targets_without_the_given_mode_are_refused():
    from cifar_denoise_adv.adversarial.targeted_job import TargetedConfig

    with pytest.raises(UserError) as error:
        TargetedConfig(targets=(3,))
    assert str(error.value) == (
        "--targets: used only with --target_mode=given, not --target_mode=random; "
        "add --target_mode=given or drop --targets."
    )


def test_a_count_larger_than_the_split_is_named_in_one_line():
    assert config_lib.clamped("max_test_images", 5000, 768, "test") == (
        "--max_test_images=5000: the data has only 768 test images; all 768 are used"
    )
    assert config_lib.clamped("max_test_images", 0, 768, "test") is None  # 0: all
    assert config_lib.clamped("max_test_images", 768, 768, "test") is None
    assert config_lib.clamped("max_test_images", 9, -1, "test") is None  # unknown
    logged = []
    config = NoiseConfig(max_train_images=9000, max_test_images=10)
    found = {"max_train_images": 5085, "max_test_images": 768}
    config_lib.log_clamped(config, found, logged.append)
    assert logged == [
        "note: --max_train_images=9000: the data has only 5085 train images; all "
        "5085 are used"
    ]
