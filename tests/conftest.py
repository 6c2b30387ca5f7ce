"""Test set-up: absl flags marked parsed, and tiny CIFAR-10 copies on disk."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io  # noqa: E402
import pickle  # noqa: E402
import tarfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

# pytest never parses absl flags; absltest helpers and FlagHolder.value need it.
flags.FLAGS.mark_as_parsed()


def pytest_collection_modifyitems(config, items):
    """Drop tf.test.TestCase's inherited `test_session`, which only skips.

    It is a TF 1 helper named like a test; collected, it shows up as one
    "Not a test." skip per TestCase class and hides real skips.
    """
    keep = [item for item in items if item.name != "test_session"]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


def fake_batch(count, seed):
    """Random uint8 images [N, 32, 32, 3] and labels [N]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count).astype(np.int64)
    return images, labels


def python_batch_bytes(images, labels):
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {
        b"batch_label": b"fake",
        b"labels": [int(label) for label in labels],
        b"data": rows,
        b"filenames": [b"x.png"] * len(images),
    }
    return pickle.dumps(batch, protocol=2)


def binary_batch_bytes(images, labels):
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1).tobytes()


def fake_cifar_files(per_file=2, seed=0):
    """{name: (images, labels)} for every official batch file."""
    return {
        name: fake_batch(per_file, seed + i)
        for i, name in enumerate(TRAIN_FILES + TEST_FILES)
    }


def write_cifar(root, layout, per_file=2, seed=0):
    """Writes a tiny CIFAR-10 copy; returns (path for --data_dir, arrays).

    layout: "python" or "binary" (a folder), "python_tar" or "binary_tar".
    """
    arrays = fake_cifar_files(per_file, seed)
    binary = layout.startswith("binary")
    folder = "cifar-10-batches-bin" if binary else "cifar-10-batches-py"
    members = {}
    for name, (images, labels) in arrays.items():
        if binary:
            members[f"{name}.bin"] = binary_batch_bytes(images, labels)
        else:
            members[name] = python_batch_bytes(images, labels)
    root = str(root)
    os.makedirs(root, exist_ok=True)
    if layout.endswith("_tar"):
        path = os.path.join(
            root, "cifar-10-binary.tar.gz" if binary else "cifar-10-python.tar.gz"
        )
        with tarfile.open(path, "w:gz") as archive:
            for name, content in members.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        return path, arrays
    path = os.path.join(root, folder)
    os.makedirs(path, exist_ok=True)
    for name, content in members.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(content)
    return path, arrays


@pytest.fixture
def tiny_cifar(tmp_path):
    """A python-layout CIFAR-10 copy with 4 images per batch file (20 train)."""
    path, _ = write_cifar(tmp_path / "data", "python", per_file=4)
    return path


def tensorboard_events(folder):
    """{tag: [(step, value)]} of the TensorBoard event files under `folder`.

    Scalars come as floats, images as the number of images logged; other
    summaries (text, graphs) are left out.
    """
    import tensorflow as tf

    found = {}
    for root, _, files in os.walk(folder):
        for name in sorted(n for n in files if "tfevents" in n):
            records = tf.data.TFRecordDataset(os.path.join(root, name))
            for record in records.as_numpy_iterator():
                event = tf.compat.v1.Event.FromString(record)
                for value in event.summary.value:
                    array = tf.make_ndarray(value.tensor)
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin == "images":  # [width, height, png, png, ...]
                        item = len(array) - 2
                    elif plugin == "scalars" or array.dtype.kind == "f":
                        item = float(array)
                    else:
                        continue
                    found.setdefault(value.tag, []).append((event.step, item))
    return found


def folder_snapshot(folder):
    """{path below `folder`: file bytes, or None for a folder}, of everything.

    Two equal snapshots: nothing was added, removed or rewritten.
    """
    found = {}
    for parent, folders, files in os.walk(folder):
        for name in folders:
            found[os.path.relpath(os.path.join(parent, name), folder)] = None
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found
