"""Argument checks and types shared by the attacks (internal)."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable

import numpy as np
import tensorflow as tf

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
