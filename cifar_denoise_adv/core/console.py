"""What a run prints: TensorFlow's start-up noise filtered, one line per epoch.

TensorFlow writes about ten C++ lines when it is imported (oneDNN notices,
"Could not find cuda drivers", a cuInit error on a machine without a GPU),
some of them before its own logging reads TF_CPP_MIN_LOG_LEVEL, so that
variable alone cannot hide them. `import_tensorflow` imports TensorFlow and
initialises its devices with the process's stderr (file descriptor 2)
diverted, then writes back every line that is not start-up noise. It does
nothing when the user set TF_CPP_MIN_LOG_LEVEL (their choice stands);
otherwise, if TensorFlow is not imported yet, it also sets the variable to 1,
so that TensorFlow's later C++ INFO lines stay hidden and its warnings and
errors do not. (Imported after `import keras` or `import tensorflow`, it can
only hide the cuInit line: the import's own lines are out by then.)

`quiet_python_logs` (every app calls it) prints each Python log line of
TensorFlow once and drops Keras' retracing false alarm; `cpp_warnings_hidden`
and `op_error_message` keep a TensorFlow op that fails on a user's file to
one line.

This module imports neither TensorFlow nor Keras at its top: the package
imports it first, to filter TensorFlow's import. Library code never prints:
`training.EpochLines` hands `epoch_line`s to the job's `log`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# C++ INFO and WARNING lines in absl's format ("I0000 00:00:17.1 123 port.cc:153]
# ..."), absl's notice that precedes them, and the continuation of
# cpu_feature_guard's notice.
_STARTUP_NOISE = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions:)"
)
# cuInit fails on every machine without an NVIDIA driver: noise there only.
_NO_DRIVER = re.compile(r"^E\d{4} .*\] failed call to cuInit")


def has_nvidia_driver() -> bool:
    """Whether an NVIDIA kernel driver is loaded (Linux)."""
    return os.path.exists("/proc/driver/nvidia/version")


def is_startup_noise(line: str, nvidia_driver: bool = False) -> bool:
    """Whether a line TensorFlow writes while starting is noise to hide.

    INFO and WARNING lines of the C++ start-up are; errors are not, except
    the failed cuInit call on a machine with no NVIDIA driver.
    """
    if _STARTUP_NOISE.match(line):
        return True
    return not nvidia_driver and bool(_NO_DRIVER.match(line))


@contextlib.contextmanager
def _filtered_stderr(keep: Callable[[str], bool]) -> Iterator[None]:
    """Diverts file descriptor 2 to a file; writes back the lines `keep` accepts."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if keep(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow() -> None:
    """Imports TensorFlow and lists its devices without the start-up noise.

    See the module docstring: a no-op if TF_CPP_MIN_LOG_LEVEL is set. When
    TensorFlow is already imported (`import keras` came first), the lines of
    its import are already out, but the cuInit line comes when the devices
    are first listed, so they are listed here, filtered, all the same.
    """
    if LOG_LEVEL_ENV in os.environ:
        return
    if "tensorflow" not in sys.modules:
        os.environ[LOG_LEVEL_ENV] = "1"
    driver = has_nvidia_driver()
    with _filtered_stderr(lambda line: not is_startup_noise(line, driver)):
        import tensorflow as tf

        # cuInit runs when the devices are first listed; listing them does
        # not fix the logical devices, so tf.config can still change them.
        tf.config.list_physical_devices()


# A C++ warning line of a TensorFlow op (absl's format), e.g. png_io.cc's or
# local_rendezvous.cc's when an image cannot be decoded.
_CPP_WARNING = re.compile(r"^W\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\]")


@contextlib.contextmanager
def cpp_warnings_hidden() -> Iterator[None]:
    """TensorFlow's C++ warning lines hidden for a while (errors stay).

    An op that fails on a user's file (a PNG that is not one) logs C++
    warnings before it raises; the exception is what the app reports, in
    one line (`op_error_message`).
    """
    if os.environ.get(LOG_LEVEL_ENV, "1") not in ("0", "1"):
        yield  # the user hides C++ warnings already
        return
    with _filtered_stderr(lambda line: not _CPP_WARNING.match(line)):
        yield


# What TensorFlow wraps an op's message in: "{{function_node ...}} message
# [Op:DecodeImage] name: ".
_OP_PREFIX = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:\w+\].*$")


