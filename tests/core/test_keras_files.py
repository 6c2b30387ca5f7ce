import pathlib

import keras
import numpy as np
import pytest

from cifar_denoise_adv.core import keras_files
from cifar_denoise_adv.core.errors import UserError


def _save(path, with_lambda=False):
    inputs = keras.Input((4,))
    if with_lambda:
        outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    else:
        outputs = keras.layers.Dense(2)(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_a_whole_file_loads(tmp_path):
    path = _save(str(tmp_path / "ok.keras"))
    model = keras_files.load(path, "model")
    assert model.predict(np.zeros((1, 4)), verbose=0).shape == (1, 2)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^--model=.*nope.keras: no such file"):
        keras_files.load(str(tmp_path / "nope.keras"), "model")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_file_is_one_line_not_file_not_found(tmp_path, keep):
    whole = (tmp_path / "ok.keras").as_posix()
    content = pathlib.Path(_save(whole)).read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(UserError) as error:
        keras_files.load(str(path), "classifier")
    message = str(error.value)
    assert message.startswith(f"--classifier={path}: not a whole .keras file")
    assert "\n" not in message and "File not found" not in message


def test_a_corrupt_member_is_one_line(tmp_path):
    path = tmp_path / "bad.keras"
    content = bytearray(pathlib.Path(_save(str(tmp_path / "ok.keras"))).read_bytes())
    middle = len(content) // 3
    content[middle : middle + 64] = b"\xab" * 64  # inside a member's data
    path.write_bytes(bytes(content))
    with pytest.raises(UserError, match=r"^--model=.*bad.keras: "):
        keras_files.load(str(path), "model")


def test_a_model_with_code_is_refused_and_not_loaded(tmp_path):
    path = _save(str(tmp_path / "lambda.keras"), with_lambda=True)
    with pytest.raises(UserError) as error:
        keras_files.load(path, "model")
    message = str(error.value)
    assert "contains Python code" in message and "was not loaded" in message
    assert "\n" not in message
