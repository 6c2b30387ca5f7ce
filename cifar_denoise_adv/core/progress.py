"""Training progress that survives a kill: per-epoch history and seconds.

Keras' BackupAndRestore (run_dir/backup) keeps the weights, the optimizer
and the epoch counter, but not the history or the time each epoch took.
`EpochRecord` keeps those beside it, in run_dir/backup/progress.json,
written atomically at the end of every epoch *before* the backup is
(it comes first in the callbacks), so the file never lacks an epoch the
backup has. On resume, `completed(run_dir, epochs)` returns the record of
the epochs the backup holds, and a resumed run reports the history of every
epoch and the training seconds summed over all its pieces.
"""

from __future__ import annotations

import os
import time

import keras

from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core.errors import UserError

PROGRESS_FILE = "progress.json"


def progress_path(backup_dir: str) -> str:
    """The progress file of a run's backup folder."""
    return os.path.join(backup_dir, PROGRESS_FILE)


def completed(backup_dir: str, epochs: int) -> list[dict]:
    """The recorded epochs 1..`epochs` (each {"logs": {...}, "seconds": s}).

    Fewer when the record is missing or shorter (a backup written before
    progress was kept); later entries (an epoch recorded whose backup was
    not written before a kill) are dropped, since that epoch is trained again.
    """
    path = progress_path(backup_dir)
    if not epochs or not os.path.isfile(path):
        return []
    try:
        entries = outputs.read_json(path).get("epochs", [])
    except (UserError, AttributeError):
        return []
    return list(entries[:epochs])


def history(entries: list[dict]) -> dict[str, list[float]]:
    """Keras-style history {metric: [value per epoch]} of recorded epochs."""
    result: dict[str, list[float]] = {}
    for entry in entries:
        for name, value in entry["logs"].items():
            result.setdefault(name, []).append(value)
    return result


class EpochRecord(keras.callbacks.Callback):
    """Times each epoch (training only) and persists it with its logs.

    Attributes:
      entries: the epochs recorded so far, earlier pieces' included.
      seconds_this_run: training seconds of the epochs of this call.
    """

    def __init__(self, backup_dir: str, earlier: list[dict]):
        super().__init__()
        self.path = progress_path(backup_dir)
        self.entries = list(earlier)
        self.seconds_this_run: list[float] = []
        self._start = None
        self._seconds = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._seconds = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._start is not None and self._seconds is None:
            # Validation inside fit: the clock stops for it.
            self._seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if self._seconds is None:
            self._seconds = time.perf_counter() - self._start
        self.seconds_this_run.append(self._seconds)
        values = {name: float(value) for name, value in (logs or {}).items()}
        self.entries.append({"logs": values, "seconds": self._seconds})
        outputs.write_json(self.path, {"epochs": self.entries})
