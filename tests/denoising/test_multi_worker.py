"""--strategy=multi_worker: two worker processes on 127.0.0.1 train one denoiser.

The two workers split every global batch (AutoShardPolicy.DATA over the
same pipeline, same seeds), so they see exactly the images and noise one
process sees at the same global batch; only the order of floating-point
sums differs (two half-batch gradients all-reduced instead of one). After
two epochs of a tiny net that moves losses and PSNRs by about 1e-6
relative; the tolerances below (1e-4 relative on losses, 1e-3 dB on PSNR)
are a hundred times that and far below what a wrong split shows (a worker
training on other images, or with other noise or weights, moves the
epoch-1 training loss by ~1e-3 relative and the PSNR by ~0.03 dB).
"""

import json
import os

import numpy as np
import pytest

from cifar_denoise_adv import denoise
from cifar_denoise_adv.core import training
from tests import cluster

SETTINGS = dict(
    num_blocks=1,
    filters=4,
    downscale=2,
    batch_size=8,
    epochs=2,
    warmup_epochs=0.5,
    # float32 on every machine: the match with one process (rtol 1e-4)
    # is float32's; bfloat16 (auto on a CPU with bfloat16 units) rounds the
    # two workers' all-reduced gradients differently.
    precision="float32",
    validation_images=4,
    num_examples=2,
)
OUTPUTS = (
    "metrics.json",
    "flags.cfg",
    "run.json",
    "recovery_examples.png",
    "psnr_histogram.png",
    "psnr_per_image.npz",
    "model.keras",
    "saved_model/saved_model.pb",
    "backup/progress.json",
    "backup/latest.weights.h5",
)
TIMEOUT = 150  # seconds for both workers; they take ~15-25 s


def _argv(data_dir, run_dir, **extra):
    settings = dict(SETTINGS, data_dir=data_dir, run_dir=str(run_dir), **extra)
    return [f"--{name}={value}" for name, value in settings.items()]


def _two_workers(data_dir, run_dir, folder):
    """The denoise app in two worker processes; both must end well."""
    argv = _argv(data_dir, run_dir, strategy="multi_worker")
    workers = cluster.run_workers(
        "cifar_denoise_adv.denoise", argv, folder, timeout=TIMEOUT
    )
    for index, worker in enumerate(workers):
        assert worker.returncode == 0, f"worker {index}:\n{worker.log[-3000:]}"
        assert "recovered PSNR" in worker.log, f"worker {index}:\n{worker.log}"
        # They leave together: none logs the other as crashed.
        assert "unhealthy" not in worker.log, f"worker {index}:\n{worker.log}"
    assert list((folder / "temp").iterdir()) == []  # worker 1's folder is gone
    return [worker.log for worker in workers]


def _one_process(data_dir, run_dir):
    config = denoise.APP.parse(["denoise", *_argv(data_dir, run_dir)])
    return denoise.APP.job(config)


def _interrupt_after_first_epoch(run_dir):
    """The backup as a kill during epoch 2 leaves it (its previous checkpoint)."""
    backup = run_dir / training.BACKUP_DIR
    for name in ("latest.weights.h5", "training_metadata.json"):
        os.replace(backup / f"{name}.bkp", backup / name)


def _assert_same_training(multi, single):
    for name in ("loss", "psnr", "val_loss", "val_psnr"):
        np.testing.assert_allclose(
            multi["history"][name], single["history"][name], rtol=1e-4, err_msg=name
        )
    for name in ("recovered", "gain"):
        assert multi["psnr_db"][name]["mean"] == pytest.approx(
            single["psnr_db"][name]["mean"], abs=1e-3
        )


def test_two_workers_train_like_one_process_and_resume(tmp_path):
    from tests.conftest import write_cifar

    data_dir, _ = write_cifar(tmp_path / "data", "python", per_file=4)
    run_dir = tmp_path / "multi"
    logs = _two_workers(data_dir, run_dir, tmp_path / "first")
    assert "worker 0 of 2 processes, the chief: writes the run folder" in logs[0]
    assert "worker 1 of 2 processes, not the chief" in logs[1]
    assert "INFO:tensorflow" not in logs[0] + logs[1]
    for name in OUTPUTS:
        assert (run_dir / name).exists(), name
    assert any("events" in n for _, _, f in os.walk(run_dir / "tb") for n in f)
    assert json.loads((run_dir / "run.json").read_text())["state"] == "done"
    multi = json.loads((run_dir / "metrics.json").read_text())
    assert multi["images"] == {"train": 16, "validation": 4, "test": 4}
    single = _one_process(data_dir, tmp_path / "single")
    _assert_same_training(multi, single)

    # Killed during epoch 2 and started again: the chief's backup resumes
    # both workers (worker 1 has no files of its own) as it resumes one process.
    _interrupt_after_first_epoch(run_dir)
    _interrupt_after_first_epoch(tmp_path / "single")
    logs = _two_workers(data_dir, run_dir, tmp_path / "resumed")
    for index, log in enumerate(logs):
        assert "resuming after epoch 1 of 2" in log, f"worker {index}:\n{log[-3000:]}"
    multi = json.loads((run_dir / "metrics.json").read_text())
    single = _one_process(data_dir, tmp_path / "single")
    assert multi["resumed_from_epoch"] == single["resumed_from_epoch"] == 1
    assert len(multi["history"]["loss"]) == 2
    _assert_same_training(multi, single)
