"""A trained classifier's figures: accuracy, stability under noise, plots.

What the classify job measures after training (`classify_job.run`): test
accuracy with its confusion matrix and per-class accuracy, train and
validation accuracy, the accuracy without test-time augmentation, and the
stability under plain noise (`stability.measure`) of the network and the
exported model. Images are float32 [N, 32, 32, 3] in [0, 1].
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np

from cifar_denoise_adv.adversarial import stability
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import summaries


def arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a dataset of (image, label) pairs, as NumPy arrays."""
    images, labels = zip(*dataset.batch(1024).as_numpy_iterator(), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def other_accuracies(model, network, setup, test_images, test_labels) -> dict:
    """Train and validation accuracy, and test accuracy without TTA.

    Training images are unaugmented; `model` is the exported classifier
    (with --tta), `network` the trained net alone.
    """
    result = {}
    for name, dataset in (
        ("train", setup.train_set),
        ("validation", setup.validation_set),
    ):
        if dataset is not None:
            images, labels = arrays(dataset)
            result[f"{name}_accuracy"] = accuracy(model, images, labels)
    result["test_accuracy_without_tta"] = accuracy(network, test_images, test_labels)
    return result


def stability_figures(config, model, network, setup, test, log) -> dict:
    """`stability.measure` of the network and the exported model.

    On the test images (`test`: images, labels) and, when there is a
    validation split, on it:
    {"test": {"network": {...}, "exported": {...}}, "validation": {...}};
    also to TensorBoard (tb/stability) and one log line per split.
    """
    splits = {"test": test}
    if setup.validation_set is not None:
        splits["validation"] = arrays(setup.validation_set)
    result, tb = {}, {}
    for split, (images, labels) in splits.items():
        result[split] = {}
        for name, net in (("network", network), ("exported", model)):
            figures = stability.measure(
                lambda x, net=net: net.predict(x, batch_size=256, verbose=0),
                images,
                labels,
                config.stability_signs,
                config.stability_sigmas,
                seed=config.seed,
            )
            result[split][name] = figures
            tb.update(stability.scalars(figures, f"stability/{split}/{name}"))
        log(
            f"stability on {len(labels)} {split} images, exported model (--tta="
            f"{config.tta}): {stability.summary(result[split]['exported'])}"
        )
    summaries.write(summaries.log_dir(config.run_dir, "stability"), scalars=tb)
    return result


def accuracy(model, images, labels) -> float:
    """The fraction of `images` whose highest score is the label."""
    predicted = model.predict(images, batch_size=256, verbose=0).argmax(1)
    return float(np.mean(predicted == labels))


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, per-class accuracy, confusion matrix, logits and speed.

    Args:
      model: images [N, 32, 32, 3] in [0, 1] -> logits [N, 10].
      images: float32 [N, 32, 32, 3] in [0, 1].
      labels: int [N] true classes.
    """
    begin = time.perf_counter()
    logits = model.predict(images, batch_size=256, verbose=0)
    images_per_s = len(images) / (time.perf_counter() - begin)
    predicted = logits.argmax(axis=1)
    matrix = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "logits": logits,
        "accuracy": float(np.mean(predicted == labels)),
        "per_class": dict(zip(data.CLASS_NAMES, per_class.tolist(), strict=True)),
        "matrix": matrix,
        "images_per_s": images_per_s,
    }


def write_figures(
    run_dir: str, evaluation: dict, labels, predictions_file: str
) -> None:
    """predictions.npz (logits, labels) and confusion_matrix.png in run_dir."""
    outputs.save_npz(
        predictions_file,
        logits=evaluation["logits"],
        labels=labels,
    )
    outputs.save_figure(
        plots.confusion_matrix(
            evaluation["matrix"],
            data.CLASS_NAMES,
            title=f"test accuracy {100 * evaluation['accuracy']:.2f}% "
            f"({len(labels)} images)",
        ),
        os.path.join(run_dir, "confusion_matrix.png"),
    )
