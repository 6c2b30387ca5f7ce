"""Tiny runs for the defense tests: a classifier, a denoiser and CIFAR-10 files."""

import json

import keras
import pytest

from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import export
from cifar_denoise_adv.core import training
from cifar_denoise_adv.denoising import models
from tests.conftest import write_cifar


def save_run(folder, model, metrics=None):
    """A run folder as the training apps leave it: model.keras, metrics.json."""
    folder.mkdir(parents=True, exist_ok=True)
    export.save_keras(model, str(folder / training.KERAS_FILE))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """{"classifier", "denoiser", "data_dir"}: untrained tiny runs, 40 test images."""
    root = tmp_path_factory.mktemp("defense_runs")
    keras.utils.set_random_seed(0)
    data_dir, _ = write_cifar(root / "data", "python", per_file=40)
    return {
        "classifier": save_run(root / "classifier", classifier.build_classifier(4)),
        # Not the identity: random tail weights instead of zeros.
        "denoiser": save_run(
            root / "denoiser",
            models.build_denoiser(1, 4, downscale=2, zero_init=False),
            {"sigma": 0.1},
        ),
        "data_dir": data_dir,
    }
