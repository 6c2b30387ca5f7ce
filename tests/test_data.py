import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cifar_denoise_adv import data
from cifar_denoise_adv import noise_lib
from tests.conftest import TEST_FILES
from tests.conftest import TRAIN_FILES
from tests.conftest import write_cifar


@pytest.mark.parametrize("layout", ["python", "binary", "python_tar", "binary_tar"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_local_layouts_read_the_official_files(tmp_path, layout, split):
    path, arrays = write_cifar(tmp_path, layout, per_file=2)
    names = TRAIN_FILES if split == "train" else TEST_FILES
    want_images = np.concatenate([arrays[n][0] for n in names])
    want_labels = np.concatenate([arrays[n][1] for n in names])

    images, labels = data.read_local_arrays(path, split)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)

    dataset = data.load(split, data_dir=path)
    image, label = next(iter(dataset))
    assert image.dtype == tf.float32 and image.shape == (32, 32, 3)
    assert label.dtype == tf.int64
    np.testing.assert_allclose(image.numpy(), want_images[0] / 255.0, atol=1e-6)


def test_a_folder_holding_the_layout_folder_or_archive_is_accepted(tmp_path):
    path, _ = write_cifar(tmp_path / "a", "python")
    assert len(data.read_local_arrays(os.path.dirname(path), "test")[0]) == 2
    write_cifar(tmp_path / "b", "binary_tar")
    assert len(data.read_local_arrays(str(tmp_path / "b"), "test")[0]) == 2


def _corrupt(path, name, content):
    with open(os.path.join(path, name), "wb") as f:
        f.write(content)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x02}q\x00(U\x04data", "cannot read"),  # truncated pickle
        (b"not a pickle at all", "cannot read"),
        (
            pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
            "shape",
        ),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
            "labels",
        ),
        (pickle.dumps([1, 2, 3]), "wrong content"),
    ],
)
def test_a_bad_python_batch_gives_one_clear_error(tmp_path, content, message):
    path, _ = write_cifar(tmp_path, "python")
    _corrupt(path, "test_batch", content)
    with pytest.raises(data.DataError, match=message) as raised:
        data.read_local_arrays(path, "test")
    assert "test_batch" in str(raised.value)
    assert "expected" in str(raised.value)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_the_unpickler_never_runs_code_from_the_file(tmp_path, monkeypatch):
    path, _ = write_cifar(tmp_path, "python")
    _corrupt(path, "test_batch", pickle.dumps({b"data": _Exploit(), b"labels": []}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataError, match="refusing"):
        data.read_local_arrays(path, "test")
    assert not (tmp_path / "pwned").exists()


def test_truncated_binary_batch(tmp_path):
    path, _ = write_cifar(tmp_path, "binary")
    with open(os.path.join(path, "test_batch.bin"), "r+b") as f:
        f.truncate(3073 + 100)
    with pytest.raises(data.DataError, match="truncated"):
        data.read_local_arrays(path, "test")


def test_missing_file_and_folder(tmp_path):
    path, _ = write_cifar(tmp_path, "python")
    os.remove(os.path.join(path, "data_batch_3"))
    with pytest.raises(data.DataError, match="data_batch_3: missing"):
        data.read_local_arrays(path, "train")
    with pytest.raises(data.DataError, match="--data_dir"):
        data.read_local_arrays(str(tmp_path / "nowhere"), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match="holds no CIFAR-10"):
        data.read_local_arrays(str(empty), "train")


def test_corrupt_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(data.DataError, match="cifar-10-python.tar.gz"):
        data.read_local_arrays(str(path), "test")


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        data.read_local_arrays("/", "validation")


def test_tfds_source_gives_the_same_element_types(monkeypatch):
    # Pretend the download host answers; mock_data makes preparing a no-op.
    monkeypatch.setattr(data, "_reachable", lambda *args: True)
    with tfds.testing.mock_data(num_examples=3):
        dataset = data.load("train")
        elements = list(dataset)
    assert len(elements) == 3
    image, label = elements[0]
    assert image.dtype == tf.float32 and image.shape == (32, 32, 3)
    assert label.dtype == tf.int64
    assert float(tf.reduce_min(image)) >= 0.0 and float(tf.reduce_max(image)) <= 1.0


def test_tfds_source_fails_fast_without_network(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_reachable", lambda *args: False)
    with pytest.raises(data.DataError, match="--data_dir.*CIFAR10_DIR"):
        data.load_tfds("train", tfds_data_dir=str(tmp_path))


def test_reachable_gives_up_within_its_timeout():
    # 192.0.2.0/24 is reserved for documentation: nothing answers there, and
    # a closed sandbox refuses at once; either way the answer is quick.
    assert data._reachable(("192.0.2.1", 9), timeout=0.5) is False


def _images(count=6):
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices(
        rng.uniform(size=(count, 32, 32, 3)).astype(np.float32)
    )


def _noisy(dataset):
    return np.concatenate([noisy.numpy() for noisy, _ in dataset])


def test_evaluation_noise_repeats_and_training_noise_changes():
    evaluation = data.noisy_pairs(
        _images(), sigma=0.1, batch_size=4, seed=3, training=False
    )
    np.testing.assert_array_equal(_noisy(evaluation), _noisy(evaluation))
    # Same seed, new pipeline object: still the same noise (run after run).
    again = data.noisy_pairs(_images(), sigma=0.1, batch_size=4, seed=3, training=False)
    np.testing.assert_array_equal(_noisy(evaluation), _noisy(again))

    # Whatever happens to TF's global seed in between (one process may run
    # several jobs), the evaluation noise stays the same.
    tf.random.set_seed(1234)
    later = data.noisy_pairs(_images(), sigma=0.1, batch_size=4, seed=3, training=False)
    np.testing.assert_array_equal(_noisy(evaluation), _noisy(later))
    other_seed = data.noisy_pairs(
        _images(), sigma=0.1, batch_size=4, seed=4, training=False
    )
    assert not np.allclose(_noisy(evaluation), _noisy(other_seed))

    training = data.noisy_pairs(
        _images(), sigma=0.1, batch_size=6, seed=3, training=True, shuffle_buffer=1
    )
    epoch1, epoch2 = _noisy(training), _noisy(training)
    assert not np.allclose(epoch1, epoch2)


def test_noisy_pairs_are_clipped_and_clean_images_untouched():
    images = np.concatenate([_images(4).batch(4).get_single_element().numpy()])
    pairs = data.noisy_pairs(
        tf.data.Dataset.from_tensor_slices((images, np.arange(4))),
        sigma=0.5,
        batch_size=4,
        seed=0,
        training=False,
    )
    noisy, clean = pairs.get_single_element()
    assert float(tf.reduce_min(noisy)) >= 0.0 and float(tf.reduce_max(noisy)) <= 1.0
    np.testing.assert_array_equal(clean, images)


def test_unit_noise_draws_match_the_evaluation_pipeline():
    evaluation = data.noisy_pairs(
        _images(), sigma=0.2, batch_size=6, seed=5, training=False
    )
    clean, draws = data.with_unit_noise(
        _images(), seed=5, batch_size=6
    ).get_single_element()
    np.testing.assert_allclose(
        _noisy(evaluation), np.clip(clean + 0.2 * draws, 0, 1), atol=1e-6
    )


def test_augmentation_keeps_content_up_to_a_flip_or_rotation():
    image = tf.random.stateless_uniform([32, 32, 3], [1, 1])
    variants = {
        data.dihedral_augment(image, tf.constant([i, 0])).numpy().tobytes()
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
    noisy, clean = data.noisy_pairs(
        images, sigma=0.1, batch_size=8, seed=0, training=False
    ).get_single_element()
    assert float(tf.reduce_mean(noise_lib.psnr(clean, noisy))) == pytest.approx(
        20.0, abs=0.2
    )


def test_crop_flip_keeps_shape_and_varies_per_epoch():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(8, 32, 32, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(8)))
    batches = data.labelled_batches(dataset, batch_size=8, seed=1, training=True)
    (x1, y1), (x2, y2) = next(iter(batches)), next(iter(batches))
    assert x1.shape == (8, 32, 32, 3)
    order1, order2 = np.argsort(y1.numpy()), np.argsort(y2.numpy())
    assert not np.allclose(x1.numpy()[order1], x2.numpy()[order2])
    evaluation = data.labelled_batches(dataset, batch_size=8, seed=1, training=False)
    x, y = next(iter(evaluation))
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, np.arange(8))


def test_cutout_greys_a_square():
    image = tf.zeros([32, 32, 3])
    out = data.crop_flip_augment(image, tf.constant([3, 4]), cutout=8).numpy()
    grey = np.all(out == 0.5, axis=-1)
    assert 0 < grey.sum() <= 64
    rows, cols = np.nonzero(grey)
    assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8
