"""Argument checks and types shared by the attacks (internal).

Every check raises `UserError` (a ValueError) with one line naming the
argument, so an app that passes a bad value down prints that line instead of
a traceback. Quantities in pixel units go through `core.units`, the same
check the apps' flags use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import units
from cifar_denoise_adv.core.errors import UserError

ModelFn = Callable[[tf.Tensor], tf.Tensor]
Progress = Callable[[dict], None]

# Guards divisions by a zero gradient norm (e.g. two tied classes).
TINY = 1e-12


def as_images(images, name: str = "images") -> tf.Tensor:
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank is None or images.shape.rank < 2:
        raise UserError(f"{name} must be a batch [B, ...], got shape {images.shape}.")
    if images.shape[0] == 0:
        raise UserError(f"{name} is empty.")
    low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
    if low < 0.0 or high > 1.0:
        hint = "; 0-255 pixels? divide by 255" if high > 1.0 and low >= 0.0 else ""
        raise UserError(f"{name} must lie in [0, 1], got [{low:g}, {high:g}]{hint}.")
    return images


def as_labels(
    labels, batch: int, name: str, num_classes: int | None = None
) -> tf.Tensor:
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise UserError(f"{name} must be integers, got {labels.dtype.name}.")
    if labels.shape.as_list() != [batch]:
        raise UserError(f"{name} must have shape [{batch}], got {labels.shape}.")
    values = labels.numpy()
    if num_classes is not None and (values.min() < 0 or values.max() >= num_classes):
        raise UserError(
            f"{name} must be classes in 0..{num_classes - 1} (the model returns "
            f"{num_classes} scores), got {values.min()}..{values.max()}."
        )
    return tf.cast(labels, tf.int64)


def values_per_image(images: tf.Tensor) -> int:
    """The number of values in one example of a batch (3072 for CIFAR-10)."""
    return int(np.prod(images.shape[1:]))


def norm_name(p: float) -> str:
    """'linf' or 'l2' for a canonical norm order (see `norms.norm_order`)."""
    return "linf" if p == np.inf else "l2"


def check_budget(
    value: float, name: str, p: float = np.inf, size: int = units.IMAGE_VALUES
) -> float:
    """A budget, radius or step >= 0 in pixel units, measured in norm `p`.

    L-inf: at most 1; L2 over `size` values: at most sqrt(size). A larger
    value is refused as 0-255 units (`core.units.check_pixel_value`).
    """
    return units.check_pixel_value(value, name, norm=norm_name(p), size=size)


def check_step(
    value: float, name: str, p: float = np.inf, size: int = units.IMAGE_VALUES
) -> float:
    """A step size > 0 in pixel units, measured in norm `p` (see `check_budget`)."""
    return units.check_pixel_value(
        value, name, norm=norm_name(p), size=size, allow_zero=False
    )


def check_fraction(value: float, name: str) -> float:
    """A fraction in [0, 1] (an overshoot, a fooling-rate margin)."""
    return units.check_fraction(value, name)


def check_non_negative(value: float, name: str) -> float:
    if not np.isfinite(value) or value < 0:
        raise UserError(f"{name} must be a finite number >= 0, got {value}.")
    return float(value)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def as_perturbation(v, images: tf.Tensor, name: str = "v") -> tf.Tensor:
    """One perturbation [H, W, C] or one per image [N, H, W, C], |v| <= 1."""
    v = tf.convert_to_tensor(v, tf.float32)
    if v.shape != images.shape and v.shape != images.shape[1:]:
        raise UserError(
            f"{name} must have shape {images.shape[1:]} or {images.shape}, got "
            f"{v.shape}."
        )
    largest = float(tf.reduce_max(tf.abs(v)))
    if not np.isfinite(largest) or largest > 1.0:
        raise UserError(
            f"{name}: max |{name}| = {largest:g}; expected [0, 1] pixel units "
            f"(|{name}| <= 1); 0-255 units? divide it by 255."
        )
    return v
