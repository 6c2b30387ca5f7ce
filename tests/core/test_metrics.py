"""PSNR per image and the mean and std over images."""

import numpy as np
import pytest

from cifar_denoise_adv.core import metrics


def test_psnr_of_uniform_error_is_known():
    reference = np.full((3, 32, 32, 3), 0.5, np.float32)
    np.testing.assert_allclose(
        metrics.psnr(reference, reference + 0.1), 20.0, atol=1e-4
    )
    np.testing.assert_allclose(
        metrics.psnr(reference, reference - 0.01), 40.0, atol=1e-3
    )
    # One image: MSE over all pixels and channels (a quarter of them off by 0.2).
    estimate = reference[0].copy()
    estimate[:16, :16, :] += 0.2
    np.testing.assert_allclose(
        metrics.psnr(reference[0], estimate), 10 * np.log10(1 / (0.04 / 4)), atol=1e-4
    )


def test_psnr_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(np.zeros((1, 32, 32, 3)), np.zeros((1, 16, 16, 3)))


def test_mean_and_std():
    assert metrics.mean_and_std([1.0, 3.0]) == (2.0, 1.0)
    with pytest.raises(ValueError):
        metrics.mean_and_std([])
