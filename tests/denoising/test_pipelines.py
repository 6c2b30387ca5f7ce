"""The denoising pipeline: fixed evaluation noise, fresh training noise."""

import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.denoising import noise
from cifar_denoise_adv.denoising import pipelines


def _images(count=6):
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices(
        rng.uniform(size=(count, 32, 32, 3)).astype(np.float32)
    )


def _noisy(dataset):
    return np.concatenate([noisy.numpy() for noisy, _ in dataset])


def test_evaluation_noise_repeats_and_training_noise_changes():
    evaluation = pipelines.noisy_pairs(
        _images(), sigma=0.1, batch_size=4, seed=3, training=False
    )
    np.testing.assert_array_equal(_noisy(evaluation), _noisy(evaluation))
    # Same seed, new pipeline object: still the same noise (run after run).
    again = pipelines.noisy_pairs(
        _images(), sigma=0.1, batch_size=4, seed=3, training=False
    )
    np.testing.assert_array_equal(_noisy(evaluation), _noisy(again))

    # Whatever happens to TF's global seed in between (one process may run
    # several jobs), the evaluation noise stays the same.
    tf.random.set_seed(1234)
    later = pipelines.noisy_pairs(
        _images(), sigma=0.1, batch_size=4, seed=3, training=False
    )
    np.testing.assert_array_equal(_noisy(evaluation), _noisy(later))
    other_seed = pipelines.noisy_pairs(
        _images(), sigma=0.1, batch_size=4, seed=4, training=False
    )
    assert not np.allclose(_noisy(evaluation), _noisy(other_seed))

    training = pipelines.noisy_pairs(
        _images(), sigma=0.1, batch_size=6, seed=3, training=True, shuffle_buffer=1
    )
    epoch1, epoch2 = _noisy(training), _noisy(training)
    assert not np.allclose(epoch1, epoch2)


def test_noisy_pairs_are_clipped_and_clean_images_untouched():
    images = np.concatenate([_images(4).batch(4).get_single_element().numpy()])
    pairs = pipelines.noisy_pairs(
        tf.data.Dataset.from_tensor_slices((images, np.arange(4))),
        sigma=0.5,
        batch_size=4,
        seed=0,
        training=False,
    )
    noisy, clean = pairs.get_single_element()
    np.testing.assert_array_equal(clean, images)
    # Exactly clip(clean + sigma * z) with the evaluation draws z; at sigma 0.5
    # the clipping is at work at both ends.
    _, draws = pipelines.with_unit_noise(
        tf.data.Dataset.from_tensor_slices(images), seed=0, batch_size=4
    ).get_single_element()
    np.testing.assert_allclose(noisy, np.clip(images + 0.5 * draws, 0, 1), atol=1e-6)
    assert float(tf.reduce_min(noisy)) == 0.0 and float(tf.reduce_max(noisy)) == 1.0


def test_unit_noise_draws_match_the_evaluation_pipeline():
    evaluation = pipelines.noisy_pairs(
        _images(), sigma=0.2, batch_size=6, seed=5, training=False
    )
    clean, draws = pipelines.with_unit_noise(
        _images(), seed=5, batch_size=6
    ).get_single_element()
    np.testing.assert_allclose(
        _noisy(evaluation), np.clip(clean + 0.2 * draws, 0, 1), atol=1e-6
    )


def test_augmentation_keeps_content_up_to_a_flip_or_rotation():
    image = tf.random.stateless_uniform([32, 32, 3], [1, 1])
    variants = {
        pipelines.dihedral_augment(image, tf.constant([i, 0])).numpy().tobytes()
        for i in range(40)
    }
    assert 2 < len(variants) <= 8
    for variant in variants:
        pixels = np.frombuffer(variant, np.float32)
        np.testing.assert_allclose(np.sort(pixels), np.sort(image.numpy().ravel()))


def test_psnr_of_noisy_pairs_near_20db_at_sigma_0_1():
    images = tf.data.Dataset.from_tensor_slices(
        np.full((8, 32, 32, 3), 0.5, np.float32)
    )
    noisy, clean = pipelines.noisy_pairs(
        images, sigma=0.1, batch_size=8, seed=0, training=False
    ).get_single_element()
    assert float(tf.reduce_mean(noise.psnr(clean, noisy))) == pytest.approx(
        20.0, abs=0.2
    )
