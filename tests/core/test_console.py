"""What a run prints: no INFO lines from a SavedModel export, plain epoch lines."""

import io
import logging

import keras
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
