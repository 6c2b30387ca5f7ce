"""Clipped Gaussian noise, PSNR, and the sigma for a target PSNR."""

import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import noise
from cifar_denoise_adv.denoising import noise_job


def _images(count=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(count, 32, 32, 3)).astype(np.float32)


def test_noise_stays_in_unit_range_and_changes_the_image():
    images = _images()
    seed = tf.constant([1, 2])
    noisy = noise.add_gaussian_noise(images, 0.3, seed).numpy()
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert np.abs(noisy - images).mean() > 0.05
    # Clipped where x + noise leaves [0, 1] (at both ends here), else unchanged.
    unclipped = images + 0.3 * noise.unit_noise(images.shape, seed).numpy()
    np.testing.assert_allclose(noisy, np.clip(unclipped, 0.0, 1.0), atol=1e-6)
    assert (unclipped < 0).any() and (unclipped > 1).any()


def test_same_seed_same_noise_other_seed_other_noise():
    images = _images(2)
    first = noise.add_gaussian_noise(images, 0.1, tf.constant([3, 4]))
    again = noise.add_gaussian_noise(images, 0.1, tf.constant([3, 4]))
    other = noise.add_gaussian_noise(images, 0.1, tf.constant([3, 5]))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_unclipped_noise_is_sigma_times_unit_draws():
    images = np.full((1, 8, 8, 3), 0.5, np.float32)
    seed = tf.constant([7, 8])
    noisy = noise.add_gaussian_noise(images, 0.2, seed, clip=False)
    draws = noise.unit_noise(images.shape, seed)
    np.testing.assert_allclose(noisy - images, 0.2 * draws, atol=1e-6)


def test_negative_sigma_is_refused():
    with pytest.raises(ValueError, match="sigma"):
        noise.add_gaussian_noise(_images(1), -0.1, tf.constant([0, 0]))


def test_analytic_sigma():
    assert noise.analytic_sigma(20.0) == pytest.approx(0.1)
    assert noise.analytic_sigma(40.0) == pytest.approx(0.01)


def _fixed_draw_batches(images, seed=0):
    draws = tf.random.stateless_normal(images.shape, [seed, 1])
    return [(tf.constant(images), draws)]


def test_calibration_without_clipping_finds_the_analytic_sigma():
    batches = _fixed_draw_batches(_images(64))
    sigma = noise.calibrate_sigma(noise.mean_noisy_psnr_fn(batches, clip=False), 20.0)
    assert sigma == pytest.approx(0.1, abs=1e-3)


def test_calibration_with_clipping_needs_a_larger_sigma_and_hits_the_target():
    # Saturated pixels lose half their noise to clipping.
    images = np.clip(_images(64) * 1.6 - 0.3, 0.0, 1.0)
    batches = _fixed_draw_batches(images)
    mean_psnr = noise.mean_noisy_psnr_fn(batches, clip=True)
    sigma = noise.calibrate_sigma(mean_psnr, 20.0)
    assert sigma > 0.1 + 5e-3
    assert mean_psnr(sigma) == pytest.approx(20.0, abs=1e-2)
    assert mean_psnr(0.1) > 20.0


def test_a_target_psnr_no_sigma_up_to_1_reaches_is_one_line_naming_the_flag():
    batches = _fixed_draw_batches(_images(8))
    mean_psnr = noise.mean_noisy_psnr_fn(batches, clip=True)
    floor = mean_psnr(1.0)  # clipped noise as wide as the pixel range
    assert 3.0 < floor < 8.0
    with pytest.raises(ValueError, match="no sigma in \\[0, 1\\] pixel units"):
        noise.calibrate_sigma(mean_psnr, 1.0)
    config = noise_job.NoiseConfig(target_psnr=1.0)
    with pytest.raises(UserError) as error:
        noise_job._sigmas(config, batches, lambda message: None)
    assert str(error.value) == (
        "--target_psnr=1: no sigma in [0, 1] pixel units reaches a mean PSNR of "
        f"1 dB on these images: clipped noise of sigma 1 gives {floor:.2f} dB."
    )
    # sigma itself is checked like the flag: 25 is 0-255 units.
    with pytest.raises(UserError, match="^sigma=25: .* write 25/255"):
        noise.noisy_psnr(batches[0][0], batches[0][1], 25.0, clip=True)
