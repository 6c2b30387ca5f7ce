"""CIFAR-10 sources (TFDS, local official files) and tf.data pipelines.

Every source returns, for split "train" or "test", a `tf.data.Dataset` of
`(image, label)`: image float32 [32, 32, 3] in [0, 1] (HWC), label int64 in
[0, 9]. The pipelines (`core.pipelines`, `denoising.pipelines`) take it from
there, so both sources get identical treatment.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import socket
import tarfile
import threading
import zlib

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import console
from cifar_denoise_adv.core.errors import DataError

try:  # NumPy >= 2 keeps the array helpers in numpy._core.
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
ENV_DATA_DIR = "CIFAR10_DIR"

_PIXELS = 32 * 32 * 3
_PY_DIR = "cifar-10-batches-py"
_BIN_DIR = "cifar-10-batches-bin"
_PY_ARCHIVE = "cifar-10-python.tar.gz"
_BIN_ARCHIVE = "cifar-10-binary.tar.gz"
_PY_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_BIN_FILES = {
    split: tuple(f"{name}.bin" for name in names) for split, names in _PY_FILES.items()
}
# The largest batch file a copy may have: the official python batches are
# 31,035,704 bytes; a copy re-saved by Python 3 with pickle protocol 2 keeps
# the pixel bytes as latin-1 text, up to twice as long. A member or file
# above this is refused before it is read, so a small archive that unpacks
# to gigabytes cannot exhaust memory.
MAX_BATCH_BYTES = 64 * 2**20
# What a damaged .tar.gz raises, depending on where the damage is.
_ARCHIVE_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError)

# What TFDS would fetch; probed first so that a machine without network fails
# in seconds instead of retrying for minutes.
_TFDS_URL_HOST = ("www.cs.toronto.edu", 443)

# The official pickles hold a dict of bytes, lists and one uint8 array; these
# are the only globals such a file may name. Anything else is refused, so
# reading a batch file never runs code from it. `_codecs.encode` (str to
# bytes, nothing else) is how Python 3 writes bytes into protocol-2 pickles,
# so copies re-saved with Python 3 need it too.
_SAFE_GLOBALS = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _source_hint() -> str:
    return (
        "Point --data_dir (or the environment variable "
        f"{ENV_DATA_DIR}) at a local copy of CIFAR-10: the folder "
        f"{_PY_DIR}/ or {_BIN_DIR}/, or the archive {_PY_ARCHIVE} or "
        f"{_BIN_ARCHIVE}."
    )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


# --------------------------------------------------------------------------
# Local files: parsing.


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}"
            ) from None


def _parse_python_batch(content: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parses one official python-layout batch (a pickled dict)."""
    expected = (
        f"expected a CIFAR-10 python batch: a pickled dict with b'data' "
        f"(uint8, N x {_PIXELS}) and b'labels' (N ints in 0..9)"
    )
    try:
        batch = _RestrictedUnpickler(io.BytesIO(content), encoding="bytes").load()
    except Exception as error:  # truncated, corrupt or unsafe pickles alike
        raise DataError(f"{where}: cannot read it ({error}); {expected}.") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: wrong content; {expected}.")
    images = batch[b"data"]
    if not isinstance(images, np.ndarray) or images.ndim != 2:
        raise DataError(f"{where}: b'data' is not a 2-D array; {expected}.")
    if images.shape[1] != _PIXELS or images.dtype != np.uint8:
        raise DataError(
            f"{where}: b'data' has shape {images.shape} and dtype {images.dtype}; "
            f"{expected}."
        )
    labels = np.asarray(batch[b"labels"])
    _check_labels(labels, len(images), where, expected)
    # Rows are channel-major (1024 red, 1024 green, 1024 blue).
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _parse_binary_batch(content: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parses one official binary-layout batch: records of label + 3072 bytes."""
    record = 1 + _PIXELS
    if not content or len(content) % record:
        raise DataError(
            f"{where}: {len(content)} bytes is not a whole number of "
            f"{record}-byte records (1 label byte + {_PIXELS} pixel bytes); "
            "the file is truncated or not a CIFAR-10 binary batch."
        )
    rows = np.frombuffer(content, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, 0].astype(np.int64)
    _check_labels(labels, len(rows), where, "expected labels 0..9")
    images = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _check_labels(labels: np.ndarray, count: int, where: str, expected: str) -> None:
    if labels.shape != (count,):
        raise DataError(
            f"{where}: {labels.shape[0] if labels.ndim else 0} labels for "
            f"{count} images; {expected}."
        )
    if count and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{where}: labels outside 0..9; {expected}.")


# --------------------------------------------------------------------------
# Local files: finding them.


def _check_size(size: int, where: str) -> None:
    if size > MAX_BATCH_BYTES:
        raise DataError(
            f"{where}: {size:,} bytes, more than any CIFAR-10 batch file "
            f"(at most {MAX_BATCH_BYTES:,}); refused without reading it."
        )


def _read_file(path: str) -> bytes:
    try:
        _check_size(os.path.getsize(path), path)
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read it ({error.strerror}).") from None


def _read_folder(folder: str, split: str, binary: bool):
    names = (_BIN_FILES if binary else _PY_FILES)[split]
    parse = _parse_binary_batch if binary else _parse_python_batch
    parts = []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            layout = "binary" if binary else "python"
            raise DataError(
                f"{path}: missing. The official {layout} layout of CIFAR-10 has "
                f"{', '.join(names)} for the {split} split. {_source_hint()}"
            )
        parts.append(parse(_read_file(path), path))
    return parts


def _archive_problem(error: Exception) -> str:
    """Why tarfile cannot open a file, in one line (not one per compression)."""
    lines = str(error).splitlines() or [type(error).__name__]
    if len(lines) == 1:
        return lines[0]
    return "no tar archive in it, plain or gzip, bzip2 or xz compressed"


def _read_archive(path: str, split: str):
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below
    except _ARCHIVE_ERRORS as error:
        raise DataError(
            f"{path}: not a readable tar archive ({_archive_problem(error)}); "
            f"expected {_PY_ARCHIVE} or {_BIN_ARCHIVE} as published."
        ) from None
    with archive:
        try:
            members = {
                os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()
            }
        except _ARCHIVE_ERRORS as error:
            raise DataError(
                f"{path}: truncated or corrupt archive ({error})."
            ) from None
        binary = _BIN_FILES[split][0] in members
        names = (_BIN_FILES if binary else _PY_FILES)[split]
        parse = _parse_binary_batch if binary else _parse_python_batch
        parts = []
        for name in names:
            if name not in members:
                raise DataError(
                    f"{path}: no member {name}; expected the official CIFAR-10 "
                    f"python or binary archive, which holds {', '.join(names)}."
                )
            where = f"{path}:{members[name].name}"
            _check_size(members[name].size, where)  # the header's size, unread
            try:
                content = archive.extractfile(members[name]).read()
            except _ARCHIVE_ERRORS as error:
                raise DataError(f"{where}: cannot extract it ({error}).") from None
            parts.append(parse(content, where))
    return parts


def read_local_arrays(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of a local CIFAR-10 copy into memory.

    Args:
      data_dir: the folder `cifar-10-batches-py/` or `cifar-10-batches-bin/`,
        a folder holding one of them or an official archive, or the archive
        `cifar-10-python.tar.gz` / `cifar-10-binary.tar.gz` itself.
      split: "train" or "test".

    Returns:
      images uint8 [N, 32, 32, 3] (HWC) and labels int64 [N].

    Raises:
      DataError: naming the file and what was expected, if anything is
        missing, truncated, corrupt or of the wrong shape.
    """
    _check_split(split)
    path = os.path.expanduser(data_dir)
    if os.path.isfile(path):
        parts = _read_archive(path, split)
    elif os.path.isdir(path):
        parts = _read_local_folder(path, split)
    else:
        raise DataError(
            f"--data_dir={data_dir}: no such file or folder. {_source_hint()}"
        )
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def _read_local_folder(path: str, split: str):
    if os.path.exists(os.path.join(path, _PY_FILES["train"][0])) or os.path.exists(
        os.path.join(path, _PY_FILES["test"][0])
    ):
        return _read_folder(path, split, binary=False)
    if os.path.exists(os.path.join(path, _BIN_FILES["test"][0])) or os.path.exists(
        os.path.join(path, _BIN_FILES["train"][0])
    ):
        return _read_folder(path, split, binary=True)
    for sub, binary in ((_PY_DIR, False), (_BIN_DIR, True)):
        if os.path.isdir(os.path.join(path, sub)):
            return _read_folder(os.path.join(path, sub), split, binary)
    for archive in (_PY_ARCHIVE, _BIN_ARCHIVE):
        if os.path.isfile(os.path.join(path, archive)):
            return _read_archive(os.path.join(path, archive), split)
    raise DataError(
        f"--data_dir={path}: holds no CIFAR-10 batch files (data_batch_1, "
        f"test_batch, or their .bin versions). {_source_hint()}"
    )


def _from_arrays(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return dataset.map(
        lambda image, label: (tf.cast(image, tf.float32) / 255.0, label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def load_local(data_dir: str, split: str) -> tf.data.Dataset:
    """A split of a local CIFAR-10 copy as (float32 image in [0,1], int64 label)."""
    return _from_arrays(*read_local_arrays(data_dir, split))


# --------------------------------------------------------------------------
# TFDS.


def _reachable(host_port: tuple[str, int], timeout: float) -> bool:
    """Whether a TCP connection opens within `timeout` s (DNS included)."""
    result = []

    def probe():
        try:
            socket.create_connection(host_port, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo has no timeout of its own, hence the thread.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def load_tfds(
    split: str, *, tfds_data_dir: str | None = None, probe_timeout: float = 10.0
) -> tf.data.Dataset:
    """A split of TFDS `cifar10` as (float32 image in [0,1], int64 label).

    Uses the prepared copy when there is one. Otherwise it downloads, but
    first checks within `probe_timeout` seconds that the download host
    answers, because a plain `tfds.load` retries for minutes on a machine
    without network.

    Raises:
      DataError: when the data is not prepared and cannot be downloaded.
    """
    import tensorflow_datasets as tfds  # slow import; only this source needs it

    _check_split(split)
    with console.absl_warnings_hidden():  # the error below says more
        builder = tfds.builder("cifar10", data_dir=tfds_data_dir)
        prepared = builder.is_prepared()
    if not prepared:
        if not _reachable(_TFDS_URL_HOST, probe_timeout):
            raise DataError(
                "TFDS cifar10 is not prepared in "
                f"{builder.data_dir} and its download host "
                f"{_TFDS_URL_HOST[0]} cannot be reached (no network?). "
                + _source_hint()
            )
        builder.download_and_prepare()
    dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    return dataset.map(
        lambda image, label: (
            tf.cast(image, tf.float32) / 255.0,
            tf.cast(label, tf.int64),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def load(split: str, data_dir: str | None = None) -> tf.data.Dataset:
    """The chosen source: the local copy at `data_dir` if given, else TFDS."""
    if data_dir:
        return load_local(data_dir, split)
    return load_tfds(split)


def load_arrays(
    split: str, data_dir: str | None = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A split as in-memory arrays: images float32 [N,32,32,3] in [0,1], labels."""
    if data_dir:
        images, labels = read_local_arrays(data_dir, split)
        images, labels = images[:limit], labels[:limit]
        return images.astype(np.float32) / 255.0, labels
    dataset = load_tfds(split)
    if limit:
        dataset = dataset.take(limit)
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(1024).as_numpy_iterator():
        images.append(image_batch)
        labels.append(label_batch)
    return np.concatenate(images), np.concatenate(labels)


# --------------------------------------------------------------------------
