"""Applying a trained denoiser to image files of any size.

`run(config)` is the `denoise_image` app's job.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import export
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models  # noqa: F401 - registers the layers

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class DenoiseImageConfig(config_lib.Config):
    """The model and the files (the `denoise_image` app's flags)."""

    model: str = setting("", "Run folder, .keras file or SavedModel.", path=True)
    input: str = setting("", "A PNG/JPEG file, or a folder of them.", path=True)
    output: str = setting("", "Output PNG file, or folder.", path=True)

    def validate(self):
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise UserError(f"--{name} is required.")


def run(config: DenoiseImageConfig, log=lambda message: None) -> dict:
    """Denoises the input file(s); logs one line per image.

    Returns:
      {"denoised": [files], "failed": {file: reason}}.
    """
    denoise = load_denoiser(config.model)
    results = denoise_files(denoise, config.input, config.output)
    failed = {source: error for source, error in results if error}
    for source, error in results:
        log(f"skipped {error}" if error else f"denoised {source}")
    done = len(results) - len(failed)
    log(f"{done} of {len(results)} images denoised into {config.output}")
    return {"denoised": [s for s, e in results if not e], "failed": failed}


def load_denoiser(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A denoising function from a run folder, a .keras file or a SavedModel.

    A run folder is read from its model.keras, or its saved_model/ when the
    Keras file is missing.

    Returns:
      A function mapping float32 [B, H, W, 3] in [0, 1] to the denoised
      images, clipped to [0, 1].
    """
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")):
        keras_file = os.path.join(path, training.KERAS_FILE)
        saved_model = os.path.join(path, training.SAVED_MODEL_DIR)
        if os.path.isfile(keras_file):
            path = keras_file
        elif os.path.isdir(saved_model):
            path = saved_model
        else:
            raise UserError(
                f"--model={path}: holds neither {training.KERAS_FILE} nor "
                f"{training.SAVED_MODEL_DIR}/; expected a run folder of the "
                "denoise app, a .keras file or a SavedModel folder."
            )
    if path.endswith(".keras") and os.path.isfile(path):
        model = keras.models.load_model(path)
        return lambda images: np.clip(model.predict(images, verbose=0), 0.0, 1.0)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        # Keep the loaded object alive: its functions reference its variables.
        loaded = tf.saved_model.load(path)
        return lambda images: np.clip(export.serve(loaded, images), 0.0, 1.0)
    raise UserError(
        f"--model={path}: not found, or not a run folder, .keras file or SavedModel."
    )


def read_rgb_image(path: str) -> np.ndarray:
    """Reads a PNG or JPEG as float32 [H, W, 3] in [0, 1]."""
    try:
        content = tf.io.read_file(path)
        image = tf.io.decode_image(content, channels=0, expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise UserError(
            f"{path}: cannot read it as a PNG or JPEG image ({message})."
        ) from None
    channels = int(image.shape[-1])
    if channels != 3:
        kind = {1: "grayscale", 2: "grayscale with alpha", 4: "RGBA"}.get(channels)
        raise UserError(
            f"{path}: a {kind or f'{channels}-channel'} image; expected RGB "
            "(3 channels)."
        )
    if image.dtype == tf.uint16:
        return (tf.cast(image, tf.float32) / 65535.0).numpy()
    return (tf.cast(image, tf.float32) / 255.0).numpy()


def write_png(path: str, image: np.ndarray) -> None:
    """Writes float [H, W, 3] in [0, 1] as an 8-bit PNG, atomically."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    encoded = tf.io.encode_png(pixels).numpy()
    with (
        outputs.atomic_path(path, suffix=".png") as temporary,
        open(temporary, "wb") as f,
    ):
        f.write(encoded)


def denoise_files(
    denoise: Callable[[np.ndarray], np.ndarray], input_path: str, output_path: str
) -> list[tuple[str, str | None]]:
    """Denoises one image, or every PNG/JPEG in a folder.

    Args:
      denoise: from `load_denoiser`.
      input_path: an image file or a folder of them.
      output_path: the output file (for one image; an existing folder gets a
        file of the same name) or folder (for a folder; created).

    Returns:
      [(input file, None if written else the error message)]; one bad image
      in a folder does not stop the others.
    """
    if os.path.isdir(input_path):
        names = sorted(
            n for n in os.listdir(input_path) if n.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not names:
            raise UserError(
                f"--input={input_path}: no {'/'.join(IMAGE_EXTENSIONS)} files in it."
            )
        os.makedirs(output_path, exist_ok=True)
        jobs = [
            (
                os.path.join(input_path, n),
                os.path.join(output_path, os.path.splitext(n)[0] + ".png"),
            )
            for n in names
        ]
    elif os.path.isfile(input_path):
        target = output_path
        if os.path.isdir(output_path):
            base = os.path.splitext(os.path.basename(input_path))[0] + ".png"
            target = os.path.join(output_path, base)
        jobs = [(input_path, target)]
    else:
        raise UserError(f"--input={input_path}: no such file or folder.")
    results = []
    for source, target in jobs:
        try:
            image = read_rgb_image(source)
            write_png(target, denoise(image[None])[0])
            results.append((source, None))
        except UserError as error:
            results.append((source, str(error)))
    return results
