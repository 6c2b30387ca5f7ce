"""Array arguments of the Python API: dtype, values and range, one check.

Every public function that takes images, perturbations or labels (the
noise functions, PSNR, the denoiser loaded for inference, the attacks and
their metrics) checks them here, so the same mistake gets the same words
wherever it is made, naming the argument:

- images are floats in [0, 1] pixel units; an integer array (uint8 0-255
  pixels, as image files and CIFAR-10's own arrays hold them) is refused
  with the fix, `x.astype("float32") / 255`, instead of being read as
  pixels 255 times too bright;
- NaN and infinite values are refused, naming how many and the first image
  holding one (a NaN passes every comparison, so a range check alone lets
  it through and the model is blamed for the NaN scores that follow);
- a float array outside [0, 1] that looks like 0-255 pixels says so;
- labels are integers, one per image, in 0..K-1.

Values are checked where they are known: on NumPy arrays and eager
tensors. Inside a `tf.function` or a `tf.data` map (symbolic tensors) only
the dtype can be checked, and is.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core.errors import UserError

PIXELS_0_255_HINT = "0-255 pixels? divide by 255"
INTEGER_HINT = "0-255 pixels? divide by 255: x.astype('float32') / 255"


def as_tensor(values, name: str) -> tf.Tensor:
    """`values` (an array, tensor, list or number) as a tensor of its own dtype.

    Raises:
      UserError: naming `name`, when it is not an array of numbers.
    """
    if isinstance(values, tf.Tensor | tf.Variable):
        return tf.convert_to_tensor(values)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype == object or array.dtype.kind in "USV":
        raise UserError(f"{name}: expected an array of numbers, got {values!r:.60}.")
    return tf.convert_to_tensor(array)


def _known(tensor: tf.Tensor) -> bool:
    """Whether the values are at hand (eager), not symbolic (graph)."""
    return not tf.is_symbolic_tensor(tensor)


def _check_float_dtype(tensor: tf.Tensor, name: str, expected: str, hint: str):
    dtype = tensor.dtype
    if dtype.is_floating:
        return
    extra = f"; {hint}" if dtype.is_integer and hint else ""
    raise UserError(f"{name} is {dtype.name}; expected {expected}{extra}.")


def check_finite(
    values: np.ndarray, name: str, expected: str, batch: bool = True
) -> None:
    """Refuses NaN and infinite values: one line with their count and place.

    Args:
      values: the array's values (any shape).
      name: the argument's name.
      expected: what the line says is expected, e.g. "values in [0, 1]".
      batch: the first axis counts images (the line names the first image
        holding a bad value).
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    count = int(bad.sum())
    kinds = []
    if np.isnan(values).any():
        kinds.append("NaN")
    if np.isinf(values).any():
        kinds.append("infinite")
    where = ""
    if batch and values.ndim >= 2:
        first = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
        where = f", the first in image {first}"
    raise UserError(
        f"{name} holds {count} {' and '.join(kinds)} value{'s' * (count > 1)}"
        f"{where}; expected finite {expected}."
    )


def check_images(
    images,
    name: str = "images",
    *,
    max_value: float = 1.0,
    min_rank: int = 2,
    check_range: bool = True,
) -> tf.Tensor:
    """Images as float32, checked: floats, a batch, finite, in [0, max_value].

    Args:
      images: [B, ...] (rank >= `min_rank`) NumPy array, tensor or list.
      name: the argument's name in the messages.
      max_value: the largest pixel value, 1 for [0, 1] pixel units. With a
        larger one (255) integer images are accepted too.
      min_rank: the fewest axes accepted (2: a batch [B, ...]).
      check_range: False to check only the dtype and finiteness (an
        estimate, e.g. noisy pixels before clipping, may leave the range).

    Returns:
      float32 tensor of the same shape.

    Raises:
      UserError (a ValueError): one line naming `name`.
    """
    tensor = as_tensor(images, name)
    expected = f"floats in [0, {max_value:g}]"
    if not (tensor.dtype.is_integer and max_value > 1.0):
        hint = INTEGER_HINT if max_value == 1.0 else ""
        _check_float_dtype(tensor, name, expected + " pixel units", hint)
    rank = tensor.shape.rank
    if rank is not None and rank < min_rank:
        shape = "a batch [B, ...]" if min_rank == 2 else f"at least {min_rank} axes"
        raise UserError(f"{name} must be {shape}, got shape {tensor.shape}.")
    if min_rank >= 2 and tensor.shape.rank is not None and tensor.shape[0] == 0:
        raise UserError(f"{name} is empty.")
    tensor = tf.cast(tensor, tf.float32)
    if not _known(tensor):
        return tensor
    values = tensor.numpy()
    check_finite(values, name, f"values in [0, {max_value:g}]")
    if check_range and values.size:
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > max_value:
            hint = ""
            if max_value == 1.0 and low >= 0.0 and high <= 255.0:
                hint = f"; {PIXELS_0_255_HINT}"
            raise UserError(
                f"{name} must lie in [0, {max_value:g}], got [{low:g}, {high:g}]{hint}."
            )
    return tensor


def checking(function, name: str = "images", min_rank: int = 4):
    """`function(images)` given its images checked (`check_images`), in NumPy.

    E.g. the function `denoising.inference.load_denoiser` returns.
    """
    return lambda images: function(
        check_images(images, name, min_rank=min_rank).numpy()
    )


def check_perturbation(values, name: str, batch: bool | None = None) -> tf.Tensor:
    """A perturbation (or a batch of them) as float32: floats, finite.

    Its size is the caller's to check (a projection accepts any size).
    `batch`: whether the first axis counts images (None: when it has 4 axes).

    Raises:
      UserError (a ValueError): one line naming `name`.
    """
    tensor = as_tensor(values, name)
    _check_float_dtype(tensor, name, "floats in [0, 1] pixel units", "")
    tensor = tf.cast(tensor, tf.float32)
    if _known(tensor):
        if batch is None:
            batch = tensor.shape.rank == 4
        check_finite(tensor.numpy(), name, "values in [0, 1] pixel units", batch)
    return tensor


def check_labels(
    labels, name: str, batch: int | None = None, num_classes: int | None = None
) -> tf.Tensor:
    """Class labels as int64 [B], checked: integers, one per image, in 0..K-1.

    Args:
      labels: int array or tensor [B].
      name: the argument's name in the messages.
      batch: B, the images they label (None: any length >= 1).
      num_classes: K, when known (the model's width).

    Raises:
      UserError (a ValueError): one line naming `name`.
    """
    tensor = as_tensor(labels, name)
    if not tensor.dtype.is_integer:
        raise UserError(f"{name} must be integers, got {tensor.dtype.name}.")
    if batch is not None and tensor.shape.as_list() != [batch]:
        raise UserError(f"{name} must have shape [{batch}], got {tensor.shape}.")
    if batch is None and tensor.shape.rank != 1:
        raise UserError(f"{name} must have shape [B], got {tensor.shape}.")
    if tensor.shape[0] == 0:
        raise UserError(f"{name} is empty.")
    if num_classes is not None and _known(tensor):
        values = tensor.numpy()
        if values.min() < 0 or values.max() >= num_classes:
            raise UserError(
                f"{name} must be classes in 0..{num_classes - 1} (the model returns "
                f"{num_classes} scores), got {values.min()}..{values.max()}."
            )
    return tf.cast(tensor, tf.int64)
