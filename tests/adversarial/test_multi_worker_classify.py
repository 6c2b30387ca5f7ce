"""--strategy=multi_worker: two worker processes on 127.0.0.1 train one classifier.

As for the denoiser (tests/denoising/test_multi_worker.py): the workers
split every global batch of the same pipeline (augmentations and CutMix are
drawn per global batch, before the split), and the batch norms compute
their statistics over both replicas, so the run follows one process's at
the same global batch up to the order of floating-point sums.
"""

import json
import os

import numpy as np
import pytest

from cifar_denoise_adv import classify
from tests import cluster

SETTINGS = dict(
    width=4,
    epochs=2,
    batch_size=8,
    learning_rate=1e-3,
    warmup_epochs=0.5,
    validation_images=4,
    cutmix=0.5,
    # float32 on every machine: the match with one process (rtol 1e-4)
    # is float32's; bfloat16 (auto on a CPU with bfloat16 units) rounds the
    # two workers' all-reduced gradients differently.
    precision="float32",
)
OUTPUTS = (
    "metrics.json",
    "flags.cfg",
    "run.json",
    "confusion_matrix.png",
    "predictions.npz",
    "model.keras",
    "saved_model/saved_model.pb",
    "backup/progress.json",
)
TIMEOUT = 150  # seconds for both workers; they take ~30 s on the loaded machine


def _argv(data_dir, run_dir, **extra):
    settings = dict(SETTINGS, data_dir=data_dir, run_dir=str(run_dir), **extra)
    return [f"--{name}={value}" for name, value in settings.items()]


def test_two_workers_train_the_classifier_like_one_process(tmp_path):
    from tests.conftest import write_cifar

    data_dir, _ = write_cifar(tmp_path / "data", "python", per_file=4)
    run_dir = tmp_path / "multi"
    argv = _argv(data_dir, run_dir, strategy="multi_worker")
    workers = cluster.run_workers(
        "cifar_denoise_adv.classify", argv, tmp_path / "cluster", timeout=TIMEOUT
    )
    for index, worker in enumerate(workers):
        assert worker.returncode == 0, f"worker {index}:\n{worker.log[-3000:]}"
        assert "test accuracy" in worker.log, f"worker {index}:\n{worker.log}"
        # They leave together: none logs the other as crashed.
        assert "unhealthy" not in worker.log, f"worker {index}:\n{worker.log}"
    assert "the chief: writes the run folder" in workers[0].log
    assert "not the chief" in workers[1].log
    assert list((tmp_path / "cluster" / "temp").iterdir()) == []
    for name in OUTPUTS:
        assert (run_dir / name).exists(), name
    assert any("events" in n for _, _, f in os.walk(run_dir / "tb") for n in f)
    multi = json.loads((run_dir / "metrics.json").read_text())
    assert multi["saved_model_max_abs_difference"] < 1e-4

    config = classify.APP.parse(["classify", *_argv(data_dir, tmp_path / "single")])
    single = classify.APP.job(config, log=lambda message: None)
    assert multi["images"] == single["images"]
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            multi["history"][name], single["history"][name], rtol=1e-4, err_msg=name
        )
    assert multi["test_accuracy"] == pytest.approx(single["test_accuracy"])
    multi_logits = np.load(run_dir / "predictions.npz")["logits"]
    single_logits = np.load(tmp_path / "single" / "predictions.npz")["logits"]
    np.testing.assert_allclose(multi_logits, single_logits, rtol=1e-3, atol=1e-4)
