"""Training runs log the learning rate they used, one line per epoch in logs."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.core import callbacks
from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import schedules
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import UserError
from tests.conftest import tensorboard_events

STEPS_PER_EPOCH = 3  # 12 examples, batch 4


def _fit(run_dir, monkeypatch, terminal, epochs=2):
    monkeypatch.setattr(console, "is_terminal", lambda stream=None: terminal)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    schedule = schedules.warmup_cosine(
        0.1, total_steps=epochs * STEPS_PER_EPOCH, warmup_steps=4
    )
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    x = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32)
    train = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4)
    lines = []
    fit = training.fit_resumable(
        model, train, None, epochs=epochs, run_dir=str(run_dir), log=lines.append
    )
    return fit, lines, schedule


def test_each_epoch_logs_the_learning_rate_its_steps_ended_with(tmp_path, monkeypatch):
    fit, _, schedule = _fit(tmp_path, monkeypatch, terminal=False)
    # The last step of epoch e is step e * 3 - 1; Keras's own value would be
    # the next step's, which is 0 after the last epoch of the cosine.
    expected = [float(schedule(2)), float(schedule(5))]
    assert expected[1] > 0.0 and float(schedule(6)) == 0.0
    np.testing.assert_allclose(fit["history"]["learning_rate"], expected, rtol=1e-6)
    logged = tensorboard_events(tmp_path / "tb" / "train")["epoch_learning_rate"]
    np.testing.assert_allclose([v for _, v in logged], expected, rtol=1e-6)


def test_without_a_terminal_each_epoch_is_one_plain_line(tmp_path, monkeypatch, capfd):
    _, lines, _ = _fit(tmp_path, monkeypatch, terminal=False)
    # Between them, after the first epoch, the minutes the other will take.
    assert "minutes left at this rate (1 epoch)" in lines.pop(1)
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss " in line and "learning_rate " in line for line in lines)
    written = capfd.readouterr()
    assert "\x1b" not in written.out + written.err and "\b" not in written.out


def test_on_a_terminal_keras_draws_its_progress_bar(tmp_path, monkeypatch):
    _, lines, _ = _fit(tmp_path, monkeypatch, terminal=True, epochs=1)
    assert lines == []


def test_learning_rate_used_without_a_schedule_is_the_constant():
    optimizer = keras.optimizers.SGD(0.25)
    assert callbacks.learning_rate_used(optimizer) == pytest.approx(0.25)


def test_a_warm_up_as_long_as_the_run_is_refused_naming_both_flags():
    with pytest.raises(UserError, match=r"--warmup_epochs=2 .* --epochs=2"):
        training.TrainingConfig(epochs=2, warmup_epochs=2)
    training.TrainingConfig(epochs=2, warmup_epochs=1.5)  # shorter: fine


def test_remaining_time_says_the_minutes_left_once_after_the_first_epoch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    lines = []
    x = np.zeros((32, 4), "float32")
    model.fit(
        x,
        x[:, :1],
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[callbacks.RemainingTime(4, lines.append)],
    )
    assert len(lines) == 1
    match = re.fullmatch(
        r"epoch 1 took ([\d.]+) s( \([\d.]+ s of it tracing the step\))?; about "
        r"([\d.]+) minutes left at this rate \(3 epochs\)",
        lines[0],
    )
    assert match
    assert callbacks.remaining_line("epoch 3", 60.0, 1, "epochs", 30.0) == (
        "epoch 3 took 60.0 s; about 0.5 minutes left at this rate (1 epoch)"
    )
