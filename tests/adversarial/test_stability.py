"""The stability figure: random signs and Gaussian noise, known answers."""

import math

import numpy as np
import pytest

from cifar_denoise_adv.adversarial import stability


def _first_pixel_model(images):
    """Class 1 where the first pixel is above 0.5, else class 0 (as scores)."""
    above = images.reshape(len(images), -1)[:, 0] > 0.5
    return np.stack([~above, above], axis=1).astype(np.float32)


def _images(offsets):
    """[N, 2, 2, 1] images at 0.5 whose first pixel is 0.5 + offset."""
    images = np.full((len(offsets), 2, 2, 1), 0.5, np.float32)
    images[:, 0, 0, 0] += np.asarray(offsets, np.float32)
    return images


def test_random_signs_flip_exactly_the_images_closer_than_eps_half_the_time():
    # Half the images sit 0.01 above the boundary, half 0.1 above: random
    # signs of 4/255 (0.0157) flip a near image iff its sign is negative
    # (chance 1/2) and never a far one; expected flip rate 1/4.
    n = 8000
    offsets = np.where(np.arange(n) % 2 == 0, 0.01, 0.1)
    labels = np.ones(n, np.int64)
    figures = stability.measure(
        _first_pixel_model, _images(offsets), labels, [4 / 255, 0.3], [], seed=3
    )
    assert figures["accuracy"] == 1.0
    # Binomial(4000, 1/2) / 8000: std 0.0056; 5 std.
    assert figures["signs_changed"]["4/255"] == pytest.approx(0.25, abs=0.03)
    # 0.3 exceeds both offsets: every image flips with chance 1/2.
    assert figures["signs_changed"]["0.3"] == pytest.approx(0.5, abs=0.03)
    assert figures["signs_accuracy"]["4/255"] == pytest.approx(
        1 - figures["signs_changed"]["4/255"]
    )


def test_gaussian_accuracy_is_the_normal_cdf_of_offset_over_sigma():
    n = 8000
    offset = 0.03
    labels = np.ones(n, np.int64)
    figures = stability.measure(
        _first_pixel_model, _images(np.full(n, offset)), labels, [], [0.02, 0.05]
    )
    for sigma in (0.02, 0.05):
        expected = 0.5 * (1 + math.erf(offset / sigma / math.sqrt(2)))
        assert figures["gaussian_accuracy"][f"{sigma:g}"] == pytest.approx(
            expected, abs=0.02
        )


def test_measure_is_deterministic_per_seed_and_a_steady_model_never_changes():
    images = np.random.default_rng(0).uniform(size=(50, 4, 4, 3)).astype(np.float32)
    labels = np.zeros(50, np.int64)
    constant = lambda x: np.tile([[1.0, 0.0]], (len(x), 1))  # noqa: E731
    figures = stability.measure(constant, images, labels)
    assert figures["signs_changed"] == {"4/255": 0.0, "10/255": 0.0}
    assert figures["gaussian_accuracy"] == {"0.02": 1.0, "0.05": 1.0}
    first = stability.measure(_first_pixel_model, images, labels, seed=1)
    assert stability.measure(_first_pixel_model, images, labels, seed=1) == first
    line = stability.summary(first)
    assert "random signs 10/255 change" in line and "Gaussian 0.05" in line
    assert set(stability.scalars(first, "s")) >= {
        "s/accuracy",
        "s/signs_changed_10_255",
        "s/gaussian_accuracy_0.05",
    }


def test_noised_images_stay_valid_pixels():
    seen = []

    def record(x):
        seen.append(x)
        return np.zeros((len(x), 2), np.float32)

    images = np.array([0.0, 1.0] * 8, np.float32).reshape(4, 2, 2, 1)
    stability.measure(record, images, np.zeros(4, np.int64), [0.5], [0.5])
    assert all(x.min() >= 0.0 and x.max() <= 1.0 for x in seen)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="labels"):
        stability.measure(_first_pixel_model, np.zeros((3, 2, 2, 1)), np.zeros(2))
