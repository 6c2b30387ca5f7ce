"""The defended model: classifier(denoiser(x)), optionally with noise first.

`build_defended` joins the two runs' Keras models into one functional model
(the same layers and weights, not copies), so attacks differentiate through
both with one `tf.GradientTape`, and the model exports as a SavedModel like
every model of the project.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.core import export as export_lib

IMAGE_SHAPE = (32, 32, 3)


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class PixelNoise(layers.Layer):
    """y = clip(x + N(0, sigma^2), 0, 1) at every call, in training or not.

    Unlike keras.layers.GaussianNoise (training only), the noise is part of
    the deployed model: the randomised defense of denoised smoothing
    (Salman, Sun, Yang, Kapoor and Kolter, "Denoised smoothing: a provable
    defense for pretrained classifiers", NeurIPS 2020), with the clipped
    noise the denoiser was trained on. Each call draws fresh noise from a
    seeded Keras SeedGenerator, so a run is reproducible and a SavedModel
    exported from the model continues the same sequence of draws.
    """

    def __init__(self, sigma: float, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}.")
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, images):
        noise = keras.random.normal(
            tf.shape(images), stddev=self.sigma, seed=self.seed_generator
        )
        return tf.clip_by_value(images + noise, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class ClipPixels(layers.Layer):
    """Clips to [0, 1]: the denoiser's output as a stored image would be."""

    def call(self, images):
        return tf.clip_by_value(images, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def build_defended(
    denoiser: keras.Model,
    classifier: keras.Model,
    sigma: float = 0.0,
    seed: int = 0,
    name: str | None = None,
) -> keras.Model:
    """defended(x) = classifier(clip(denoiser(noise(x)), 0, 1)).

    Args:
      denoiser: [B, H, W, 3] -> [B, H, W, 3] in [0, 1] (a `denoise` run's).
      classifier: [B, 32, 32, 3] in [0, 1] -> logits [B, K] (a `classify`
        run's).
      sigma: > 0 adds clip(x + N(0, sigma^2), 0, 1) before the denoiser
        (`PixelNoise`, fresh at every call); 0 gives the deterministic
        pipeline.
      seed: seed of the noise draws.
      name: model name (default "denoised_classifier" or
        "randomised_denoised_classifier").

    Returns:
      Uncompiled keras.Model, float32 [B, 32, 32, 3] in [0, 1] -> logits
      [B, K]. Its layers are the given models themselves: their weights are
      shared, not copied.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}.")
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = PixelNoise(sigma, seed, name="noise")(images) if sigma > 0 else images
    # The denoiser's raw output can leave [0, 1]; denoise_image clips it too.
    x = ClipPixels(name="clip")(denoiser(x))
    logits = classifier(x)
    default = "randomised_denoised_classifier" if sigma > 0 else "denoised_classifier"
    return keras.Model(images, logits, name=name or default)


def noise_layer(model: keras.Model) -> PixelNoise | None:
    """The model's PixelNoise layer (a randomised pipeline), or None."""
    return next((x for x in model.layers if isinstance(x, PixelNoise)), None)


def export(
    model: keras.Model, keras_path: str, saved_model: str, sample: np.ndarray
) -> dict:
    """Saves the .keras file and the SavedModel folder, and checks the export.

    The SavedModel is reloaded and compared with the Keras model on
    `sample`. For a randomised pipeline both start from the same noise
    state, so they draw the same noise and must agree too.

    Returns:
      {"keras": keras_path, "saved_model": saved_model,
       "max_abs_difference": float}.

    Raises:
      RuntimeError: when the SavedModel differs by more than
        `core.export.EXPORT_TOLERANCE` (the export is wrong).
    """
    export_lib.save_keras(model, keras_path)
    noise = noise_layer(model)
    state = None if noise is None else noise.seed_generator.state.numpy()
    export_lib.export_saved_model(model, saved_model, ("images", "logits"))
    if noise is not None:
        noise.seed_generator.state.assign(state)
    difference = export_lib.saved_model_difference(model, saved_model, sample)
    if difference > export_lib.EXPORT_TOLERANCE:
        raise RuntimeError(
            f"the SavedModel in {saved_model} differs from the Keras model by "
            f"{difference:g} on the same inputs."
        )
    return {
        "keras": keras_path,
        "saved_model": saved_model,
        "max_abs_difference": difference,
    }