def op_error_message(error: BaseException) -> str:
    """The first line of a TensorFlow op's error, without the op's internals."""
    message = getattr(error, "message", None) or str(error)
    lines = message.strip().splitlines() or [type(error).__name__]
    return _OP_SUFFIX.sub("", _OP_PREFIX.sub("", lines[0])) or type(error).__name__


@contextlib.contextmanager
def tensorflow_info_hidden() -> Iterator[None]:
    """TensorFlow's Python INFO lines (SavedModel export) hidden for a while.

    TensorFlow logs through its own logger and, in newer modules, absl's; it
    also saves and restores absl's verbosity while exporting, so the
    verbosity is what is raised here, not a logger's level.
    """
    from absl import logging as absl_logging

    tf_logger = logging.getLogger("tensorflow")
    previous = absl_logging.get_verbosity(), tf_logger.level
    # absl: higher is more verbose (INFO 0, WARNING -1).
    absl_logging.set_verbosity(min(absl_logging.WARNING, previous[0]))
    tf_logger.setLevel(max(logging.WARNING, previous[1]))
    try:
        yield
    finally:
        absl_logging.set_verbosity(previous[0])
        tf_logger.setLevel(previous[1])


@contextlib.contextmanager
def absl_warnings_hidden() -> Iterator[None]:
    """Python warnings logged through absl (TFDS's) hidden for a while.

    For a library's warning that the caller answers better: TFDS warns that
    an unprepared dataset folder has no dataset_info.json, then the data
    source says in one line that the data is not prepared and what to do.
    """
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(min(absl_logging.ERROR, previous))
    try:
        yield
    finally:
        absl_logging.set_verbosity(previous)


class _DistributionInfo(logging.Filter):
    """Drops tf.distribute's INFO records; lets everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace(os.sep, "/")
        return record.levelno > logging.INFO or "/python/distribute/" not in path


_DISTRIBUTION_INFO = _DistributionInfo()


class _PerModelRetracing(logging.Filter):
    """Drops TF's retracing warning about Keras' per-model step functions.

    TF counts tracings per Python code object, and every Keras model's
    predict (train, test) function has the same code, so the first predict
    of the fifth model in a process (a study step, defend's pipelines, the
    export checks) reads as "5 out of the last 9 calls ... triggered
    retracing": each model traced once (and once more for a last, smaller
    batch), as it must. Retracing of any other function is still reported.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "triggered tf.function retracing" in message
            and "<function TensorFlowTrainer." in message
        )


_PER_MODEL_RETRACING = _PerModelRetracing()


def quiet_python_logs() -> None:
    """Each TensorFlow Python log line printed once, Keras' false alarm dropped.

    TensorFlow gives its logger a handler of its own when nothing had
    configured logging yet, and an absl app then adds absl's handler to the
    root logger, so every TensorFlow warning came out twice ("WARNING:
    tensorflow:..." and "W1205 ... file.py:157] ..."). Here the root's copy
    is left out. Called by every app before its job.
    """
    tf_logger = logging.getLogger("tensorflow")
    if tf_logger.handlers and logging.getLogger().handlers:
        tf_logger.propagate = False
    if _PER_MODEL_RETRACING not in tf_logger.filters:
        tf_logger.addFilter(_PER_MODEL_RETRACING)


def hide_distribution_info() -> None:
    """Hides tf.distribute's INFO lines from here on (its warnings stay).

    A strategy over several devices or processes logs its devices when it is
    made and a line for every collective it traces (each twice: TensorFlow's
    handler and absl's), dozens per run that say nothing to a user.
    """
    tf_logger = logging.getLogger("tensorflow")
    if _DISTRIBUTION_INFO not in tf_logger.filters:
        tf_logger.addFilter(_DISTRIBUTION_INFO)


def is_terminal(stream=None) -> bool:
    """Whether output goes to a terminal (progress bars) or a file or pipe."""
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _number(value) -> str:
    return f"{float(value):.4g}"


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float) -> str:
    """'epoch 3/28: loss 0.00123, psnr 27.1, val_loss ..., 38.2 s'."""
    values = ", ".join(f"{name} {_number(value)}" for name, value in logs.items())
    return f"epoch {epoch}/{epochs}: {values}, {seconds:.1f} s"
