"""A trained model's files: the atomic `.keras` save and the SavedModel export.

The SavedModel's `serve` function (also its `serving_default` signature)
takes one named float32 input and returns {name: output}, e.g. `noisy` ->
`denoised` for a denoiser and `images` -> `logits` for the classifier; the
export is checked against the Keras model (`training.finish_training`).
"""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import outputs

# A SavedModel that differs from its Keras model by more than this fails the run.
EXPORT_TOLERANCE = 1e-4


def save_keras(model: keras.Model, path: str) -> None:
    """model.save to a .keras file, atomically."""
    with outputs.atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def export_saved_model(
    model: keras.Model, path: str, names: tuple[str, str] = ("inputs", "outputs")
) -> None:
    """The model as a TF SavedModel folder, swapped into place whole.

    Its `serve` function (also the `serving_default` signature) takes the
    input named `names[0]` (the model's input shape, float32) and returns
    {names[1]: output}, e.g. `noisy` -> `denoised`; TensorFlow's INFO lines
    about the export are not shown.
    """
    input_name, output_name = names
    temporary = f"{path}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    with console.tensorflow_info_hidden():
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda inputs: {output_name: model(inputs, training=False)},
            input_signature=[
                tf.TensorSpec(model.inputs[0].shape, tf.float32, name=input_name)
            ],
        )
        archive.write_out(temporary, verbose=False)
    previous = f"{path}.old"
    if os.path.exists(path):
        os.replace(path, previous)
    os.replace(temporary, path)
    shutil.rmtree(previous, ignore_errors=True)


def serve(loaded, images: np.ndarray) -> np.ndarray:
    """A loaded SavedModel's `serve` on float32 images: its one output.

    Exports name their output ({"denoised": ...}); earlier ones returned the
    tensor itself: both work.
    """
    outputs_ = loaded.serve(tf.constant(images, tf.float32))
    if isinstance(outputs_, dict):
        (outputs_,) = outputs_.values()
    return outputs_.numpy()


def saved_model_difference(model: keras.Model, path: str, sample: np.ndarray) -> float:
    """Max |Keras model - reloaded SavedModel| on `sample` (should be ~0)."""
    reloaded = tf.saved_model.load(path)
    expected = model.predict(sample, verbose=0)
    actual = serve(reloaded, sample)
    return float(np.max(np.abs(expected - actual)))
