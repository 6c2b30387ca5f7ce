"""The classify job: train a CIFAR-10 classifier, evaluate it, export it.

`run(...)` is what the `classify` app and the study call. The run folder it
leaves (model.keras, saved_model/, predictions.npz, metrics.json) is what the
attack apps take as --classifier.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv import data
from cifar_denoise_adv import models
from cifar_denoise_adv import outputs
from cifar_denoise_adv import plots
from cifar_denoise_adv import training

PREDICTIONS_FILE = "predictions.npz"


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
    """Everything that defines a classifier run (the app's flags, as values)."""

    width: int = 32
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.0
    augment: bool = True
    cutout: int = 0
    seed: int = 0
    strategy: str = "default"
    max_train_images: int = 0
    max_test_images: int = 0
    jit_compile: bool = False


def _build(config: ClassifyConfig, steps_per_epoch: int) -> keras.Model:
    model = models.build_classifier(width=config.width, dropout=config.dropout)
    schedule = training.warmup_cosine(
        config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedule,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        ),
        loss=training.SparseSmoothedCrossentropy(config.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    return model


def _log_augmented_examples(run_dir: str, batches: tf.data.Dataset) -> None:
    images, _ = next(iter(batches))
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tb", "images"))
    with writer.as_default(step=0):
        tf.summary.image("train/augmented_examples", images[:8], max_outputs=8)
    writer.close()


def run(
    config: ClassifyConfig,
    *,
    run_dir: str,
    data_dir: str | None,
    log: Callable[[str], None] = lambda message: None,
    verbose="auto",
) -> dict:
    """Trains (or resumes) the classifier and evaluates it on the test set.

    Writes into run_dir: metrics.json (test accuracy, per-class accuracy,
    confusion matrix, timing, versions), confusion_matrix.png,
    predictions.npz (test logits and labels), model.keras, saved_model/,
    tb/ and backup/.

    Returns:
      The metrics written to metrics.json.
    """
    start = time.time()
    setup = training.start_run(config, run_dir, data_dir, log)
    run_dir, strategy, done = setup.run_dir, setup.strategy, setup.done
    train_set, test_set = setup.train_set, setup.test_set
    num_train, steps_per_epoch = setup.num_train, setup.steps_per_epoch
    train = data.labelled_batches(
        train_set,
        batch_size=config.batch_size,
        seed=config.seed + 1000 * done,  # a resumed run draws new augmentations
        training=True,
        augment=config.augment,
        cutout=config.cutout,
    )
    test = data.labelled_batches(test_set, batch_size=256, seed=0, training=False)
    _log_augmented_examples(run_dir, train)

    with strategy.scope():
        model = _build(config, steps_per_epoch)
    log(
        f"{model.name}: {model.count_params():,} parameters, {num_train} train "
        f"images, {steps_per_epoch} steps/epoch, {config.epochs} epochs"
    )
    fit = training.fit_resumable(
        model, train, test, epochs=config.epochs, run_dir=run_dir, verbose=verbose
    )
    training.save_keras(model, os.path.join(run_dir, training.KERAS_FILE))
    export_dir = os.path.join(run_dir, training.SAVED_MODEL_DIR)
    training.export_saved_model(model, export_dir)
    images = np.concatenate([x for x, _ in test.as_numpy_iterator()])
    labels = np.concatenate([y for _, y in test.as_numpy_iterator()])
    export_error = training.saved_model_difference(model, export_dir, images[:8])

    inference_start = time.perf_counter()
    logits = model.predict(images, batch_size=256, verbose=0)
    inference_rate = len(images) / (time.perf_counter() - inference_start)
    predicted = logits.argmax(axis=1)
    matrix = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    accuracy = float(np.mean(predicted == labels))
    outputs.save_npz(
        os.path.join(run_dir, PREDICTIONS_FILE), logits=logits, labels=labels
    )
    outputs.save_figure(
        plots.confusion_matrix(
            matrix,
            data.CLASS_NAMES,
            title=f"test accuracy {100 * accuracy:.2f}% ({len(labels)} images)",
        ),
        os.path.join(run_dir, "confusion_matrix.png"),
    )

    train_seconds = float(sum(fit["train_seconds"]))
    previous = (
        outputs.read_json(os.path.join(run_dir, "metrics.json"))
        if (
            fit["resumed_from_epoch"]
            and os.path.exists(os.path.join(run_dir, "metrics.json"))
        )
        else {}
    )
    epochs_now = config.epochs - fit["resumed_from_epoch"]
    metrics = {
        "job": "classify",
        "config": dataclasses.asdict(config),
        "model": model.name,
        "parameters": model.count_params(),
        "data_source": f"local {data_dir}" if data_dir else "tfds cifar10",
        "images": {"train": num_train, "test": len(labels)},
        "epochs": config.epochs,
        "resumed_from_epoch": fit["resumed_from_epoch"],
        "test_accuracy": accuracy,
        "per_class_accuracy": dict(
            zip(data.CLASS_NAMES, per_class.tolist(), strict=True)
        ),
        "confusion_matrix": matrix.tolist(),
        "history": fit["history"],
        "train_seconds_this_run": train_seconds,
        "train_seconds_total": train_seconds + previous.get("train_seconds_total", 0.0),
        "train_images_per_s": (
            num_train * epochs_now / train_seconds if train_seconds else None
        ),
        "inference_images_per_s": inference_rate,
        "saved_model_max_abs_difference": export_error,
        "seconds": time.time() - start,
        "versions": outputs.library_versions(),
        "machine": outputs.machine_description(),
    }
    outputs.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    log(f"test accuracy {100 * accuracy:.2f}% over {len(labels)} images")
    return metrics


def load_classifier(run_dir: str) -> keras.Model:
    """The Keras classifier of a `classify` run (its folder or model.keras)."""
    path = run_dir
    if os.path.isdir(run_dir):
        path = os.path.join(run_dir, training.KERAS_FILE)
    if not os.path.isfile(path):
        raise outputs.UserError(
            f"--classifier={run_dir}: no {training.KERAS_FILE} there; expected the "
            "run folder of a finished `classify` run, or its model.keras."
        )
    return keras.models.load_model(path)
