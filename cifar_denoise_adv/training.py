"""Training helpers shared by the training jobs.

Strategy, schedule, resumable fit, TensorBoard image grids, throughput,
atomic model save and SavedModel export.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv import data
from cifar_denoise_adv import noise_lib
from cifar_denoise_adv import outputs

BACKUP_DIR = "backup"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for --strategy.

    default: the current (one-device) strategy; mirrored: all local GPUs, or
    the CPU when there are none; multi_worker: the hosts of TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise outputs.UserError(
                "--strategy=multi_worker reads the cluster from the environment "
                "variable TF_CONFIG, which is not set."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise outputs.UserError(
        f"--strategy={name}: expected default, mirrored or multi_worker."
    )


def warmup_cosine(
    peak_learning_rate: float, total_steps: int, warmup_steps: int = 0
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to the peak, then cosine decay to 0 at `total_steps`."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak_learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0,
        warmup_target=peak_learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


@keras.saving.register_keras_serializable(package="cifar_denoise_adv", name="psnr")
def psnr(clean: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """Per-image PSNR (dB) of the prediction clipped to [0, 1], for compile().

    Registered so that a saved .keras model reloads with its metric.
    """
    return noise_lib.psnr(clean, tf.clip_by_value(predicted, 0.0, 1.0))


def completed_epochs(run_dir: str) -> int:
    """Epochs finished by an earlier, interrupted or complete run in run_dir."""
    path = os.path.join(run_dir, BACKUP_DIR, "training_metadata.json")
    try:
        with open(path, encoding="utf-8") as f:
            # BackupAndRestore stores the number of completed epochs.
            return int(json.load(f).get("epoch", 0))
    except (OSError, ValueError):
        return 0


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against logits, with label smoothing.

    Keras 3's SparseCategoricalCrossentropy has no label smoothing; this
    one-hot encodes the labels and uses the categorical version.
    """

    def __init__(self, smoothing: float = 0.0, num_classes: int = 10, **kwargs):
        kwargs.setdefault("name", "smoothed_crossentropy")
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return keras.losses.categorical_crossentropy(
            tf.one_hot(labels, self.num_classes),
            y_pred,
            from_logits=True,
            label_smoothing=self.smoothing,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "smoothing": self.smoothing,
            "num_classes": self.num_classes,
        }


class Throughput(keras.callbacks.Callback):
    """Training seconds per epoch, excluding the validation pass."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._start is not None:  # validation inside fit: stop the clock
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None


class ImageGrids(keras.callbacks.Callback):
    """Writes TensorBoard image grids (input | output | target) each epoch."""

    def __init__(self, log_dir: str, inputs: np.ndarray, targets: np.ndarray, tag: str):
        super().__init__()
        self._writer = tf.summary.create_file_writer(log_dir)
        self._inputs = inputs
        self._targets = targets
        self._tag = tag

    def on_epoch_end(self, epoch, logs=None):
        outputs_ = np.clip(self.model.predict(self._inputs, verbose=0), 0.0, 1.0)
        # One grid per example: the three images side by side.
        grids = np.concatenate([self._inputs, outputs_, self._targets], axis=2)
        with self._writer.as_default(step=epoch + 1):
            tf.summary.image(self._tag, grids, max_outputs=len(grids))
        self._writer.flush()

    def on_train_end(self, logs=None):
        self._writer.close()


@dataclasses.dataclass(frozen=True)
class RunStart:
    """A training job's starting point: folder, strategy, data and progress."""

    run_dir: str
    strategy: tf.distribute.Strategy
    train_set: tf.data.Dataset  # (image, label) examples, --max_train_images
    test_set: tf.data.Dataset  # (image, label) examples, --max_test_images
    num_train: int
    steps_per_epoch: int
    done: int  # epochs an earlier, interrupted invocation completed


def start_run(config, run_dir: str, data_dir: str | None, log) -> RunStart:
    """The set-up every training job shares, in the order it must happen.

    `config` has seed, strategy, max_train_images, max_test_images,
    batch_size and epochs. Seeds the global RNGs first (the pipelines' seeds
    depend on it), makes the run folder and the tf.distribute strategy, loads
    both splits, counts the training images and finds how many epochs an
    interrupted run already completed (logged when resuming).
    """
    run_dir = outputs.make_run_dir(run_dir)
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy)
    train_set = data.load("train", data_dir).take(config.max_train_images or -1)
    test_set = data.load("test", data_dir).take(config.max_test_images or -1)
    num_train = int(train_set.reduce(0, lambda n, _: n + 1))
    done = completed_epochs(run_dir)
    if done:
        log(f"resuming after epoch {done} of {config.epochs}")
    return RunStart(
        run_dir=run_dir,
        strategy=strategy,
        train_set=train_set,
        test_set=test_set,
        num_train=num_train,
        steps_per_epoch=math.ceil(num_train / config.batch_size),
        done=done,
    )


def fit_resumable(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    *,
    epochs: int,
    run_dir: str,
    callbacks: list[keras.callbacks.Callback] = (),
    verbose="auto",
) -> dict:
    """model.fit that continues where an interrupted run in run_dir stopped.

    BackupAndRestore keeps the weights, optimizer state and epoch counter in
    run_dir/backup after every epoch and is not deleted at the end, so the
    same command run again resumes (or, when training is complete, trains no
    more and goes on to evaluation).

    Returns:
      {"history": per-epoch logs of this call, "train_seconds": [...],
       "resumed_from_epoch": int}
    """
    resumed_from = completed_epochs(run_dir)
    throughput = Throughput()
    history = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=[
            keras.callbacks.BackupAndRestore(
                os.path.join(run_dir, BACKUP_DIR),
                delete_checkpoint=False,
                # Keeps the previous checkpoint while writing the next one,
                # so a kill during the write loses nothing.
                double_checkpoint=True,
            ),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "tb")),
            throughput,
            *callbacks,
        ],
    )
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "train_seconds": throughput.seconds,
        "resumed_from_epoch": resumed_from,
    }


def save_keras(model: keras.Model, path: str) -> None:
    """model.save to a .keras file, atomically."""
    with outputs.atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def export_saved_model(model: keras.Model, path: str) -> None:
    """model.export as a TF SavedModel folder, swapped into place whole."""
    temporary = f"{path}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    model.export(temporary, format="tf_saved_model", verbose=False)
    previous = f"{path}.old"
    if os.path.exists(path):
        os.replace(path, previous)
    os.replace(temporary, path)
    shutil.rmtree(previous, ignore_errors=True)


def saved_model_difference(model: keras.Model, path: str, sample: np.ndarray) -> float:
    """Max |Keras model - reloaded SavedModel| on `sample` (should be ~0)."""
    reloaded = tf.saved_model.load(path)
    expected = model.predict(sample, verbose=0)
    actual = reloaded.serve(tf.constant(sample)).numpy()
    return float(np.max(np.abs(expected - actual)))
