"""TensorBoard records: the one image writer, scalars, and the per-epoch grids.

Every job writes under run_dir/tb/ (`tensorboard --logdir runs` shows them
all); images are float [N, H, W, C] in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

TB_DIR = "tb"


def log_dir(run_dir: str, *parts: str) -> str:
    """run_dir/tb[/parts...]."""
    return os.path.join(run_dir, TB_DIR, *parts)


def write(
    folder: str,
    *,
    images: dict[str, np.ndarray] | None = None,
    scalars: dict[str, float] | None = None,
    step: int = 0,
) -> None:
    """Writes image batches and scalars at one step into a TensorBoard log.

    Args:
      folder: the log folder (see `log_dir`).
      images: {tag: float [N, H, W, C] in [0, 1]}; every image is shown.
      scalars: {tag: value}.
      step: the step (epoch, pass) they belong to.
    """
    writer = tf.summary.create_file_writer(folder)
    with writer.as_default(step=step):
        for tag, batch in (images or {}).items():
            batch = np.clip(np.asarray(batch, np.float32), 0.0, 1.0)
            tf.summary.image(tag, batch, max_outputs=len(batch))
        for tag, value in (scalars or {}).items():
            tf.summary.scalar(tag, value)
    writer.close()


def side_by_side(*columns: np.ndarray) -> np.ndarray:
    """[N, H, W, C] batches joined along the width: one grid per example."""
    return np.concatenate([np.clip(c, 0.0, 1.0) for c in columns], axis=2)


class ImageGrids(keras.callbacks.Callback):
    """Each epoch, `side_by_side(inputs, f(model output), targets)` to TensorBoard."""

    def __init__(
        self,
        folder: str,
        inputs: np.ndarray,
        targets: np.ndarray,
        tag: str,
        transform: Callable[[np.ndarray], np.ndarray] = lambda x: x,
    ):
        super().__init__()
        self._folder = folder
        self._inputs = inputs
        self._targets = targets
        self._tag = tag
        self._transform = transform

    def on_epoch_end(self, epoch, logs=None):
        # A direct call: a few images do not need predict's data pipeline,
        # which costs three times as much every epoch (and, under a
        # multi-worker strategy, a collective).
        outputs = self.model(self._inputs, training=False)
        produced = self._transform(np.asarray(outputs, np.float32))
        grids = side_by_side(self._inputs, produced, self._targets)
        write(self._folder, images={self._tag: grids}, step=epoch + 1)
