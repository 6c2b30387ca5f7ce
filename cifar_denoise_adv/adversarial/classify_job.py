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

from cifar_denoise_adv.adversarial import airbench
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.adversarial import classifier_evaluation as evaluation_lib
from cifar_denoise_adv.adversarial import stability
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import pipelines
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import schedules
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core import workers
from cifar_denoise_adv.core.config import setting

PREDICTIONS_FILE = "predictions.npz"
EVALUATED_ON = {
    "history (val_*), TensorBoard validation": (
        "the validation images, held out of the training images"
    ),
    "validation_accuracy": "the validation images",
    "train_accuracy": "the training images (unaugmented), after training",
    "test_accuracy, per_class_accuracy, confusion_matrix, predictions.npz": (
        "the test images, once, at the end, with --tta (the exported model)"
    ),
    "test_accuracy_without_tta": "the test images, the network without --tta",
    "stability": (
        "the test (and validation) images: the network without --tta and the "
        "exported model; random signs of --stability_signs (fraction of "
        "predictions changed) and Gaussian noise of --stability_sigmas "
        "(accuracy)"
    ),
}


ARCHS = ("airbench", "resnet9")
SCHEDULES = ("triangle", "cosine")


@dataclasses.dataclass(frozen=True)
class ClassifyConfig(training.TrainingConfig):
    """Everything that defines a classifier run (the `classify` app's flags).

    The defaults are airbench94's recipe (K. Jordan 2024) at batch 256:
    Nesterov SGD with momentum 0.85, learning rate 11.5 per 1024 examples
    of a summed loss (0.375 for the mean loss of 256 images), decoupled
    weight decay 0.0153 per 1024 examples per step (Keras' `weight_decay`
    multiplies the scheduled rate: 0.0153 x 256 / 7850 / 0.375), label
    smoothing 0.2, the triangle schedule, a lookahead average of the
    weights, translations of 2 px with flips, test-time augmentation.
    """

    epochs: int = setting(40, "Training epochs.", low=1)
    batch_size: int = setting(
        256, "Images per training step over all replicas (the global batch).", low=1
    )
    learning_rate: float = setting(
        0.375, "Peak learning rate of the schedule.", low=0.0, low_open=True
    )
    warmup_epochs: float = setting(
        2.0,
        "Linear learning-rate warm-up (epochs) before the cosine decay "
        "(--schedule=cosine only).",
        low=0.0,
    )
    arch: str = setting(
        "airbench",
        "airbench (Jordan 2024: whitening conv, 3 conv groups of width w, 4w, "
        "4w) or resnet9 (Page 2018: widths w, 2w, 4w, 8w).",
        choices=ARCHS,
    )
    width: int = setting(64, "Channels of the first conv group (see --arch).", low=1)
    depth: int = setting(
        2,
        "airbench: convs per group, 2 (airbench94) or 3 (airbench96: the last "
        "two with a residual connection).",
        low=2,
        high=3,
    )
    dropout: float = setting(
        0.0,
        "resnet9: dropout before the dense layer.",
        unit=config_lib.FRACTION,
        low=0.0,
        high=0.9,
    )
    momentum: float = setting(
        0.85, "SGD Nesterov momentum.", unit=config_lib.FRACTION, low=0.0, high=1.0
    )
    weight_decay: float = setting(
        1.33e-3,
        "Keras' decoupled weight decay: each step, weights shrink by this "
        "times the scheduled learning rate.",
        low=0.0,
    )
    schedule: str = setting(
        "triangle",
        "triangle (airbench: 0.2 -> 1 at 23% -> 0.07 of the peak) or cosine "
        "(linear warm-up, then cosine decay to 0).",
        choices=SCHEDULES,
    )
    lookahead: bool = setting(
        True, "Pull the weights to their moving average every 5 steps (airbench)."
    )
    label_smoothing: float = setting(
        0.2, "Label smoothing.", unit=config_lib.FRACTION, low=0.0, high=0.5
    )
    translate: int = setting(
        2, "Random translation of training images, pixels (reflect padding).", low=0
    )
    cutout: int = setting(
        0,
        "Side of the cutout square in training images, pixels (0: none).",
        low=0,
        high=32,
    )
    cutmix: float = setting(
        0.0,
        "Chance that a training batch is mixed by CutMix (Yun et al. 2019): a "
        "box of each image from the next one, labels mixed by area (0: none).",
        unit=config_lib.FRACTION,
        low=0.0,
        high=1.0,
    )
    whiten: bool = setting(
        True,
        "airbench: a frozen 2x2 conv that whitens the training images' patches "
        "first (--nowhiten: a trainable 2x2 conv of the same shape).",
    )
    whiten_eps: float = setting(
        airbench.WHITENING_EPS,
        "airbench: added to the patch covariance's eigenvalues before the "
        "whitening divides by their square roots (normalised pixels squared); "
        "larger damps the small-eigenvalue, high-frequency directions.",
        low=0.0,
    )
    noise_augment: float = setting(
        0.0,
        "Gaussian noise on training images: each image's std drawn uniformly "
        "in [0, this] (pixels, clipped to [0, 1]; 0: none).",
        unit=config_lib.PIXEL,
        low=0.0,
    )
    stability_signs: tuple[float, ...] = setting(
        stability.SIGN_BUDGETS,
        "L-inf budgets of the random signs of the stability figure (the "
        "attacks' budgets).",
        unit=config_lib.PIXEL,
        low=0.0,
        low_open=True,
    )
    stability_sigmas: tuple[float, ...] = setting(
        stability.GAUSSIAN_SIGMAS,
        "Gaussian noise levels (std, pixels) of the stability figure.",
        unit=config_lib.PIXEL,
        low=0.0,
        low_open=True,
    )
    tta: int = setting(
        2,
        "Test-time augmentation built into the exported model: 0 none, 1 "
        "mirror, 2 mirror and one-pixel shifts (logits averaged).",
        low=0,
        high=2,
    )

    def validate(self):
        # The warm-up belongs to the cosine schedule; the triangle has its own.
        if self.schedule == "cosine":
            super().validate()

    def ignored(self) -> dict[str, str]:
        found = super().ignored()  # --depth and --dropout by --arch
        if self.schedule != "cosine":
            found["warmup_epochs"] = (
                f"--schedule={self.schedule} has its own warm-up (only "
                "--schedule=cosine uses --warmup_epochs)"
            )
        if not self.augment:
            for name in ("translate", "cutout", "cutmix"):
                found[name] = "--noaugment turns training augmentation off"
        return found


