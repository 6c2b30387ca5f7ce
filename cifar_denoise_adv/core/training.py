"""Training helpers shared by the training jobs.

The settings every training job has (`TrainingConfig`), strategy,
resumable fit, throughput, and the end of training: the `.keras` save and
SavedModel export (`core.export`) and the reload check.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import callbacks as callbacks_lib
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import export
from cifar_denoise_adv.core import pipelines
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import progress
from cifar_denoise_adv.core import workers
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

BACKUP_DIR = "backup"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(config_lib.RunConfig):
    """Settings every training job has; a job's config adds its own."""

    epochs: int = setting(10, "Training epochs.", low=1)
    batch_size: int = setting(
        64,
        "Images per training step over all replicas (the global batch; with "
        "--strategy=mirrored or multi_worker each of N replicas gets 1/N).",
        low=1,
    )
    learning_rate: float = setting(
        1e-3, "Peak learning rate of the schedule.", low=0.0, low_open=True
    )
    warmup_epochs: float = setting(
        0.5, "Linear learning-rate warm-up (epochs) before the cosine decay.", low=0.0
    )
    augment: bool = setting(
        True, "Random flips/rotations (denoiser) or crops/flips (classifier)."
    )
    max_train_images: int = setting(
        0, "Use at most this many training images (0: all).", low=0
    )
    max_test_images: int = setting(
        0, "Use at most this many test images (0: all).", low=0
    )
    validation_images: int = setting(
        500,
        "Training images held out (chosen by --seed) for the per-epoch "
        "validation and for choosing recipes; the test set is only evaluated "
        "once, at the end. 0: train on every training image, no validation.",
        low=0,
    )
    precision: str = setting(
        precision.AUTO,
        "Keras mixed-precision policy the layers compute in; weights, outputs "
        "and the loss stay float32. " + precision.CHOICE_HELP,
        choices=precision.CHOICES,
    )
    strategy: str = setting(
        "default",
        "tf.distribute strategy: default (one device), mirrored (all local "
        "GPUs, or the CPU), multi_worker (the processes or hosts of TF_CONFIG; "
        "only the chief writes --run_dir).",
        choices=STRATEGIES,
    )
    jit_compile: bool = setting(
        False,
        "Compile the training step with XLA. Off by default: on CPUs XLA's "
        "convolutions trained both recipes slower than TensorFlow's oneDNN ones "
        "(0.44-0.46x with AVX-512, 0.83-0.99x with AVX2; BENCHMARKS.md).",
    )
    num_examples: int = setting(
        6, "Rows of the example figures.", low=1, defines_result=False
    )

    def validate(self):
        if self.warmup_epochs >= self.epochs:
            raise UserError(
                f"--warmup_epochs={self.warmup_epochs:g} is not shorter than "
                f"--epochs={self.epochs}: the learning rate would still be rising "
                "when the run ends; give fewer warm-up epochs or more epochs."
            )


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for --strategy.

    default: the current (one-device) strategy; mirrored: all local GPUs, or
    the CPU when there are none; multi_worker: the hosts of TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    console.hide_distribution_info()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return workers.join_cluster()
    raise UserError(f"--strategy={name}: expected default, mirrored or multi_worker.")


def check_batch_size(batch_size: int, replicas: int) -> None:
    """--batch_size is the global batch: each of the replicas gets an equal part.

    Raises:
      UserError: naming --batch_size when it does not divide evenly.
    """
    if batch_size % replicas:
        raise UserError(
            f"--batch_size={batch_size} is the global batch, split evenly over "
            f"the strategy's {replicas} replicas: give a multiple of {replicas}."
        )


def completed_epochs(run_dir: str) -> int:
    """Epochs finished by an earlier, interrupted or complete run in run_dir."""
    path = os.path.join(run_dir, BACKUP_DIR, "training_metadata.json")
    try:
        with open(path, encoding="utf-8") as f:
            # BackupAndRestore stores the number of completed epochs.
            return int(json.load(f).get("epoch", 0))
    except (OSError, ValueError):
        return 0


