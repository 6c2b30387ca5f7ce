"""Image metrics both studies use: PSNR per image, mean and std over images.

Images are float in [0, 1] (MAX = 1), MSE over all pixels and channels of
an image; the std over images is the population std.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import arrays


def psnr(reference: tf.Tensor, estimate: tf.Tensor, max_value: float = 1.0):
    """PSNR in dB per image: 10 log10(MAX^2 / MSE), MSE over H, W and C.

    Args:
      reference: float [B, H, W, C] (or [H, W, C] for one image).
      estimate: same shape as `reference`.
      max_value: the peak signal value (1 for images in [0, 1]).

    Returns:
      float32 [B] (or a scalar); +inf where the images are identical.

    Raises:
      UserError (a ValueError): one line naming `reference` or `estimate`
        (`core.arrays`): integer images with max_value 1 (uint8 0-255
        pixels: divide by 255, or pass max_value=255), NaN or infinite
        values, a reference outside [0, max_value].
    """
    reference = arrays.check_images(
        reference, "reference", max_value=max_value, min_rank=3
    )
    # An estimate may leave the range (noise before clipping): its dtype and
    # finiteness are checked, not its range.
    estimate = arrays.check_images(
        estimate, "estimate", max_value=max_value, min_rank=3, check_range=False
    )
    if not reference.shape.is_compatible_with(estimate.shape):
        raise ValueError(
            f"reference {reference.shape} and estimate {estimate.shape} differ "
            "in shape."
        )
    return psnr_unchecked(reference, estimate, max_value)


def psnr_unchecked(reference: tf.Tensor, estimate: tf.Tensor, max_value: float = 1.0):
    """`psnr` on float32 tensors already checked (a loop's inner call)."""
    mse = tf.reduce_mean(tf.square(reference - estimate), axis=[-3, -2, -1])
    return 10.0 * tf.math.log(max_value**2 / mse) / math.log(10.0)


def mean_and_std(values) -> tuple[float, float]:
    """Mean and (population) standard deviation of per-image values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_and_std needs at least one value.")
    return float(values.mean()), float(values.std())