def run(config: ClassifyConfig, log=lambda message: None, verbose="auto") -> dict:
    """Trains (or resumes) the classifier and evaluates it on the test set.

    The per-epoch validation (history `val_*`, TensorBoard) is on
    --validation_images held-out training images; the test images are
    evaluated once, at the end. The data is read and checked before
    anything in run_dir changes (`runs.claim`). Writes into run_dir:
    metrics.json (train, validation, test and per-class accuracy, confusion
    matrix, timing, versions), flags.cfg, confusion_matrix.png,
    predictions.npz (test logits and labels), model.keras, saved_model/,
    tb/ and backup/.

    Returns:
      The record written to metrics.json.
    """
    start = time.time()
    config = config_lib.resolve(config)
    # A non-chief worker of --strategy=multi_worker writes a temporary folder.
    with (
        workers.worker_config(config) as config,
        runs.claim(config, "classify", log) as held,
    ):
        setup = training.start_run(config, log)
        held.begin()
        return _train(config, training.resume(setup, config, log), start, log, verbose)


def _train(config, setup: training.RunStart, start: float, log, verbose) -> dict:
    """Trains, exports, evaluates and writes the run folder (after `begin`)."""
    train, validation = _pipelines(config, setup)
    with precision.precision_scope(setup.precision.precision), setup.strategy.scope():
        network = _build(config, setup)
        model = classifier.with_test_time_augmentation(network, config.tta)
    log(
        f"{network.name}: {network.count_params():,} parameters, {setup.num_train} "
        f"train images, {setup.steps_per_epoch} steps/epoch, {config.epochs} epochs"
    )
    fit = training.fit_resumable(
        network,
        train,
        validation,
        epochs=config.epochs,
        run_dir=config.run_dir,
        callbacks=_callbacks(config, setup),
        verbose=verbose,
        log=log,
    )
    images, labels = evaluation_lib.arrays(setup.test_set)
    export_error = training.finish_training(
        model, config.run_dir, images[:8], names=("images", "logits")
    )
    evaluation = evaluation_lib.evaluate(model, images, labels)
    accuracies = evaluation_lib.other_accuracies(model, network, setup, images, labels)
    steadiness = evaluation_lib.stability_figures(
        config, model, network, setup, (images, labels), log
    )
    evaluation_lib.write_figures(
        config.run_dir,
        evaluation,
        labels,
        os.path.join(config.run_dir, PREDICTIONS_FILE),
    )
    record = outputs.write_record(
        config,
        "classify",
        {
            "model": model.name,
            "precision": setup.precision.record(),
            "parameters": model.count_params(),
            "images": setup.image_counts(len(labels)),
            "evaluated_on": EVALUATED_ON,
            "epochs": config.epochs,
            "resumed_from_epoch": fit["resumed_from_epoch"],
            "test_accuracy": evaluation["accuracy"],
            **accuracies,
            "stability": steadiness,
            "per_class_accuracy": evaluation["per_class"],
            "confusion_matrix": evaluation["matrix"].tolist(),
            "history": fit["history"],
            **training.training_time(fit, config, setup.num_train),
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
        translate=config.translate,
        cutout=config.cutout,
        cutmix=config.cutmix,
        noise=config.noise_augment,
        one_hot=data.NUM_CLASSES,
    )
    validation = None
    if setup.validation_set is not None:
        validation = pipelines.labelled_batches(
            setup.validation_set,
            batch_size=256,
            seed=0,
            training=False,
            one_hot=data.NUM_CLASSES,
        )
    augmented, _ = next(iter(train))
    summaries.write(
        summaries.log_dir(config.run_dir, "images"),
        images={"train/augmented_examples": augmented[:8].numpy()},
    )
    return train, validation


def _build(config: ClassifyConfig, setup: training.RunStart) -> keras.Model:
    """The network to train (without test-time augmentation), compiled."""
    if config.arch == "airbench":
        images = np.stack([x for x, _ in setup.train_set.take(5000)])
        whitening = airbench.whitening_kernel(
            images, classifier.CIFAR10_MEAN, classifier.CIFAR10_STD, config.whiten_eps
        )
        model = airbench.build_airbench(
            whitening if config.whiten else None,
            width=config.width,
            depth=config.depth,
        )
    else:
        model = classifier.build_classifier(width=config.width, dropout=config.dropout)
    steps = setup.steps_per_epoch
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedules.schedule(
                config.schedule,
                config.learning_rate,
                total_steps=config.epochs * steps,
                warmup_steps=round(config.warmup_epochs * steps),
            ),
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        ),
        loss=classifier.SparseSmoothedCrossentropy(config.label_smoothing),
        # The pipelines give one-hot labels (CutMix mixes them).
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    return model


def _callbacks(config: ClassifyConfig, setup: training.RunStart) -> list:
    if not config.lookahead:
        return []
    total = config.epochs * setup.steps_per_epoch
    return [airbench.Lookahead(total, start_step=3 * setup.steps_per_epoch)]
