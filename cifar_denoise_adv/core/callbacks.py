"""Keras callbacks every training run uses, beside BackupAndRestore.

The learning rate each epoch used in its logs (history, TensorBoard, the
epoch lines), TensorBoard logging that rate, and one line per epoch for
output that is not a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras

from cifar_denoise_adv.core import console


def learning_rate_used(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate of the optimizer's latest step.

    `optimizer.learning_rate` is the schedule at the *next* step (0 after
    the last step of a cosine decay); this is the schedule one step earlier,
    the rate that step used.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # loss scaling
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        step = max(int(optimizer.iterations.numpy()) - 1, 0)
        return float(schedule(step))
    return float(optimizer.learning_rate)


class LearningRateUsed(keras.callbacks.Callback):
    """Puts each epoch's learning rate (its last step's) in the epoch's logs.

    History (metrics.json), the epoch lines and TensorBoard then show the
    rate that was used, not the next step's.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = learning_rate_used(self.model.optimizer)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, logging the learning rate that was used."""

    def _collect_learning_rate(self, logs):
        # Keras would log optimizer.learning_rate, the next step's rate;
        # LearningRateUsed has already put the epoch's own rate in the logs.
        return logs


class EpochLines(keras.callbacks.Callback):
    """One line per epoch to `log`, for output that is not a terminal.

    Keras's progress bars rewrite their line with terminal escape codes,
    many KB per epoch in a redirected log; this writes the epoch's metrics
    and learning rate once (`console.epoch_line`).
    """

    def __init__(self, epochs: int, log: Callable[[str], None]):
        super().__init__()
        self._epochs = epochs
        self._log = log
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self._log(
            console.epoch_line(epoch + 1, self._epochs, dict(logs or {}), seconds)
        )


def remaining_line(what: str, seconds: float, left: int, unit: str, per: float) -> str:
    """'epoch 1 took 12.3 s; about 5.7 minutes left at this rate (27 epochs)'.

    Args:
      what: the finished piece ("epoch 1", "pass 1").
      seconds: how long it took.
      left: pieces still to come.
      unit: their name, plural ("epochs", "passes").
      per: the seconds each of them is expected to take.
    """
    minutes = left * per / 60
    if left == 1:
        unit = {"epochs": "epoch", "passes": "pass", "runs": "run"}.get(unit, unit)
    return (
        f"{what} took {seconds:.1f} s; about {minutes:.1f} minutes left at this "
        f"rate ({left} {unit})"
    )


class RemainingTime(keras.callbacks.Callback):
    """After the first epoch of this fit, one line with the minutes left.

    The rate is the first epoch's without its first step, which traces and
    compiles the step function (those seconds are said apart); validation
    and the per-epoch callbacks are in it.
    """

    def __init__(self, epochs: int, log: Callable[[str], None]):
        super().__init__()
        self._epochs = epochs
        self._log = log
        self._said = False
        self._steps = 0
        self._start = self._first_step = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self._steps == 1:
            self._first_step = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._said:
            return
        self._said = True
        now = time.perf_counter()
        seconds = now - self._start
        per_epoch = seconds
        if self._steps > 1:
            # The later steps' pace, the first step counted at that pace too.
            per_epoch = (now - self._first_step) * self._steps / (self._steps - 1)
        left = self._epochs - epoch - 1
        if left <= 0:
            return
        line = remaining_line(f"epoch {epoch + 1}", seconds, left, "epochs", per_epoch)
        if seconds - per_epoch > 1.0:
            line = line.replace(
                " s;", f" s ({seconds - per_epoch:.1f} s of it tracing the step);", 1
            )
        self._log(line)
