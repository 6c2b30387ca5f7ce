"""Training/validation splits and the tf.data pipelines the jobs share.

Random draws (augmentation, noise) use stateless ops with seeds from
`with_noise_seeds`, so training draws change every epoch and evaluation
draws never do.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core.errors import UserError


def validation_split(
    count: int, total: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a deterministic (train, validation) split of training images.

    The validation images are `count` of the `total` training images, drawn
    by a permutation seeded with `seed`: the same seed gives the same split,
    another seed another one. They never include a test image (only training
    indices are split).

    Args:
      count: validation images, 0 <= count < total.
      total: training images available.
      seed: the split's seed.

    Returns:
      (train indices, validation indices), int64, each ascending.

    Raises:
      UserError: naming --validation_images when count >= total.
    """
    if count < 0 or (count and count >= total):
        raise UserError(
            f"--validation_images={count}: expected 0 or fewer than the {total} "
            "training images."
        )
    chosen = np.random.default_rng(seed).permutation(total)[:count]
    validation = np.sort(chosen).astype(np.int64)
    train = np.setdiff1d(np.arange(total, dtype=np.int64), validation)
    return train, validation


def from_arrays(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """(image, label) examples from in-memory float32 images in [0, 1]."""
    return tf.data.Dataset.from_tensor_slices((images, labels))


def with_noise_seeds(images: tf.data.Dataset, seed: int, training: bool):
    """Pairs each element with a stateless-RNG seed of shape [2] (int64).

    Training: `Dataset.random(rerandomize_each_iteration=True)` gives new
    seeds every epoch (fresh noise); a seed built from `Dataset.counter()`
    would repeat the same noise every epoch. Its draws also depend on TF's
    global seed, so the jobs set that first (`keras.utils.set_random_seed`).

    Evaluation: the seed of image i is (seed, i), a pure function of the
    two, so the noise is the same run after run and in any process, whatever
    ran before (`Dataset.random` here would change with the global seed).
    """
    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(images, seeds.batch(2))
    seeds = tf.data.Dataset.counter().map(
        lambda index: tf.stack([tf.constant(seed, tf.int64), index])
    )
    return tf.data.Dataset.zip(images, seeds)


def crop_flip_augment(
    image: tf.Tensor, seed: tf.Tensor, padding: int = 4, cutout: int = 0
):
    """Random crop after reflect padding, random flip, optional cutout.

    The standard CIFAR-10 augmentation; `seed` is a stateless seed [2].
    `cutout` > 0 (DeVries and Taylor 2017) greys out a `cutout` x `cutout`
    square (0.5; partly outside the image when its centre is near the border).
    """
    size = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], "REFLECT")
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.image.stateless_random_crop(padded, size, seed=seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    if cutout:
        centre = tf.random.stateless_uniform([2], seeds[2], 0, size[0], tf.int32)
        rows = tf.abs(tf.range(size[0]) - centre[0]) < (cutout + 1) // 2
        cols = tf.abs(tf.range(size[1]) - centre[1]) < (cutout + 1) // 2
        square = tf.logical_and(rows[:, None], cols[None, :])[:, :, None]
        image = tf.where(square, 0.5, image)
    return image


def labelled_batches(
    dataset: tf.data.Dataset,
    *,
    batch_size: int,
    seed: int,
    training: bool,
    augment: bool = True,
    translate: int = 4,
    cutout: int = 0,
    shuffle_buffer: int = 50_000,
) -> tf.data.Dataset:
    """Batches of (image, label) for classification; augmentation on the fly.

    Args:
      dataset: (float32 image [32, 32, 3] in [0, 1], int label) elements.
      batch_size: images per batch.
      seed: fixes the shuffle and the augmentation draws (new every epoch).
      training: shuffle and (with `augment`) crop/flip; else in order.
      augment: random translation (crop after reflect padding) and
        horizontal flip.
      translate: the padding, i.e. the largest shift in pixels.
      cutout: with `augment`, side of the cutout square (0: none).
      shuffle_buffer: shuffle buffer size.
    """
    dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
        if augment:
            dataset = with_noise_seeds(dataset, seed, training=True).map(
                lambda pair, aug_seed: (
                    crop_flip_augment(
                        pair[0], aug_seed, padding=translate, cutout=cutout
                    ),
                    pair[1],
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
