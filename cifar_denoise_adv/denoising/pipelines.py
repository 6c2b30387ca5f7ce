"""The denoising pipeline: (noisy, clean) batches with noise added on the fly."""

from __future__ import annotations

import tensorflow as tf

from cifar_denoise_adv.core.pipelines import with_noise_seeds
from cifar_denoise_adv.denoising import noise


def dihedral_augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One of the 8 flips/rotations of an HWC image, chosen by `seed` [2]."""
    choice = tf.random.stateless_uniform([], seed, maxval=8, dtype=tf.int32)
    image = tf.image.rot90(image, k=choice % 4)
    return tf.cond(choice >= 4, lambda: tf.image.flip_left_right(image), lambda: image)


def noisy_pairs(
    images: tf.data.Dataset,
    *,
    sigma: float,
    batch_size: int,
    seed: int,
    training: bool,
    augment: bool = False,
    shuffle_buffer: int = 10_000,
    clip: bool = True,
) -> tf.data.Dataset:
    """Batches of (noisy, clean) images with noise added on the fly.

    Args:
      images: dataset of float32 [32, 32, 3] images in [0, 1] (labels are
        dropped if present).
      sigma: noise std in [0, 1] pixel units.
      batch_size: images per batch.
      seed: fixes the shuffle and the noise; training noise still changes
        every epoch, evaluation noise never does.
      training: shuffle, fresh noise each epoch, optional augmentation.
      augment: random flips and 90-degree rotations of the clean image,
        before the noise (training only).
      shuffle_buffer: shuffle buffer size (training only).
      clip: clip the noisy image to [0, 1].
    """
    if isinstance(images.element_spec, tuple):
        images = images.map(lambda image, *_: image)
    images = images.cache()  # random transformations come after the cache
    if training:
        images = images.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )

    def make_pair(image, noise_seed):
        if training and augment:
            image = dihedral_augment(image, noise_seed[::-1])
        noisy = noise.add_gaussian_noise(image, sigma, noise_seed, clip=clip)
        return noisy, image

    pairs = with_noise_seeds(images, seed, training).map(
        make_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return pairs.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def with_unit_noise(
    images: tf.data.Dataset, *, seed: int, batch_size: int = 512
) -> tf.data.Dataset:
    """Batches of (clean, z) with z ~ N(0, 1) the evaluation noise draws.

    `noisy_pairs(..., training=False)` with the same seed yields exactly
    clip(clean + sigma * z), so statistics and sigma calibration computed
    from these draws hold for the evaluation pipeline too.
    """
    if isinstance(images.element_spec, tuple):
        images = images.map(lambda image, *_: image)
    pairs = with_noise_seeds(images, seed, training=False).map(
        lambda image, noise_seed: (
            image,
            noise.unit_noise(tf.shape(image), noise_seed),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return pairs.batch(batch_size).prefetch(tf.data.AUTOTUNE)
