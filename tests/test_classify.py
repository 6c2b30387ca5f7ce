import json

import numpy as np
import pytest
from absl.testing import flagsaver
from keras import layers

from cifar_denoise_adv import classify
from cifar_denoise_adv import classify_job
from cifar_denoise_adv import models
from cifar_denoise_adv import outputs


def test_classifier_outputs_logits_for_pixel_images():
    model = models.build_classifier(width=4)
    images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    logits = model(images)
    assert logits.shape == (3, 10)
    assert model.layers[-1].get_config().get("activation") == "linear"
    assert any(isinstance(layer, layers.Normalization) for layer in model.layers)


def test_classifier_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        models.build_classifier(width=0)


def test_classify_app_writes_every_promised_output(tiny_cifar, tmp_path):
    run_dir = tmp_path / "run"
    with flagsaver.flagsaver(
        data_dir=tiny_cifar,
        run_dir=str(run_dir),
        width=4,
        epochs=2,
        batch_size=8,
        label_smoothing=0.1,
        cutout=8,
    ):
        classify.main(["classify"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in (
        "flags.cfg",
        "confusion_matrix.png",
        "predictions.npz",
        "model.keras",
        "saved_model/saved_model.pb",
    ):
        assert (run_dir / name).exists(), name
    assert metrics["images"] == {"train": 20, "test": 4}
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert set(metrics["per_class_accuracy"]) >= {"airplane", "truck"}
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 4
    assert np.trace(matrix) / 4 == pytest.approx(metrics["test_accuracy"])
    assert len(metrics["history"]["val_accuracy"]) == 2
    assert metrics["saved_model_max_abs_difference"] < 1e-4
    predictions = np.load(run_dir / "predictions.npz")
    assert predictions["logits"].shape == (4, 10)
    assert classify_job.load_classifier(str(run_dir)).name == "resnet9_classifier"
    with pytest.raises(outputs.UserError, match="--classifier"):
        classify_job.load_classifier(str(tmp_path))


def test_smoothed_crossentropy_matches_the_definition():
    from cifar_denoise_adv import training

    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    loss = training.SparseSmoothedCrossentropy(0.3, num_classes=3)
    log_p = logits - np.log(np.exp(logits).sum())
    target = np.array([0.8, 0.1, 0.1])  # 0.7 on the label + 0.3 spread over 3
    assert float(loss(np.array([0]), logits)) == pytest.approx(
        -(target * log_p).sum(), 1e-5
    )
    plain = training.SparseSmoothedCrossentropy(0.0, num_classes=3)
    assert float(plain(np.array([0]), logits)) == pytest.approx(-log_p[0, 0], 1e-5)
