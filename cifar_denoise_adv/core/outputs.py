"""The run folder: atomic writes, the run's records, library versions.

Every file is first written under a temporary name in its own folder and then
moved into place with `os.replace`, so an interrupted run never leaves a
half-written file behind, and an earlier complete file survives until the new
one is whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import tempfile
import time
import zipfile
from collections.abc import Iterator

import numpy as np

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core.errors import UserError

FLAGS_FILE = "flags.cfg"
METRICS_FILE = "metrics.json"


def make_run_dir(run_dir: str, flag: str = "run_dir") -> str:
    """Creates `run_dir` (and parents) if needed; returns its absolute path.

    Raises:
      UserError: naming `--flag`, when the folder cannot be made (below a
        file, under /proc or /sys, no permission) or a file cannot be
        written in it.
    """
    if not run_dir:
        raise UserError(f"--{flag} is empty: give the folder for this run's outputs.")
    path = os.path.abspath(os.path.expanduser(run_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--{flag}={run_dir} exists and is not a folder.")
    try:
        os.makedirs(path, exist_ok=True)
        # Writing is what a run needs: /proc/self exists and still refuses it.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UserError(
            f"--{flag}={run_dir}: cannot make or write this folder "
            f"({error.strerror or error}); expected a writable folder."
        ) from None
    return path


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it onto `path` on success.

    `suffix` keeps the extension for writers that choose the format by it
    (matplotlib, numpy).
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.tmp.", suffix=suffix, dir=folder
    )
    os.close(handle)
    try:
        yield temporary
        # mkstemp makes the file private (0600); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


def normalized(value) -> object:
    """JSON round trip (tuples become lists, keys sorted): records compare equal."""
    return json.loads(json.dumps(_jsonable(value), sort_keys=True))


def file_sha256(path: str) -> str | None:
    """sha256 of a file's bytes, or None if it does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_json(path: str, data: dict) -> None:
    """Writes `data` as indented JSON, atomically; numpy values are converted."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    write_text(path, text)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)


_JSON_KINDS = {list: "an array", str: "a string", bool: "true or false"}


def read_json(path: str, expected: str = "a JSON object") -> dict:
    """Reads a JSON file holding an object (a dict).

    Args:
      path: the file.
      expected: what it should be, for the error (e.g. "the metrics.json of
        a denoise run").

    Raises:
      UserError: one line naming the file and its fault: unreadable, not
        UTF-8 JSON text, or JSON that is not an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except OSError as error:
        raise UserError(
            f"{path}: cannot read it ({error.strerror or error}); expected {expected}."
        ) from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise UserError(
            f"{path}: not valid JSON ({error}); expected {expected}."
        ) from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), "a number" if value is not None else "null")
        raise UserError(
            f"{path}: holds {kind}, not a JSON object; expected {expected}."
        )
    return value


def save_figure(figure, path: str, dpi: int = 110) -> None:
    """Saves a matplotlib figure atomically and closes it."""
    import matplotlib.pyplot as plt

    extension = os.path.splitext(path)[1]
    try:
        with atomic_path(path, suffix=extension) as temporary:
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)


def save_npz(path: str, **arrays) -> None:
    """Saves arrays to an uncompressed .npz file atomically."""
    with atomic_path(path, suffix=".npz") as temporary:
        np.savez(temporary, **arrays)


_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry; an empty zip


def load_npz(path: str, expected: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file (as `save_npz` writes), read in full.

    Pickled Python objects are never loaded (`allow_pickle=False`).

    Args:
      path: the file.
      expected: what it should be, for the error (e.g. "the
        psnr_per_image.npz a denoise run writes").

    Returns:
      {name: array}.

    Raises:
      UserError: one line naming the file and its fault: unreadable, not an
        .npz at all (no zip archive: text, random bytes, a lone .npy),
        truncated or corrupt, or holding pickled objects.
    """

    def wrong(fault: str) -> UserError:
        return UserError(f"{path}: {fault}; expected {expected}.")

    try:
        with open(path, "rb") as f:
            start = f.read(6)
    except OSError as error:
        raise wrong(f"cannot read it ({error.strerror or error})") from None
    if start[:4] not in _ZIP_STARTS:
        kind = {b"": "empty", b"\x93NUMPY": "a single .npy array"}.get(
            start, "not a zip archive of .npy arrays"
        )
        raise wrong(f"not a valid .npz file ({kind})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        detail = str(error).splitlines()[0][:120] if str(error) else repr(error)
        fault = f"not a valid .npz file (truncated or corrupt: {detail})"
        if "allow_pickle" in detail:  # an object array inside
            fault = "it holds pickled Python objects, which are never loaded"
        raise wrong(fault) from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a member that is no .npy
            raise wrong(f"not a valid .npz file ({name} is not a .npy array)")
    return arrays


def write_flagfile(config, app: str, folder: str | None = None) -> str:
    """Writes run_dir/flags.cfg from the config used; replaying it gives it back.

    `folder` replaces run_dir for configs that have none (denoise_image's,
    the study's).
    """
    lines = [
        f"# app: {app}. The flags of this run; replay with --flagfile=<this file>."
    ]
    lines += config_lib.flag_lines(config)
    path = os.path.join(folder or config.run_dir, FLAGS_FILE)
    write_text(path, "\n".join(lines) + "\n")
    return path


def data_source(data_dir: str | None) -> str:
    """How a run's data was read, for its record."""
    return f"local {data_dir}" if data_dir else "tfds cifar10"


def write_record(config, job: str, results: dict, start: float) -> dict:
    """Writes run_dir/metrics.json and flags.cfg: the end of a run that succeeded.

    metrics.json holds the job, config, data, results, time and machine,
    and "ignored_settings": one line per setting the config ignores though
    it was set (`config_lib.ignored_notes`, which `runs.claim` logs);
    flags.cfg replays the config (`write_flagfile`). Neither is written
    before the run has its results, so a run that fails leaves an earlier
    run's pair as it was.

    Args:
      config: the job's config (a dataclass with run_dir and data_dir).
      job: the job's name.
      results: the job's own figures, in the order they should appear.
      start: `time.time()` when the job started.

    Returns:
      The record written.
    """
    ignored = config_lib.ignored_notes(config)
    record = {
        "job": job,
        "config": dataclasses.asdict(config),
        "data_source": data_source(config.data_dir),
        **results,
        "ignored_settings": ignored,
        "seconds": time.time() - start,
        "versions": library_versions(),
        "machine": machine_description(),
    }
    write_flagfile(config, job)
    write_json(os.path.join(config.run_dir, METRICS_FILE), record)
    return record


def library_versions() -> dict:
    """Versions of the libraries a result depends on, for metrics.json."""
    import keras
    import matplotlib
    import tensorflow as tf

    versions = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
    }
    with contextlib.suppress(Exception):
        from importlib import metadata

        versions["absl-py"] = metadata.version("absl-py")
        versions["tensorflow-datasets"] = metadata.version("tensorflow-datasets")
        versions["cifar_denoise_adv"] = metadata.version("cifar_denoise_adv")
    return versions


def machine_description() -> dict:
    """The machine a run was timed on: its CPU model and units, and its GPUs."""
    from cifar_denoise_adv.core import precision  # imports TensorFlow

    cpu = precision.cpu()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu.model,
        "cpu_vector_isa": cpu.vector_isa,
        "cpu_bfloat16_units": cpu.bfloat16_units,
        "cpu_count": os.cpu_count(),
        "gpus": [
            {"name": name, "compute_capability": capability}
            for name, capability in precision.gpus()
        ],
    }
