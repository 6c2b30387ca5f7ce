"""The CIFAR-10 sources: local copies in every layout, bad files, TFDS."""

import gzip
import logging
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cifar_denoise_adv.core import data
from cifar_denoise_adv.core.errors import DataError
from cifar_denoise_adv.core.errors import UserError
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
    with pytest.raises(DataError, match=message) as raised:
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
    with pytest.raises(DataError, match="refusing"):
        data.read_local_arrays(path, "test")
    assert not (tmp_path / "pwned").exists()


def test_truncated_binary_batch(tmp_path):
    path, _ = write_cifar(tmp_path, "binary")
    with open(os.path.join(path, "test_batch.bin"), "r+b") as f:
        f.truncate(3073 + 100)
    with pytest.raises(DataError, match="truncated"):
        data.read_local_arrays(path, "test")


def test_missing_file_and_folder(tmp_path):
    path, _ = write_cifar(tmp_path, "python")
    os.remove(os.path.join(path, "data_batch_3"))
    with pytest.raises(DataError, match="data_batch_3: missing"):
        data.read_local_arrays(path, "train")
    with pytest.raises(DataError, match="--data_dir"):
        data.read_local_arrays(str(tmp_path / "nowhere"), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no CIFAR-10"):
        data.read_local_arrays(str(empty), "train")


def test_corrupt_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        data.read_local_arrays(str(path), "test")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"hello, not an archive" * 20, "no tar archive in it, plain or gzip"),
        (gzip.compress(b"hello" * 200), "no tar archive in it, plain or gzip"),
    ],
    ids=["plain", "gzip"],
)
def test_a_file_that_is_not_an_archive_is_one_line(tmp_path, content, problem):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(content)
    with pytest.raises(DataError) as raised:
        data.read_local_arrays(str(path), "test")
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message  # not tarfile's five lines
    assert problem in message and "ReadError" not in message


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
    # Pixels are the uint8 values / 255: in [0, 1] and on the 1/255 grid.
    pixels = image.numpy() * 255.0
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    assert pixels.min() >= 0.0 and pixels.max() <= 255.0


def test_tfds_source_fails_fast_without_network(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_reachable", lambda *args: False)
    with pytest.raises(DataError, match="--data_dir.*CIFAR10_DIR"):
        data.load_tfds("train", tfds_data_dir=str(tmp_path))


def test_an_unprepared_tfds_copy_gives_the_error_alone(monkeypatch, tmp_path, caplog):
    # A variant folder without dataset_info.json (an interrupted download):
    # TFDS warns about it; the error that follows says what to do.
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
    monkeypatch.setattr(data, "_reachable", lambda *args: False)
    with caplog.at_level(logging.INFO), pytest.raises(DataError, match="--data_dir"):
        data.load_tfds("train", tfds_data_dir=str(tmp_path))
    assert not [r for r in caplog.records if "dataset_info" in r.getMessage()]


def test_a_data_error_is_a_user_error():
    # The apps print a UserError as one line; a bad data source is one.
    assert issubclass(DataError, UserError)


def test_reachable_gives_up_within_its_timeout():
    # 192.0.2.0/24 is reserved for documentation: nothing answers there, and
    # a closed sandbox refuses at once; either way the answer is quick.
    assert data._reachable(("192.0.2.1", 9), timeout=0.5) is False


def test_an_oversized_archive_member_is_refused_before_it_is_read(
    tmp_path, monkeypatch
):
    path, _ = write_cifar(tmp_path, "python_tar", per_file=2)
    size = os.path.getsize(path)
    monkeypatch.setattr(data, "MAX_BATCH_BYTES", 100)  # every member is larger

    def never(*args, **kwargs):
        raise AssertionError("the member was read")

    monkeypatch.setattr(data.tarfile.TarFile, "extractfile", never)
    with pytest.raises(DataError, match=r"data_batch_1: \d[\d,]* bytes, more than any"):
        data.read_local_arrays(path, "train")
    assert os.path.getsize(path) == size


def test_an_oversized_batch_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path, _ = write_cifar(tmp_path, "python", per_file=2)
    monkeypatch.setattr(data, "MAX_BATCH_BYTES", 100)
    with pytest.raises(DataError, match="test_batch: .* refused without reading it"):
        data.read_local_arrays(path, "test")


def test_the_size_limit_admits_the_official_batch_files():
    # data_batch_1..5 of the official python archive are 31,035,704 bytes.
    assert data.MAX_BATCH_BYTES >= 2 * 31_035_704
