"""The classifier: its builder, its loss, and the classify app's outputs."""

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from cifar_denoise_adv import classify
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core.errors import UserError


def test_classifier_outputs_logits_for_pixel_images():
    model = classifier.build_classifier(width=4)
    images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    logits = model(images)
    assert logits.shape == (3, 10)
    assert model.layers[-1].get_config().get("activation") == "linear"
    assert any(isinstance(layer, layers.Normalization) for layer in model.layers)


def test_classifier_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        classifier.build_classifier(width=0)


def test_classify_app_writes_every_promised_output(tiny_cifar, tmp_path):
    run_dir = tmp_path / "run"
    config = classify.APP.parse(
        [
            "classify",
            f"--data_dir={tiny_cifar}",
            f"--run_dir={run_dir}",
            "--width=4",
            "--epochs=2",
            "--batch_size=8",
            # The rate the old shared flag gave: 0.1 diverges on 20 images.
            "--learning_rate=1e-3",
            "--warmup_epochs=0.5",
            "--validation_images=4",
            "--label_smoothing=0.1",
            "--cutout=8",
            "--cutmix=0.5",
            "--noise_augment=0.1",
            "--whiten_eps=1e-2",
            "--stability_signs=4/255,10/255,0.1",
        ]
    )
    lines = []
    classify.APP.job(config, log=lines.append)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Stability: both splits, both models, the budgets asked for; its clean
    # accuracy is the run's own (same images, same models).
    steady = metrics["stability"]
    assert set(steady) == {"test", "validation"}
    assert set(steady["test"]) == {"network", "exported"}
    exported = steady["test"]["exported"]
    assert list(exported["signs_changed"]) == ["4/255", "10/255", "0.1"]
    assert list(exported["gaussian_accuracy"]) == ["0.02", "0.05"]
    assert exported["images"] == 4 and steady["validation"]["network"]["images"] == 4
    assert exported["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert steady["test"]["network"]["accuracy"] == pytest.approx(
        metrics["test_accuracy_without_tta"]
    )
    assert steady["validation"]["exported"]["accuracy"] == pytest.approx(
        metrics["validation_accuracy"]
    )
    assert sum("stability on 4 test images" in line for line in lines) == 1
    assert list((run_dir / "tb" / "stability").iterdir())
    for name in (
        "flags.cfg",
        "confusion_matrix.png",
        "predictions.npz",
        "model.keras",
        "saved_model/saved_model.pb",
    ):
        assert (run_dir / name).exists(), name
    assert metrics["images"] == {"train": 16, "validation": 4, "test": 4}
    # Per-epoch validation is on the held-out training images, not the test set.
    assert len(metrics["history"]["val_accuracy"]) == 2
    assert "validation" in metrics["evaluated_on"]["validation_accuracy"]
    for name, count in (("train", 16), ("validation", 4)):
        correct = metrics[f"{name}_accuracy"] * count
        assert correct == pytest.approx(round(correct))
    assert set(metrics["per_class_accuracy"]) >= {"airplane", "truck"}
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 4
    assert np.trace(matrix) / 4 == pytest.approx(metrics["test_accuracy"])
    # The accuracy, the matrix and the stored predictions tell one story.
    predictions = np.load(run_dir / "predictions.npz")
    assert predictions["logits"].shape == (4, 10)
    _, labels = data.read_local_arrays(tiny_cifar, "test")
    np.testing.assert_array_equal(predictions["labels"], labels)
    predicted = predictions["logits"].argmax(axis=1)
    assert np.mean(predicted == labels) == pytest.approx(metrics["test_accuracy"])
    expected_matrix = np.zeros((10, 10), np.int64)
    np.add.at(expected_matrix, (labels, predicted), 1)
    np.testing.assert_array_equal(matrix, expected_matrix)
    for index, name in enumerate(data.CLASS_NAMES):
        row = matrix[index].sum()
        expected = matrix[index, index] / row if row else 0.0
        assert metrics["per_class_accuracy"][name] == pytest.approx(expected), name
    assert len(metrics["history"]["val_accuracy"]) == 2
    assert metrics["saved_model_max_abs_difference"] < 1e-4
    signature = tf.saved_model.load(str(run_dir / "saved_model")).signatures[
        "serving_default"
    ]
    assert list(signature.structured_input_signature[1]) == ["images"]
    assert list(signature.structured_outputs) == ["logits"]
    # The exported classifier is the network inside test-time augmentation.
    loaded = classifier.load_classifier(str(run_dir))
    assert loaded.name == "airbench_classifier_tta2"
    assert loaded.get_layer("airbench_classifier").name == "airbench_classifier"
    with pytest.raises(UserError, match="--classifier"):
        classifier.load_classifier(str(tmp_path))


