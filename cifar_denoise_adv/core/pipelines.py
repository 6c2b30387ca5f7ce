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


def apply_cutmix(
    images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, probability: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix on a batch (Yun et al., ICCV 2019), with probability `probability`.

    A box of area (1 - lam) of each image, lam ~ U(0, 1) (Beta(1, 1)) and
    its centre uniform, is replaced by the same box of the next image of the
    batch (the batch is already shuffled), and the labels are mixed by the
    area kept: lam' y + (1 - lam') y_next.

    Args:
      images: float32 [B, H, W, C].
      labels: float32 [B, K] label distributions (one-hot).
      seed: int [2] stateless seed of this batch.
      probability: chance that the batch is mixed at all, in [0, 1].

    Returns:
      (images, labels) of the same shapes.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    lam = tf.random.stateless_uniform([], seeds[0])
    ratio = tf.sqrt(1.0 - lam)
    box_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
    box_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
    centre = tf.random.stateless_uniform([2], seeds[1], 0, 1)
    cy = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
    cx = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
    rows = tf.range(height)
    cols = tf.range(width)
    inside_rows = (rows >= cy - box_h // 2) & (rows < cy + box_h // 2)
    inside_cols = (cols >= cx - box_w // 2) & (cols < cx + box_w // 2)
    box = tf.cast(inside_rows[:, None] & inside_cols[None, :], images.dtype)
    mixed = tf.random.stateless_uniform([], seeds[2]) < probability
    box = box * tf.cast(mixed, images.dtype)
    kept = 1.0 - tf.reduce_mean(box)
    box = box[None, :, :, None]
    partner_images = tf.roll(images, shift=1, axis=0)
    partner_labels = tf.roll(labels, shift=1, axis=0)
    images = images * (1.0 - box) + partner_images * box
    labels = kept * labels + (1.0 - kept) * partner_labels
    return images, labels


def add_gaussian_noise(
    images: tf.Tensor, seed: tf.Tensor, max_sigma: float
) -> tf.Tensor:
    """Each image plus Gaussian noise of its own std, uniform in [0, max_sigma].

    Noise augmentation over a range of levels (clean images included), so
    the classifier learns to ignore plain noise without losing clean
    accuracy to one fixed level; the result is clipped to [0, 1].

    Args:
      images: float32 [B, H, W, C] in [0, 1].
      seed: int [2] stateless seed of this batch.
      max_sigma: largest std, pixels.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    sigma = tf.random.stateless_uniform(
        [tf.shape(images)[0], 1, 1, 1], seeds[0], 0.0, max_sigma
    )
    noise = tf.random.stateless_normal(tf.shape(images), seeds[1])
    return tf.clip_by_value(images + sigma * noise, 0.0, 1.0)


def labelled_batches(
    dataset: tf.data.Dataset,
    *,
    batch_size: int,
    seed: int,
    training: bool,
    augment: bool = True,
    translate: int = 4,
    cutout: int = 0,
    cutmix: float = 0.0,
    noise: float = 0.0,
    one_hot: int = 0,
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
      cutmix: with `augment` and `one_hot`, the chance that a training batch
        is mixed by `cutmix` (0: never).
      noise: if > 0, training images get Gaussian noise of a std drawn
        per image uniformly in [0, noise] (`add_gaussian_noise`), last.
      one_hot: if > 0, labels become float32 [B, one_hot] distributions
        (one-hot; CutMix mixes them); else they stay integers.
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
    batches = dataset.batch(batch_size)
    if one_hot:
        batches = batches.map(lambda x, y: (x, tf.one_hot(y, one_hot)))
        if training and augment and cutmix:
            seeds = tf.data.Dataset.random(
                seed=seed + 1, rerandomize_each_iteration=True
            ).batch(2)
            batches = tf.data.Dataset.zip(batches, seeds).map(
                lambda pair, batch_seed: apply_cutmix(*pair, batch_seed, cutmix),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    if training and noise:
        seeds = tf.data.Dataset.random(
            seed=seed + 2, rerandomize_each_iteration=True
        ).batch(2)
        batches = tf.data.Dataset.zip(batches, seeds).map(
            lambda pair, batch_seed: (
                add_gaussian_noise(pair[0], batch_seed, noise),
                pair[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return batches.prefetch(tf.data.AUTOTUNE)
