"""Loading a `.keras` file a user names, with one line for each way it fails.

`keras.models.load_model` reports a truncated or corrupt file as "File not
found" and a model holding Python code (a Lambda layer), which its safe mode
refuses, as a long traceback. `load` checks the file first and turns each
failure into a `UserError` naming the flag and the file.
"""

from __future__ import annotations

import os
import zipfile

import keras

from cifar_denoise_adv.core.errors import UserError

_MAX_DETAIL = 160  # characters of a library's message quoted in ours


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def load(path: str, flag: str, *, compile: bool = True) -> keras.Model:  # noqa: A002
    """A Keras model from a `.keras` file, in Keras safe mode.

    Args:
      path: the .keras file.
      flag: the flag that named it (for the message), e.g. "model".
      compile: also restore the optimizer, loss and metrics.

    Returns:
      The loaded model.

    Raises:
      UserError: naming `--flag=path`, when the file is missing, is not a
        whole zip archive (truncated or corrupt), holds Python code that safe
        mode refuses to run (it is then not loaded), or is not a Keras model.
    """
    where = f"--{flag}={path}"
    if not os.path.isfile(path):
        raise UserError(f"{where}: no such file; expected a .keras model file.")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member, checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise UserError(
            f"{where}: not a whole .keras file (truncated or corrupt: "
            f"{_first_line(error)}); expected a model saved by Keras 3."
        ) from None
    if damaged is not None:
        raise UserError(
            f"{where}: its member {damaged} is corrupt; expected a model saved "
            "by Keras 3."
        )
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # what a foreign file raises varies widely
        if "safe_mode" in str(error):
            raise UserError(
                f"{where}: contains Python code (such as a Lambda layer), which "
                "Keras safe mode does not run, so it was not loaded; expected a "
                "model of this project's apps."
            ) from None
        raise UserError(
            f"{where}: cannot load it as a Keras model ({_first_line(error)})."
        ) from None
