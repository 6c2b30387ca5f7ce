"""NumPy in, NumPy out for the public attack functions (internal).

The attacks compute with tensors. A NumPy user expects arrays back
(`result.success.mean()`, `np.save`), a TF user tensors, so each public
function returns what it was given: NumPy arrays (also as the fields of its
result) when its array arguments are NumPy arrays and none is a tensor,
tensors otherwise. Numbers stay Python numbers either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import tensorflow as tf


def _is_tensor(value) -> bool:
    return isinstance(value, (tf.Tensor, tf.Variable))


def _to_numpy(value):
    if _is_tensor(value):
        return value.numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a result
        return type(value)(*(_to_numpy(field) for field in value))
    return value


def numpy_like_inputs(function: Callable) -> Callable:
    """`function` returning NumPy arrays when called with NumPy arrays."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        result = function(*args, **kwargs)
        values = [*args, *kwargs.values()]
        if any(isinstance(v, np.ndarray) for v in values) and not any(
            _is_tensor(v) for v in values
        ):
            return _to_numpy(result)
        return result

    return call
