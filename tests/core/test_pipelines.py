"""Splits and classification batches: validation split, augmentation, order."""

import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.core import pipelines
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising.denoise_job import DenoiseConfig
from tests.conftest import TRAIN_FILES
from tests.conftest import write_cifar


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


def test_validation_split_is_deterministic_per_seed_and_disjoint():
    train, validation = pipelines.validation_split(30, 200, seed=3)
    again_train, again_validation = pipelines.validation_split(30, 200, seed=3)
    np.testing.assert_array_equal(validation, again_validation)
    np.testing.assert_array_equal(train, again_train)
    assert len(validation) == 30 and len(train) == 170
    assert not set(train) & set(validation)
    assert sorted(set(train) | set(validation)) == list(range(200))
    _, other = pipelines.validation_split(30, 200, seed=4)
    assert set(other) != set(validation)


def test_validation_split_refuses_taking_every_image():
    with pytest.raises(UserError, match="^--validation_images=20: expected 0 or"):
        pipelines.validation_split(20, 20, seed=0)
    train, validation = pipelines.validation_split(0, 20, seed=0)
    assert len(train) == 20 and len(validation) == 0


def test_training_jobs_validate_on_training_images_never_test_images(tmp_path):
    # Every image is unique, so pixels tell which file an image came from.
    data_dir, arrays = write_cifar(tmp_path / "data", "python", per_file=6, seed=5)
    config = DenoiseConfig(
        run_dir=str(tmp_path / "run"),
        data_dir=data_dir,
        validation_images=7,
        seed=1,
    )
    setup = training.start_run(config)
    held_out = np.stack([x for x, _ in setup.validation_set.as_numpy_iterator()])
    trained = np.stack([x for x, _ in setup.train_set.as_numpy_iterator()])
    as_bytes = lambda images: {  # noqa: E731
        np.round(image * 255).astype(np.uint8).tobytes() for image in images
    }
    train_files = np.concatenate([arrays[n][0] for n in TRAIN_FILES])
    test_file = arrays["test_batch"][0]
    train_pixels = {image.tobytes() for image in train_files}
    test_pixels = {image.tobytes() for image in test_file}
    assert len(held_out) == 7 and len(trained) == 30 - 7
    assert as_bytes(held_out) <= train_pixels
    assert not as_bytes(held_out) & test_pixels
    assert not as_bytes(held_out) & as_bytes(trained)
    assert setup.image_counts(6) == {"train": 23, "validation": 7, "test": 6}


def test_cutmix_mixes_a_box_and_the_labels_by_its_area():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(size=(4, 32, 32, 3)), tf.float32)
    labels = tf.one_hot([0, 1, 2, 3], 10)
    seed = tf.constant([5, 7], tf.int64)
    mixed, mixed_labels = pipelines.apply_cutmix(images, labels, seed, 1.0)
    partner = np.roll(images.numpy(), 1, axis=0)
    changed = np.any(mixed.numpy() != images.numpy(), axis=-1)  # [B, H, W]
    # The same box in every image, filled from the previous image of the batch.
    np.testing.assert_array_equal(changed[0], changed[1])
    box = changed[0]
    assert 0 < box.sum() < 32 * 32
    np.testing.assert_allclose(mixed.numpy()[:, box], partner[:, box])
    kept = 1.0 - box.mean()
    np.testing.assert_allclose(mixed_labels.numpy().sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mixed_labels.numpy()[1, 1], kept, rtol=1e-6)
    np.testing.assert_allclose(mixed_labels.numpy()[1, 0], 1.0 - kept, rtol=1e-6)
    same, same_labels = pipelines.apply_cutmix(images, labels, seed, 0.0)
    np.testing.assert_array_equal(same.numpy(), images.numpy())
    np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())


def test_one_hot_batches_with_cutmix_are_distributions():
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(16, 32, 32, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(16) % 10))
    batches = pipelines.labelled_batches(
        dataset, batch_size=8, seed=0, training=True, cutmix=1.0, one_hot=10
    )
    for _, labels in batches:
        assert labels.shape == (8, 10)
        np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, rtol=1e-6)
    plain = pipelines.labelled_batches(
        dataset, batch_size=8, seed=0, training=False, one_hot=10
    )
    _, labels = next(iter(plain))
    np.testing.assert_array_equal(labels.numpy(), np.eye(10)[np.arange(8) % 10])


def test_gaussian_noise_augmentation_draws_a_level_per_image_and_clips():
    images = tf.fill([64, 8, 8, 3], 0.5)
    noised = pipelines.add_gaussian_noise(images, tf.constant([1, 2]), 0.2).numpy()
    stds = (noised - 0.5).reshape(64, -1).std(axis=1)
    # Levels uniform in [0, 0.2]: spread over the range, none above it.
    assert stds.max() < 0.2 * 1.1 and stds.min() < 0.05 and stds.max() > 0.15
    edges = pipelines.add_gaussian_noise(
        tf.ones([4, 8, 8, 3]), tf.constant([3, 4]), 1.0
    )
    assert float(tf.reduce_max(edges)) <= 1.0
    batches = pipelines.labelled_batches(
        pipelines.from_arrays(np.full((8, 8, 8, 3), 0.5, np.float32), np.zeros(8)),
        batch_size=8,
        seed=0,
        training=True,
        augment=False,
        noise=0.1,
    )
    first, second = (x.numpy() for x, _ in batches.repeat(2))
    assert np.abs(first - 0.5).max() > 0 and not np.allclose(first, second)
