"""Argument checks and types shared by the attacks (internal).

Every check raises `UserError` (a ValueError) with one line naming the
argument, so an app that passes a bad value down prints that line instead of
a traceback. Quantities in pixel units go through `core.units`, the same
check the apps' flags use.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import arrays
from cifar_denoise_adv.core import units
from cifar_denoise_adv.core.errors import UserError

ModelFn = Callable[[tf.Tensor], tf.Tensor]
Progress = Callable[[dict], None]

# Guards divisions by a zero gradient norm (e.g. two tied classes).
TINY = 1e-12


def _call_referenced(function, model_ref, *args):
    return function(model_ref(), *args)


def per_model(function: Callable) -> Callable:
    """`function(model_fn, *args)` compiled with `tf.function` once per model.

    A module-level tf.function that takes the model as an argument traces
    again for every new model object, and a sweep or a study loads the
    classifier once per run, so TF warns about frequent retracing. Here each
    model (or bound method, e.g. `model.__call__`) gets its own tf.function
    (shapes generalised by `reduce_retracing`), which holds the model weakly
    and goes with it. Unhashable callables share one tf.function, as before.
    """
    shared = tf.function(function, reduce_retracing=True)
    compiled = weakref.WeakKeyDictionary()  # owner -> {method or None: graph}

    @functools.wraps(function)
    def call(model_fn, *args):
        method = inspect.ismethod(model_fn)
        owner = model_fn.__self__ if method else model_fn
        member = model_fn.__func__ if method else None
        try:
            graphs = compiled.setdefault(owner, {})
        except TypeError:  # not hashable or not weakly referable
            return shared(model_fn, *args)
        if member not in graphs:
            reference = weakref.WeakMethod(model_fn) if method else weakref.ref(owner)
            # A partial, not a closure: TF counts retracings per code object,
            # and a partial has none, so each model counts alone.
            graphs[member] = tf.function(
                functools.partial(_call_referenced, function, reference),
                reduce_retracing=True,
            )
        return graphs[member](*args)

    return call


def as_images(images, name: str = "images") -> tf.Tensor:
    """A batch [B, ...] of float images in [0, 1] as float32 (`core.arrays`)."""
    return arrays.check_images(images, name)


def as_labels(
    labels, batch: int, name: str, num_classes: int | None = None
) -> tf.Tensor:
    """Integer classes [batch] in 0..num_classes-1 as int64 (`core.arrays`)."""
    return arrays.check_labels(labels, name, batch, num_classes)


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
    v = arrays.check_perturbation(v, name)
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