@dataclasses.dataclass(frozen=True)
class RunStart:
    """A training job's starting point: strategy, data and progress."""

    strategy: tf.distribute.Strategy
    train_set: tf.data.Dataset  # (image, label): training images minus validation
    validation_set: tf.data.Dataset | None  # held-out training images, or None
    test_set: tf.data.Dataset  # (image, label) examples, --max_test_images
    num_train: int
    num_validation: int
    steps_per_epoch: int
    done: int  # epochs an earlier, interrupted invocation completed
    # What --precision means on this machine (`precision.choose`).
    precision: precision.Choice | None = None

    def image_counts(self, num_test: int) -> dict:
        """{"train", "validation", "test"} image counts, for the run record."""
        return {
            "train": self.num_train,
            "validation": self.num_validation,
            "test": num_test,
        }


def start_run(config: TrainingConfig, log=lambda message: None) -> RunStart:
    """The set-up every training job shares, in the order it must happen.

    Seeds the global RNGs first (the pipelines' seeds depend on it), makes
    the tf.distribute strategy, resolves --precision for this machine (and
    logs the one line that says which and why), loads the training images (at most
    --max_train_images) and holds --validation_images of them out
    (`pipelines.validation_split`, by --seed), and loads the test images.
    Reads nothing in the run folder and writes nothing: it checks the
    inputs before `runs.Claim.begin` (`done` is 0 until `resume`).
    """
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    chosen = precision.choose(config.precision)
    log(chosen.line())
    check_batch_size(config.batch_size, strategy.num_replicas_in_sync)
    if workers.is_multi_worker(strategy):
        log(workers.describe(config.run_dir))
    data_dir = config.data_dir or None
    images, labels = data.load_arrays(
        "train", data_dir, config.max_train_images or None
    )
    test_set = data.load("test", data_dir)
    found = {"max_train_images": len(images), "max_test_images": -1}
    found["max_test_images"] = int(test_set.cardinality())  # -1 when unknown
    config_lib.log_clamped(config, found, log)
    train, validation = pipelines.validation_split(
        config.validation_images, len(images), config.seed
    )
    validation_set = None
    if len(validation):
        validation_set = pipelines.from_arrays(images[validation], labels[validation])
    test_set = test_set.take(config.max_test_images or -1)
    return RunStart(
        strategy=strategy,
        train_set=pipelines.from_arrays(images[train], labels[train]),
        validation_set=validation_set,
        test_set=test_set,
        num_train=len(train),
        num_validation=len(validation),
        steps_per_epoch=math.ceil(len(train) / config.batch_size),
        done=0,
        precision=chosen,
    )


def resume(setup: RunStart, config: TrainingConfig, log) -> RunStart:
    """`setup` with the epochs an interrupted run in run_dir completed (logged).

    Called after `runs.Claim.begin`, once --overwrite has cleared the folder.
    """
    # Another worker's run folder is a new temporary one: the chief's count.
    done = workers.from_chief(setup.strategy, completed_epochs(config.run_dir))
    if done:
        log(f"resuming after epoch {done} of {config.epochs}")
    return dataclasses.replace(setup, done=done)


