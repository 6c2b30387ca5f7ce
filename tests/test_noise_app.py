import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver

from cifar_denoise_adv import data
from cifar_denoise_adv import noise


def test_noise_app_writes_every_promised_output(tiny_cifar, tmp_path):
    run_dir = tmp_path / "run"
    with flagsaver.flagsaver(
        data_dir=tiny_cifar,
        run_dir=str(run_dir),
        sigma=0.1,
        export=True,
        num_examples=4,
    ):
        noise.main(["noise"])

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["images"] == {"train": 20, "test": 4}
    assert metrics["sigma_analytic"] == pytest.approx(0.1)
    assert metrics["sigma_calibrated_clipped"] > metrics["sigma_analytic"]
    assert metrics["sigma_used"] == pytest.approx(0.1)
    for split in ("train", "test"):
        stats = metrics["psnr_xy_db"][split]
        assert stats["clipped"]["mean"] > stats["unclipped"]["mean"]
        assert stats["clipped"]["images"] == metrics["images"][split]
    assert metrics["calibrated_check_psnr_db"]["mean"] == pytest.approx(20.0, abs=0.01)
    assert metrics["noise_seed"] == {"train": 0, "test": 1}

    for name in (
        "noise_examples.png",
        "flags.cfg",
        "noisy_train.npz",
        "noisy_test.json",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    assert os.listdir(run_dir / "tb")
    assert "--sigma=0.1" in (run_dir / "flags.cfg").read_text()
    assert not [n for n in os.listdir(run_dir) if ".tmp" in n]

    exported = np.load(run_dir / "noisy_test.npz")
    assert exported["noisy"].shape == (4, 32, 32, 3)
    assert float(exported["sigma"]) == pytest.approx(0.1)
    assert exported["noisy"].min() >= 0 and exported["noisy"].max() <= 1
    clean = exported["clean"]
    assert exported["noisy"].shape == clean.shape
    sidecar = json.loads((run_dir / "noisy_test.json").read_text())
    assert sidecar["seed"] == 1 and sidecar["sigma"] == pytest.approx(0.1)


def test_noise_app_reports_a_bad_data_dir(tmp_path):
    missing = str(tmp_path / "missing")
    with (
        flagsaver.flagsaver(data_dir=missing, run_dir=str(tmp_path)),
        pytest.raises(data.DataError, match="--data_dir"),
    ):
        noise.main(["noise"])