def test_smoothed_crossentropy_matches_the_definition():
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    loss = classifier.SparseSmoothedCrossentropy(0.3, num_classes=3)
    log_p = logits - np.log(np.exp(logits).sum())
    target = np.array([0.8, 0.1, 0.1])  # 0.7 on the label + 0.3 spread over 3
    assert float(loss(np.array([0]), logits)) == pytest.approx(
        -(target * log_p).sum(), 1e-5
    )
    plain = classifier.SparseSmoothedCrossentropy(0.0, num_classes=3)
    assert float(plain(np.array([0]), logits)) == pytest.approx(-log_p[0, 0], 1e-5)


def test_mirrored_strategy_keeps_the_replicas_batch_norms_in_step(tiny_cifar, tmp_path):
    # Two replicas (logical CPUs, set before TensorFlow starts: a fresh
    # process). Unsynchronised, each replica's batch norms would keep their
    # own moving statistics, and predictions over both replicas would no
    # longer match the saved model (the run's export check fails).
    script = textwrap.dedent(
        f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from cifar_denoise_adv.adversarial import classify_job
        from cifar_denoise_adv.core import training
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        training.make_strategy = lambda name: strategy
        config = classify_job.ClassifyConfig(
            width=4, epochs=2, batch_size=8, learning_rate=1e-3,
            warmup_epochs=0.5, validation_images=4, strategy="mirrored",
            run_dir={str(tmp_path / "run")!r}, data_dir={tiny_cifar!r})
        metrics = classify_job.run(config, verbose=0)
        print("difference", metrics["saved_model_max_abs_difference"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split("difference")[-1]) < 1e-4
    with zipfile.ZipFile(tmp_path / "run" / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    norms = list(_batch_norm_configs(config))
    assert norms and all(norm["synchronized"] for norm in norms)


def _batch_norm_configs(saved):
    """The configs of every BatchNormalization in a .keras config, nested too."""
    if isinstance(saved, dict):
        if saved.get("class_name") == "BatchNormalization":
            yield saved["config"]
        for value in saved.values():
            yield from _batch_norm_configs(value)
    elif isinstance(saved, list):
        for value in saved:
            yield from _batch_norm_configs(value)


def test_airbench_without_whitening_trains_its_first_conv():
    from cifar_denoise_adv.adversarial import airbench

    images = np.random.default_rng(0).uniform(size=(8, 32, 32, 3)).astype(np.float32)
    kernel = airbench.whitening_kernel(images, (0.5,) * 3, (0.25,) * 3)
    whitened = airbench.build_airbench(kernel, width=4).get_layer("whiten")
    assert [w.name for w in whitened.trainable_weights] == ["bias"]
    plain = airbench.build_airbench(None, width=4).get_layer("whiten")
    assert {w.name for w in plain.trainable_weights} == {"kernel", "bias"}
    assert plain.kernel.shape == kernel.shape
    # A larger eps damps the smallest-eigenvalue (last) filters most.
    damped = airbench.whitening_kernel(images, (0.5,) * 3, (0.25,) * 3, eps=1.0)
    ratio = np.abs(damped).reshape(-1, 24).max(0) / np.abs(kernel).reshape(-1, 24).max(
        0
    )
    assert ratio[11] < ratio[0] < 1.0
