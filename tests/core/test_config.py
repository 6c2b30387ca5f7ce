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