def fit_resumable(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    *,
    epochs: int,
    run_dir: str,
    callbacks: list[keras.callbacks.Callback] = (),
    verbose="auto",
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """model.fit that continues where an interrupted run in run_dir stopped.

    BackupAndRestore keeps the weights, optimizer state and epoch counter in
    run_dir/backup after every epoch and is not deleted at the end, so the
    same command run again resumes (or, when training is complete, trains no
    more and goes on to evaluation). Each epoch's logs and training seconds
    are kept beside it (`progress.EpochRecord`), so a run killed at any
    point and resumed reports every epoch.

    verbose="auto": Keras's progress bar on a terminal; elsewhere (a log
    file, a pipe) one line per epoch to `log` instead. After the first
    epoch of this call, one line to `log` says how many minutes the other
    epochs will take at the measured rate (`callbacks.RemainingTime`). Each epoch's logs
    (history, TensorBoard, those lines) carry the learning rate it used.

    Returns:
      {"history": per-epoch logs of every epoch, "train_seconds": seconds of
       every epoch, "train_seconds_this_run": those of this call's epochs,
       "resumed_from_epoch": int}
    """
    backup_dir = os.path.join(run_dir, BACKUP_DIR)
    resumed_from = completed_epochs(run_dir)
    record = progress.EpochRecord(
        backup_dir, progress.completed(backup_dir, resumed_from)
    )
    lines = []
    if verbose == "auto":
        verbose = 1 if console.is_terminal() else 0
        lines = [] if verbose else [callbacks_lib.EpochLines(epochs, log)]
    workers.prepare_model(model, train.element_spec)
    workers.synchronize_batch_norm(model)
    try:
        model.fit(
            workers.shard_by_data(train),
            validation_data=(
                None if validation is None else workers.shard_by_data(validation)
            ),
            epochs=epochs,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles
            callbacks=[
                callbacks_lib.LearningRateUsed(),  # before those that read it
                record,  # before the backup: progress never lacks a backed-up epoch
                keras.callbacks.BackupAndRestore(
                    backup_dir,
                    delete_checkpoint=False,
                    # Keeps the previous checkpoint while writing the next one,
                    # so a kill during the write loses nothing.
                    double_checkpoint=True,
                ),
                workers.ChiefState(),  # after the restore: the chief's state everywhere
                callbacks_lib.TensorBoard(os.path.join(run_dir, "tb")),
                *callbacks,
                *lines,
                callbacks_lib.RemainingTime(epochs, log),
            ],
        )
    except tf.errors.UnavailableError as error:
        if not workers.is_multi_worker(model.distribute_strategy):
            raise
        raise workers.lost_worker(error) from None
    return {
        "history": progress.history(record.entries),
        "train_seconds": [entry["seconds"] for entry in record.entries],
        "train_seconds_this_run": record.seconds_this_run,
        "resumed_from_epoch": resumed_from,
    }


def finish_training(
    model: keras.Model,
    run_dir: str,
    sample: np.ndarray,
    names: tuple[str, str] = ("inputs", "outputs"),
) -> float:
    """The end of every training run: save, export, check the export.

    Saves run_dir/model.keras, exports run_dir/saved_model/ (its signature's
    input and output named by `names`), reloads the SavedModel and compares
    it with the Keras model on `sample`.

    Returns:
      The largest absolute difference found.

    Raises:
      RuntimeError: when it exceeds EXPORT_TOLERANCE (the export is wrong).
    """
    export.save_keras(model, os.path.join(run_dir, KERAS_FILE))
    export_dir = os.path.join(run_dir, SAVED_MODEL_DIR)
    export.export_saved_model(model, export_dir, names)
    difference = export.saved_model_difference(model, export_dir, sample)
    if difference > export.EXPORT_TOLERANCE:
        raise RuntimeError(
            f"the SavedModel in {export_dir} differs from the Keras model by "
            f"{difference:g} on the same inputs."
        )
    return difference


def training_time(fit: dict, config: TrainingConfig, num_train: int) -> dict:
    """Training seconds of this call and of every epoch, and training images/s.

    A resumed run's total sums the seconds of all its pieces (from the
    progress record in run_dir/backup).
    """
    total = float(sum(fit["train_seconds"]))
    epochs_timed = len(fit["train_seconds"])
    return {
        # Every epoch's, the earlier pieces' of a resumed run included.
        "epoch_train_seconds": [float(t) for t in fit["train_seconds"]],
        "train_seconds_this_run": float(sum(fit["train_seconds_this_run"])),
        "train_seconds_total": total,
        "train_images_per_s": num_train * epochs_timed / total if total else None,
    }
