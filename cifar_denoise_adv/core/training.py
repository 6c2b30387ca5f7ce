"""Training helpers shared by the training jobs.

The settings every training job has (`TrainingConfig`), strategy, schedule,
resumable fit, throughput, and the end of training: atomic `.keras` save,
SavedModel export and the reload check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import pipelines
from cifar_denoise_adv.core import progress
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

BACKUP_DIR = "backup"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# A SavedModel that differs from its Keras model by more than this fails the run.
EXPORT_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class TrainingConfig(config_lib.RunConfig):
    """Settings every training job has; a job's config adds its own."""

    epochs: int = setting(10, "Training epochs.", low=1)
    batch_size: int = setting(64, "Images per training batch.", low=1)
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
        "float32",
        "Keras mixed-precision policy: float32, mixed_bfloat16 (CPUs with "
        "AVX512_BF16/AMX, GPUs of compute capability >= 8.0) or mixed_float16 "
        "(GPUs); weights, outputs and the loss stay float32.",
        choices=PRECISIONS,
    )
    strategy: str = setting(
        "default",
        "tf.distribute strategy: default (one device), mirrored (all local "
        "GPUs, or CPUs), multi_worker (hosts described by TF_CONFIG).",
        choices=STRATEGIES,
    )
    jit_compile: bool = setting(False, "Compile the training step with XLA.")
    num_examples: int = setting(
        6, "Rows of the example figures.", low=1, defines_result=False
    )


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
            raise UserError(
                "--strategy=multi_worker reads the cluster from the environment "
                "variable TF_CONFIG, which is not set."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"--strategy={name}: expected default, mirrored or multi_worker.")


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


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-linear rate: start x peak -> peak at `peak_at` -> end x peak.

    airbench94's schedule (K. Jordan 2024): from 0.2 of the peak up to the
    peak at 23% of the steps, then down to 0.07 of the peak at the last step.
    """

    def __init__(
        self,
        peak_learning_rate: float,
        total_steps: int,
        start: float = 0.2,
        end: float = 0.07,
        peak_at: float = 0.23,
    ):
        self.peak_learning_rate = peak_learning_rate
        self.total_steps = total_steps
        self.start, self.end, self.peak_at = start, end, peak_at

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak_step = max(self.peak_at * self.total_steps, 1.0)
        rising = self.start + (1.0 - self.start) * step / peak_step
        falling = 1.0 + (self.end - 1.0) * (step - peak_step) / max(
            self.total_steps - peak_step, 1.0
        )
        fraction = tf.where(step < peak_step, rising, falling)
        return self.peak_learning_rate * tf.maximum(fraction, self.end)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "start": self.start,
            "end": self.end,
            "peak_at": self.peak_at,
        }


def schedule(name: str, peak: float, total_steps: int, warmup_steps: int):
    """The learning-rate schedule --schedule names (see TrainingConfig)."""
    if name == "triangle":
        return Triangle(peak, total_steps)
    return warmup_cosine(peak, total_steps, warmup_steps)


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

    def image_counts(self, num_test: int) -> dict:
        """{"train", "validation", "test"} image counts, for the run record."""
        return {
            "train": self.num_train,
            "validation": self.num_validation,
            "test": num_test,
        }


def start_run(config: TrainingConfig, log) -> RunStart:
    """The set-up every training job shares, in the order it must happen.

    Seeds the global RNGs first (the pipelines' seeds depend on it), makes
    the run folder and the tf.distribute strategy, loads the training images
    (at most --max_train_images) and holds --validation_images of them out
    (`pipelines.validation_split`, by --seed), loads the test images, and
    finds how many epochs an interrupted run already completed (logged when
    resuming).
    """
    outputs.make_run_dir(config.run_dir)
    keras.utils.set_random_seed(config.seed)
    check_precision(config.precision)
    strategy = make_strategy(config.strategy)
    data_dir = config.data_dir or None
    images, labels = data.load_arrays(
        "train", data_dir, config.max_train_images or None
    )
    train, validation = pipelines.validation_split(
        config.validation_images, len(images), config.seed
    )
    validation_set = None
    if len(validation):
        validation_set = pipelines.from_arrays(images[validation], labels[validation])
    test_set = data.load("test", data_dir).take(config.max_test_images or -1)
    done = completed_epochs(config.run_dir)
    if done:
        log(f"resuming after epoch {done} of {config.epochs}")
    return RunStart(
        strategy=strategy,
        train_set=pipelines.from_arrays(images[train], labels[train]),
        validation_set=validation_set,
        test_set=test_set,
        num_train=len(train),
        num_validation=len(validation),
        steps_per_epoch=math.ceil(len(train) / config.batch_size),
        done=done,
    )


def _cpu_has_bfloat16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return True  # cannot tell (not Linux): let TensorFlow decide
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(precision: str) -> None:
    """Refuses a mixed precision the devices here cannot run fast.

    mixed_float16 needs a GPU (CPUs emulate float16 matmuls, slower than
    float32); mixed_bfloat16 needs a GPU of compute capability >= 8.0 or a
    CPU with AVX512_BF16 or AMX-BF16 when there is no GPU.

    Raises:
      UserError: naming --precision and what the machine has.
    """
    if precision == "float32":
        return
    gpus = tf.config.list_physical_devices("GPU")
    if precision == "mixed_float16" and not gpus:
        raise UserError(
            "--precision=mixed_float16 needs a GPU (this machine has none; CPUs "
            "emulate float16): use float32, or mixed_bfloat16 on a CPU with "
            "AVX512_BF16."
        )
    if precision == "mixed_bfloat16":
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability", (8, 0))
            if tuple(capability) < (8, 0):
                raise UserError(
                    "--precision=mixed_bfloat16 needs a GPU of compute capability "
                    f">= 8.0 (this one: {capability}): use mixed_float16."
                )
        elif not _cpu_has_bfloat16():
            raise UserError(
                "--precision=mixed_bfloat16: this CPU has no AVX512_BF16 or "
                "AMX-BF16 units, so bfloat16 would be emulated and slower: use "
                "float32."
            )


@contextlib.contextmanager
def precision_scope(precision: str):
    """Builds models under a Keras dtype policy, restoring the previous one.

    Layers made inside compute in the policy's dtype (bfloat16 or float16)
    and keep float32 weights; model builders give their output layers
    dtype="float32", so outputs and losses stay float32.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
    more and goes on to evaluation). Each epoch's logs and training seconds
    are kept beside it (`progress.EpochRecord`), so a run killed at any
    point and resumed reports every epoch.

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
    model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=[
            record,  # before the backup: progress never lacks a backed-up epoch
            keras.callbacks.BackupAndRestore(
                backup_dir,
                delete_checkpoint=False,
                # Keeps the previous checkpoint while writing the next one,
                # so a kill during the write loses nothing.
                double_checkpoint=True,
            ),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "tb")),
            *callbacks,
        ],
    )
    return {
        "history": progress.history(record.entries),
        "train_seconds": [entry["seconds"] for entry in record.entries],
        "train_seconds_this_run": record.seconds_this_run,
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


def finish_training(model: keras.Model, run_dir: str, sample: np.ndarray) -> float:
    """The end of every training run: save, export, check the export.

    Saves run_dir/model.keras, exports run_dir/saved_model/, reloads the
    SavedModel and compares it with the Keras model on `sample`.

    Returns:
      The largest absolute difference found.

    Raises:
      RuntimeError: when it exceeds EXPORT_TOLERANCE (the export is wrong).
    """
    save_keras(model, os.path.join(run_dir, KERAS_FILE))
    export_dir = os.path.join(run_dir, SAVED_MODEL_DIR)
    export_saved_model(model, export_dir)
    difference = saved_model_difference(model, export_dir, sample)
    if difference > EXPORT_TOLERANCE:
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
