import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv import noise_lib


def _images(count=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(count, 32, 32, 3)).astype(np.float32)


def test_noise_stays_in_unit_range_and_changes_the_image():
    images = _images()
    noisy = noise_lib.add_gaussian_noise(images, 0.3, tf.constant([1, 2])).numpy()
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert np.abs(noisy - images).mean() > 0.05


def test_same_seed_same_noise_other_seed_other_noise():
    images = _images(2)
    first = noise_lib.add_gaussian_noise(images, 0.1, tf.constant([3, 4]))
    again = noise_lib.add_gaussian_noise(images, 0.1, tf.constant([3, 4]))
    other = noise_lib.add_gaussian_noise(images, 0.1, tf.constant([3, 5]))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_unclipped_noise_is_sigma_times_unit_draws():
    images = np.full((1, 8, 8, 3), 0.5, np.float32)
    seed = tf.constant([7, 8])
    noisy = noise_lib.add_gaussian_noise(images, 0.2, seed, clip=False)
    draws = noise_lib.unit_noise(images.shape, seed)
    np.testing.assert_allclose(noisy - images, 0.2 * draws, atol=1e-6)


def test_negative_sigma_is_refused():
    with pytest.raises(ValueError, match="sigma"):
        noise_lib.add_gaussian_noise(_images(1), -0.1, tf.constant([0, 0]))


def test_psnr_of_uniform_error_is_known():
    reference = np.full((3, 32, 32, 3), 0.5, np.float32)
    np.testing.assert_allclose(
        noise_lib.psnr(reference, reference + 0.1), 20.0, atol=1e-4
    )
    np.testing.assert_allclose(
        noise_lib.psnr(reference, reference - 0.01), 40.0, atol=1e-3
    )
    # One image: MSE over all pixels and channels (a quarter of them off by 0.2).
    estimate = reference[0].copy()
    estimate[:16, :16, :] += 0.2
    np.testing.assert_allclose(
        noise_lib.psnr(reference[0], estimate), 10 * np.log10(1 / (0.04 / 4)), atol=1e-4
    )


def test_psnr_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        noise_lib.psnr(np.zeros((1, 32, 32, 3)), np.zeros((1, 16, 16, 3)))


def test_mean_and_std():
    assert noise_lib.mean_and_std([1.0, 3.0]) == (2.0, 1.0)
    with pytest.raises(ValueError):
        noise_lib.mean_and_std([])


def test_analytic_sigma():
    assert noise_lib.analytic_sigma(20.0) == pytest.approx(0.1)
    assert noise_lib.analytic_sigma(40.0) == pytest.approx(0.01)


def _fixed_draw_batches(images, seed=0):
    draws = tf.random.stateless_normal(images.shape, [seed, 1])
    return [(tf.constant(images), draws)]


def test_calibration_without_clipping_finds_the_analytic_sigma():
    batches = _fixed_draw_batches(_images(64))
    sigma = noise_lib.calibrate_sigma(
        noise_lib.mean_noisy_psnr_fn(batches, clip=False), 20.0
    )
    assert sigma == pytest.approx(0.1, abs=1e-3)


def test_calibration_with_clipping_needs_a_larger_sigma_and_hits_the_target():
    # Saturated pixels lose half their noise to clipping.
    images = np.clip(_images(64) * 1.6 - 0.3, 0.0, 1.0)
    batches = _fixed_draw_batches(images)
    mean_psnr = noise_lib.mean_noisy_psnr_fn(batches, clip=True)
    sigma = noise_lib.calibrate_sigma(mean_psnr, 20.0)
    assert sigma > 0.1 + 5e-3
    assert mean_psnr(sigma) == pytest.approx(20.0, abs=1e-2)
    assert mean_psnr(0.1) > 20.0
