"""The noise app on a tiny local CIFAR-10 copy: every promised output."""

import json
import os

import numpy as np
import pytest

from cifar_denoise_adv import noise
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import metrics
from cifar_denoise_adv.core.errors import DataError
from cifar_denoise_adv.core.errors import UserError
from tests.conftest import folder_snapshot


def test_noise_app_writes_every_promised_output(tiny_cifar, tmp_path):
    run_dir = tmp_path / "run"
    config = noise.APP.parse(
        [
            "noise",
            f"--data_dir={tiny_cifar}",
            f"--run_dir={run_dir}",
            "--sigma=0.1",
            "--export",
            "--num_examples=4",
        ]
    )
    noise.APP.job(config, log=lambda message: None)

    metrics_json = json.loads((run_dir / "metrics.json").read_text())
    assert metrics_json["images"] == {"train": 20, "test": 4}
    assert metrics_json["sigma_analytic"] == pytest.approx(0.1)
    assert metrics_json["sigma_calibrated_clipped"] > metrics_json["sigma_analytic"]
    assert metrics_json["sigma_used"] == pytest.approx(0.1)
    for split in ("train", "test"):
        stats = metrics_json["psnr_xy_db"][split]
        assert stats["clipped"]["mean"] > stats["unclipped"]["mean"]
        assert stats["clipped"]["images"] == metrics_json["images"][split]
    check = metrics_json["calibrated_check_psnr_db"]["mean"]
    assert check == pytest.approx(20.0, abs=0.01)
    assert metrics_json["noise_seed"] == {"train": 0, "test": 1}

    for name in (
        "noise_examples.png",
        "flags.cfg",
        "noisy_train.npz",
        "noisy_test.json",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    assert os.listdir(run_dir / "tb")
    assert "--sigma=0.1" in (run_dir / "flags.cfg").read_text()
    # The run's flags.cfg replays the (resolved) config the run used.
    replayed = noise.APP.parse(["noise", f"--flagfile={run_dir / 'flags.cfg'}"])
    assert replayed == config_lib.resolve(config)
    assert not [n for n in os.listdir(run_dir) if ".tmp" in n]

    exported = np.load(run_dir / "noisy_test.npz")
    assert exported["noisy"].shape == (4, 32, 32, 3)
    assert float(exported["sigma"]) == pytest.approx(0.1)
    assert exported["noisy"].min() >= 0 and exported["noisy"].max() <= 1
    clean = exported["clean"]
    assert exported["noisy"].shape == clean.shape
    # The exported noisy set is the one the statistics describe.
    psnr = metrics.psnr(clean / 255.0, exported["noisy"]).numpy()
    assert psnr.mean() == pytest.approx(
        metrics_json["psnr_xy_db"]["test"]["clipped"]["mean"], abs=1e-3
    )
    sidecar = json.loads((run_dir / "noisy_test.json").read_text())
    assert sidecar["seed"] == 1 and sidecar["sigma"] == pytest.approx(0.1)


def test_noise_app_reports_a_bad_data_dir(tmp_path):
    missing = str(tmp_path / "missing")
    config = noise.APP.parse(
        ["noise", f"--data_dir={missing}", f"--run_dir={tmp_path}"]
    )
    with pytest.raises(DataError, match="--data_dir"):
        noise.APP.job(config, log=lambda message: None)


def test_a_failed_check_keeps_the_run_overwrite_would_replace(tiny_cifar, tmp_path):
    """A bad --data_dir, or a --target_psnr no sigma reaches (known only once
    the data is read), stops the run before --overwrite removes anything."""
    run_dir = tmp_path / "run"
    argv = ["noise", f"--data_dir={tiny_cifar}", f"--run_dir={run_dir}"]
    noise.APP.job(noise.APP.parse([*argv, "--sigma=0.1"]), log=lambda message: None)
    before = folder_snapshot(run_dir)
    bad_runs = [
        (["--sigma=0.2", f"--data_dir={tmp_path / 'missing'}"], "^--data_dir="),
        (["--sigma=0.2", "--target_psnr=1"], "^--target_psnr=1: no sigma"),
    ]
    for flags, message in bad_runs:
        config = noise.APP.parse([*argv, *flags, "--overwrite"])
        with pytest.raises(UserError, match=message):
            noise.APP.job(config, log=lambda message: None)
        assert folder_snapshot(run_dir) == before
