"""Classification batches: crop/flip augmentation, cutout, evaluation order."""

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import pipelines


def test_crop_flip_keeps_shape_and_varies_per_epoch():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(8, 32, 32, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(8)))
    batches = pipelines.labelled_batches(dataset, batch_size=8, seed=1, training=True)
    (x1, y1), (x2, y2) = next(iter(batches)), next(iter(batches))
    assert x1.shape == (8, 32, 32, 3)
    order1, order2 = np.argsort(y1.numpy()), np.argsort(y2.numpy())
    assert not np.allclose(x1.numpy()[order1], x2.numpy()[order2])
    evaluation = pipelines.labelled_batches(
        dataset, batch_size=8, seed=1, training=False
    )
    x, y = next(iter(evaluation))
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, np.arange(8))


def test_cutout_greys_a_square():
    image = tf.zeros([32, 32, 3])
    out = pipelines.crop_flip_augment(image, tf.constant([3, 4]), cutout=8).numpy()
    grey = np.all(out == 0.5, axis=-1)
    assert 0 < grey.sum() <= 64
    rows, cols = np.nonzero(grey)
    assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8


def test_evaluation_seeds_are_a_pure_function_of_seed_and_index():
    images = tf.data.Dataset.from_tensor_slices(np.zeros((3, 2), np.float32))
    seeds = [
        s.numpy().tolist() for _, s in pipelines.with_noise_seeds(images, 7, False)
    ]
    assert seeds == [[7, 0], [7, 1], [7, 2]]
