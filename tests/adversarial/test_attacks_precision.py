"""Attacks on mixed-precision models: float32 gradients on the float32 input."""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import precision

SHAPE = (32, 32, 3)


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(count, *SHAPE)).astype(np.float32)


def _pair(build):
    """(float32 model, the same weights under mixed_bfloat16)."""
    keras.utils.set_random_seed(0)
    full = build()
    with precision.precision_scope("mixed_bfloat16"):
        half = build()
    half.set_weights(full.get_weights())
    return full, half


def test_the_input_gradient_of_a_bfloat16_model_is_float32_and_close():
    full, half = _pair(lambda: classifier.build_classifier(width=4))
    assert half.layers[2].compute_dtype == "bfloat16"
    images, labels = _images(4), np.array([0, 1, 2, 3])
    reference = attacks.input_gradient(full, images, labels)
    gradient = attacks.input_gradient(half, images, labels)
    assert gradient.dtype == tf.float32 and gradient.shape == images.shape
    # The bfloat16 backward pass keeps about 3 significant digits per layer:
    # measured cosines with the float32 gradient 0.90-0.997 (untrained
    # resnet9, widths 4 and 16), signs agreeing on 86-98% of the pixels.
    cosines = [
        np.sum(got * want) / np.linalg.norm(got) / np.linalg.norm(want)
        for got, want in zip(gradient, reference, strict=True)
    ]
    assert min(cosines) > 0.85 and np.median(cosines) > 0.95, cosines
    adversarial = attacks.pgd(
        half, images, labels, epsilon=8 / 255, step_size=2 / 255, num_steps=2, seed=0
    )
    assert adversarial.dtype == tf.float32
    assert np.abs(adversarial - images).max() <= 8 / 255 + 1e-6


def _bfloat16_logits():
    """A model whose logits come out in bfloat16 (no float32 output layer)."""
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            layers.Conv2D(4, 3, strides=4),
            layers.Flatten(),
            layers.Dense(10, name="logits"),
        ]
    )


def test_16_bit_scores_are_cast_to_float32_for_every_attack():
    full, half = _pair(_bfloat16_logits)
    images, labels = _images(4), np.array([0, 1, 2, 3])
    assert half(images).dtype == tf.bfloat16
    gradient = attacks.input_gradient(half, images, labels)
    assert gradient.dtype == tf.float32
    reference = attacks.input_gradient(full, images, labels)
    np.testing.assert_allclose(gradient, reference, rtol=0.05, atol=1e-3)
    # DeepFool's distances mix logits with float32 gradient norms.
    result = attacks.deepfool(half, images, max_iter=3)
    assert result.perturbation.dtype == tf.float32
    full_result = attacks.deepfool(full, images, max_iter=3)
    np.testing.assert_array_equal(result.success, full_result.success)
    # The cast model is made once per model: one tf.function, no retracing.
    first = attacks.fgsm(half, images, labels, epsilon=2 / 255)
    again = attacks.fgsm(half, images, labels, epsilon=2 / 255)
    np.testing.assert_array_equal(first, again)
