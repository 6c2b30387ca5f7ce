"""CIFAR-10 sources (TFDS, local official files) and tf.data pipelines.

Every source returns, for split "train" or "test", a `tf.data.Dataset` of
`(image, label)`: image float32 [32, 32, 3] in [0, 1] (HWC), label int64 in
[0, 9]. One pipeline function (`noisy_pairs`) takes it from there, so both
sources get identical treatment.
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

from cifar_denoise_adv import noise_lib

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


class DataError(ValueError):
    """A data source is missing, unreachable or not in the expected format."""


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


def _read_file(path: str) -> bytes:
    try:
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


def _read_archive(path: str, split: str):
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below
    except _ARCHIVE_ERRORS as error:
        raise DataError(
            f"{path}: not a readable tar archive ({error}); expected "
            f"{_PY_ARCHIVE} or {_BIN_ARCHIVE} as published."
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
    builder = tfds.builder("cifar10", data_dir=tfds_data_dir)
    if not builder.is_prepared():
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
# Pipelines.


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
        noisy = noise_lib.add_gaussian_noise(image, sigma, noise_seed, clip=clip)
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
            noise_lib.unit_noise(tf.shape(image), noise_seed),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return pairs.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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
    cutout: int = 0,
    shuffle_buffer: int = 50_000,
) -> tf.data.Dataset:
    """Batches of (image, label) for classification; augmentation on the fly.

    Args:
      dataset: (float32 image [32, 32, 3] in [0, 1], int label) elements.
      batch_size: images per batch.
      seed: fixes the shuffle and the augmentation draws (new every epoch).
      training: shuffle and (with `augment`) crop/flip; else in order.
      augment: random crop with 4-px padding and horizontal flip.
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
                    crop_flip_augment(pair[0], aug_seed, cutout=cutout),
                    pair[1],
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
