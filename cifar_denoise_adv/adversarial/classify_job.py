"""The classify job: train a CIFAR-10 classifier, evaluate it, export it.

`run(config)` is what the `classify` app and the study call. The run folder
it leaves (model.keras, saved_model/, predictions.npz, metrics.json) is what
the attack apps take as --classifier.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import pipelines
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.config import setting

PREDICTIONS_FILE = "predictions.npz"
EVALUATED_ON = {
    "history (val_*), TensorBoard validation": (
        "the validation images, held out of the training images"
    ),
    "validation_accuracy": "the validation images",
    "train_accuracy": "the training images (unaugmented), after training",
    "test_accuracy, per_class_accuracy, confusion_matrix, predictions.npz": (
        "the test images, once, at the end"
    ),
}


@dataclasses.dataclass(frozen=True)
class ClassifyConfig(training.TrainingConfig):
    """Everything that defines a classifier run (the `classify` app's flags)."""

    epochs: int = setting(30, "Training epochs.", low=1)
    batch_size: int = setting(128, "Images per training batch.", low=1)
    learning_rate: float = setting(
        0.1, "Peak learning rate of the schedule.", low=0.0, low_open=True
    )
    warmup_epochs: float = setting(
        2.0, "Linear learning-rate warm-up (epochs) before the cosine decay.", low=0.0
    )
    width: int = setting(
        32, "Channels of the first conv (the stages use 2x, 4x, 8x).", low=1
    )
    dropout: float = setting(0.0, "Dropout before the dense layer.", low=0.0, high=0.9)
    momentum: float = setting(0.9, "SGD Nesterov momentum.", low=0.0, high=1.0)
    weight_decay: float = setting(5e-4, "Decoupled weight decay.", low=0.0)
    label_smoothing: float = setting(0.0, "Label smoothing.", low=0.0, high=0.5)
    cutout: int = setting(
        0, "Side of the cutout square in training images (0: none).", low=0
    )


def run(config: ClassifyConfig, log=lambda message: None, verbose="auto") -> dict:
    """Trains (or resumes) the classifier and evaluates it on the test set.

    The per-epoch validation (history `val_*`, TensorBoard) is on
    --validation_images held-out training images; the test images are
    evaluated once, at the end. Writes into run_dir: metrics.json (train,
    validation, test and per-class accuracy, confusion matrix, timing,
    versions), flags.cfg, confusion_matrix.png,
    predictions.npz (test logits and labels), model.keras, saved_model/,
    tb/ and backup/.

    Returns:
      The record written to metrics.json.
    """
    start = time.time()
    config = config_lib.resolve(config)
    setup = training.start_run(config, log)
    outputs.write_flagfile(config, "classify")
    train, validation = _pipelines(config, setup)
    with training.precision_scope(config.precision), setup.strategy.scope():
        model = _build(config, setup.steps_per_epoch)
    log(
        f"{model.name}: {model.count_params():,} parameters, {setup.num_train} "
        f"train images, {setup.steps_per_epoch} steps/epoch, {config.epochs} epochs"
    )
    fit = training.fit_resumable(
        model,
        train,
        validation,
        epochs=config.epochs,
        run_dir=config.run_dir,
        verbose=verbose,
        log=log,
    )
    images, labels = _arrays(setup.test_set)
    export_error = training.finish_training(
        model, config.run_dir, images[:8], names=("images", "logits")
    )
    evaluation = evaluate(model, images, labels)
    accuracies = _other_accuracies(model, setup)
    _figures(config, evaluation, labels)
    record = outputs.write_record(
        config,
        "classify",
        {
            "model": model.name,
            "parameters": model.count_params(),
            "images": setup.image_counts(len(labels)),
            "evaluated_on": EVALUATED_ON,
            "epochs": config.epochs,
            "resumed_from_epoch": fit["resumed_from_epoch"],
            "test_accuracy": evaluation["accuracy"],
            **accuracies,
            "per_class_accuracy": evaluation["per_class"],
            "confusion_matrix": evaluation["matrix"].tolist(),
            "history": fit["history"],
            **training.training_time(fit, config, setup.num_train, config.run_dir),
            "inference_images_per_s": evaluation["images_per_s"],
            "saved_model_max_abs_difference": export_error,
        },
        start,
    )
    log(f"test accuracy {100 * evaluation['accuracy']:.2f}% over {len(labels)} images")
    return record


def _pipelines(config: ClassifyConfig, setup: training.RunStart):
    train = pipelines.labelled_batches(
        setup.train_set,
        batch_size=config.batch_size,
        seed=config.seed + 1000 * setup.done,  # a resumed run draws new augmentations
        training=True,
        augment=config.augment,
        cutout=config.cutout,
    )
    validation = None
    if setup.validation_set is not None:
        validation = pipelines.labelled_batches(
            setup.validation_set, batch_size=256, seed=0, training=False
        )
    augmented, _ = next(iter(train))
    summaries.write(
        summaries.log_dir(config.run_dir, "images"),
        images={"train/augmented_examples": augmented[:8].numpy()},
    )
    return train, validation


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*dataset.batch(1024).as_numpy_iterator(), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def _other_accuracies(model: keras.Model, setup: training.RunStart) -> dict:
    """Accuracy on the (unaugmented) training and the validation images."""
    result = {}
    for name, dataset in (
        ("train", setup.train_set),
        ("validation", setup.validation_set),
    ):
        if dataset is not None:
            images, labels = _arrays(dataset)
            predicted = model.predict(images, batch_size=256, verbose=0).argmax(1)
            result[f"{name}_accuracy"] = float(np.mean(predicted == labels))
    return result


def _build(config: ClassifyConfig, steps_per_epoch: int) -> keras.Model:
    model = classifier.build_classifier(width=config.width, dropout=config.dropout)
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
        loss=classifier.SparseSmoothedCrossentropy(config.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    return model


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


def _figures(config: ClassifyConfig, evaluation: dict, labels: np.ndarray) -> None:
    outputs.save_npz(
        os.path.join(config.run_dir, PREDICTIONS_FILE),
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
        os.path.join(config.run_dir, "confusion_matrix.png"),
    )
