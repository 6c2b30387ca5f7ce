"""Argument checks and types shared by the attacks (internal)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

ModelFn = Callable[[tf.Tensor], tf.Tensor]
Progress = Callable[[dict], None]

# Guards divisions by a zero gradient norm (e.g. two tied classes).
TINY = 1e-12


def as_images(images, name: str = "images") -> tf.Tensor:
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank is None or images.shape.rank < 2:
        raise ValueError(f"{name} must be a batch [B, ...], got shape {images.shape}.")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got [{low:g}, {high:g}].")
    return images


def as_labels(labels, batch: int, name: str) -> tf.Tensor:
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(f"{name} must be integers, got {labels.dtype.name}.")
    if labels.shape.as_list() != [batch]:
        raise ValueError(f"{name} must have shape [{batch}], got {labels.shape}.")
    return tf.cast(labels, tf.int64)


def check_non_negative(value: float, name: str) -> float:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    return float(value)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)
