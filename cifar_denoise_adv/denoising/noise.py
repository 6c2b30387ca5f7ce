"""Clipped Gaussian noise, PSNR, and the noise level for a target PSNR.

Pure functions on tensors: no flags, no files, no printing. Images are
float32 in [0, 1] (checked by `core.arrays`: uint8 0-255 pixels and NaN are
refused with one line); sigma is in the same [0, 1] pixel units, at most 1 (a
larger value is refused as 0-255 units by `core.units`, as the apps' --sigma
is); PSNR uses MAX = 1 and the mean squared error over all pixels and
channels of an image.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from cifar_denoise_adv.core import arrays
from cifar_denoise_adv.core import units
from cifar_denoise_adv.core.metrics import mean_and_std  # noqa: F401 - re-exported
from cifar_denoise_adv.core.metrics import psnr  # noqa: F401 - re-exported
from cifar_denoise_adv.core.metrics import psnr_unchecked


def unit_noise(shape, seed: tf.Tensor) -> tf.Tensor:
    """Standard normal draws, reproducible from a stateless seed of shape [2]."""
    return tf.random.stateless_normal(shape, seed, dtype=tf.float32)


def add_gaussian_noise(
    images: tf.Tensor, sigma: float, seed: tf.Tensor, *, clip: bool = True
) -> tf.Tensor:
    """Y = clip(x + N(0, sigma^2), 0, 1), independently per pixel and channel.

    Args:
      images: float32 [..., H, W, C] in [0, 1].
      sigma: noise std in [0, 1] pixel units (a Python number).
      seed: int [2], the stateless RNG seed; the same seed gives the same
        noise, and the noise is exactly `sigma * unit_noise(shape, seed)`.
      clip: clip the result to [0, 1], as a stored image would be.

    Returns:
      float32 tensor shaped like `images`.

    Raises:
      UserError (a ValueError): sigma negative or above 1 (0-255 units);
        images not floats in [0, 1] (uint8 0-255 pixels among them) or
        holding NaN (`core.arrays`; inside a tf.data map or tf.function only
        the dtype is known, and checked).
    """
    sigma = units.check_pixel_value(sigma, "sigma")
    images = arrays.check_images(images, min_rank=3)
    noisy = images + sigma * unit_noise(tf.shape(images), seed)
    return tf.clip_by_value(noisy, 0.0, 1.0) if clip else noisy


def analytic_sigma(target_psnr: float, max_value: float = 1.0) -> float:
    """Sigma whose expected MSE gives `target_psnr` when nothing is clipped.

    E[(y - x)^2] = sigma^2, so PSNR = 20 log10(MAX / sigma) and
    sigma = MAX * 10^(-PSNR / 20): 0.1 for 20 dB with MAX = 1.
    """
    return max_value * 10.0 ** (-target_psnr / 20.0)


def noisy_psnr(
    images: tf.Tensor, unit_draws: tf.Tensor, sigma: float, *, clip: bool
) -> tf.Tensor:
    """PSNR [B] between images and clip(images + sigma * unit_draws).

    Raises:
      UserError (a ValueError): sigma outside [0, 1] pixel units; images
        or unit_draws not float, or not finite (`core.arrays`).
    """
    sigma = units.check_pixel_value(sigma, "sigma")
    images = arrays.check_images(images, min_rank=3)
    unit_draws = arrays.check_images(unit_draws, "unit_draws", check_range=False)
    return _noisy_psnr(images, unit_draws, sigma, clip)


def _noisy_psnr(images, unit_draws, sigma: float, clip: bool) -> tf.Tensor:
    noisy = images + sigma * unit_draws
    if clip:
        noisy = tf.clip_by_value(noisy, 0.0, 1.0)
    return psnr_unchecked(images, noisy)


def calibrate_sigma(
    mean_psnr_at: Callable[[float], float],
    target_psnr: float,
    *,
    tolerance: float = 1e-6,
    max_iterations: int = 60,
) -> float:
    """Sigma at which `mean_psnr_at(sigma)` equals `target_psnr`, by bisection.

    `mean_psnr_at` must be non-increasing in sigma, which holds for a fixed
    set of noise draws: |clip(x + sigma z) - x| grows with sigma pixel by
    pixel. Keep the draws fixed during the search (see
    `mean_noisy_psnr_fn`), or the bisection chases sampling noise.

    Args:
      mean_psnr_at: sigma -> mean PSNR in dB.
      target_psnr: the mean PSNR wanted, in dB.
      tolerance: stop when the bracket is narrower than this (pixel units).
      max_iterations: bisection steps at most.

    Returns:
      sigma in [0, 1] pixel units.

    Raises:
      ValueError: when even sigma = 1 (noise as wide as the pixel range)
        leaves the mean PSNR above the target.
    """
    low = 0.0
    high = min(analytic_sigma(target_psnr), 1.0)
    # Clipping only ever removes noise, so the answer lies above the
    # analytic sigma; widen the bracket until it holds the target.
    while mean_psnr_at(high) > target_psnr:
        if high >= 1.0:
            raise ValueError(
                f"no sigma in [0, 1] pixel units reaches a mean PSNR of "
                f"{target_psnr:g} dB on these images: clipped noise of sigma 1 "
                f"gives {mean_psnr_at(1.0):.2f} dB."
            )
        low, high = high, min(2.0 * high, 1.0)
    for _ in range(max_iterations):
        if high - low < tolerance:
            break
        middle = 0.5 * (low + high)
        if mean_psnr_at(middle) > target_psnr:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def mean_noisy_psnr_fn(
    batches: list[tuple[tf.Tensor, tf.Tensor]], *, clip: bool
) -> Callable[[float], float]:
    """Sigma -> mean PSNR over fixed (images, unit_draws) batches.

    The batches are checked once here (`core.arrays`), not at every sigma
    the bisection tries.
    """
    batches = [
        (
            arrays.check_images(x, min_rank=3),
            arrays.check_images(z, "unit_draws", check_range=False),
        )
        for x, z in batches
    ]

    def mean_psnr(sigma: float) -> float:
        sigma = units.check_pixel_value(sigma, "sigma")
        values = [_noisy_psnr(x, z, sigma, clip) for x, z in batches]
        return float(tf.reduce_mean(tf.concat(values, axis=0)))

    return mean_psnr
