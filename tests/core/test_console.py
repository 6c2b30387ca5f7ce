"""What a run prints: no INFO lines from a SavedModel export, plain epoch lines."""

import io
import logging
import sys

import keras
import pytest
import tensorflow as tf
from absl import logging as absl_logging

from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import export


def test_a_saved_model_export_logs_no_info_lines(tmp_path, caplog):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(3, 1)])
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)  # as under an absl app
    try:
        with caplog.at_level(logging.INFO):
            export.export_saved_model(model, str(tmp_path / "saved_model"))
        # Outside the export, INFO lines are shown as before.
        assert absl_logging.get_verbosity() == absl_logging.INFO
    finally:
        absl_logging.set_verbosity(verbosity)
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()
    info = [r.getMessage() for r in caplog.records if r.levelno < logging.WARNING]
    assert info == []


def test_the_epoch_line_is_one_plain_line():
    line = console.epoch_line(3, 28, {"loss": 0.0012345, "val_psnr": 27.1}, 38.24)
    assert line == "epoch 3/28: loss 0.001234, val_psnr 27.1, 38.2 s"


def test_a_file_is_not_a_terminal():
    assert not console.is_terminal(io.StringIO())


def test_an_op_error_is_one_line_without_the_ops_internals():
    try:
        tf.io.decode_image(b"\x89PNG\r\n\x1a\nnot really")
    except tf.errors.OpError as error:
        message = console.op_error_message(error)
    assert message == "Invalid PNG. Failed to initialize decoder."
    assert console.op_error_message(ValueError("two\nlines")) == "two"


@pytest.fixture
def tensorflow_logger():
    """The TensorFlow logger's set-up, restored after the test."""
    logger = logging.getLogger("tensorflow")
    saved = logger.propagate, list(logger.filters), list(logger.handlers)
    yield logger
    logger.propagate = saved[0]
    logger.filters[:] = saved[1]
    logger.handlers[:] = saved[2]


def test_an_app_prints_each_tensorflow_warning_once(tensorflow_logger, capsys):
    # As under an absl app: TF's own handler, and absl's on the root logger.
    own = logging.StreamHandler(sys.stderr)
    tensorflow_logger.handlers[:] = [own]
    root = logging.getLogger()
    extra = logging.StreamHandler(sys.stderr)
    root.addHandler(extra)
    try:
        console.quiet_python_logs()
        tensorflow_logger.warning("a warning from TensorFlow")
    finally:
        root.removeHandler(extra)
    assert capsys.readouterr().err.count("a warning from TensorFlow") == 1


def test_keras_per_model_tracing_is_no_retracing_warning(tensorflow_logger, caplog):
    # TF counts tracings per code object, and every Keras model's predict
    # function has the same code: the first predict of a fifth new model reads
    # as frequent retracing (TF warns at most 5 times per code object and
    # process, so the message is made here rather than provoked).
    keras_alarm = (
        "5 out of the last 9 calls to <function TensorFlowTrainer."
        "make_predict_function.<locals>.one_step_on_data_distributed at 0x7f> "
        "triggered tf.function retracing. Tracing is expensive ..."
    )
    fit_alarm = keras_alarm.replace(
        "make_predict_function.<locals>.one_step_on_data_distributed",
        "_make_function.<locals>.multi_step_on_iterator",
    )
    console.quiet_python_logs()
    tensorflow_logger.propagate = True  # for caplog
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        tensorflow_logger.warning(keras_alarm)
        tensorflow_logger.warning(fit_alarm)
        # Retracing of any other function is still reported.
        square = tf.function(lambda x: x * x)
        for size in range(1, 8):
            square(tf.zeros([size]))
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "TensorFlowTrainer" in m]
    assert [m for m in messages if "retracing" in m and "lambda" in m]
