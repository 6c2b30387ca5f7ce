"""Predictions, fooling rate, targeted success and misclassification rates."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import as_labels
from cifar_denoise_adv.adversarial.attacks._checks import as_perturbation
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks.contract import check_model
from cifar_denoise_adv.core import arrays
from cifar_denoise_adv.core.errors import UserError


@per_model
def _predict(model_fn: ModelFn, images: tf.Tensor) -> tf.Tensor:
    return tf.argmax(model_fn(images), axis=-1)


@per_model
def predict_shifted(model_fn: ModelFn, images: tf.Tensor, shift: tf.Tensor):
    """Argmax of the logits on clip(images + shift, 0, 1), one compiled call."""
    return tf.argmax(model_fn(tf.clip_by_value(images + shift, 0.0, 1.0)), axis=-1)


def predict_labels(model_fn: ModelFn, images, batch_size: int = 256) -> tf.Tensor:
    """Argmax of the logits, in batches.

    Args:
      model_fn: images -> logits [B, K] (probabilities give the same argmax
        and are accepted).
      images: float32 [N, H, W, C] in [0, 1].
      batch_size: images per model call.

    Returns:
      int64 [N] predicted classes.

    Raises:
      UserError (a ValueError): one line naming the bad argument, or the model
        when its output is not one row of scores per image.
    """
    images = as_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    model_fn, _ = check_model(model_fn, images, probabilities_ok=True)
    return predict_unchecked(model_fn, images, batch_size)


def predict_unchecked(model_fn: ModelFn, images: tf.Tensor, batch_size: int):
    """`predict_labels` on arguments already checked."""
    return tf.concat(
        [
            _predict(model_fn, images[start : start + batch_size])
            for start in range(0, images.shape[0], batch_size)
        ],
        axis=0,
    )


def _predict_with_shift(model_fn, images, shift, batch_size) -> tf.Tensor:
    return tf.concat(
        [
            predict_shifted(model_fn, images[start : start + batch_size], shift)
            for start in range(0, images.shape[0], batch_size)
        ],
        axis=0,
    )


def fooling_rate(
    model_fn: ModelFn, images, v, batch_size: int = 256, clean_labels=None
) -> float:
    """Fraction of images whose prediction changes when `v` is added.

    The fooling rate of Moosavi-Dezfooli et al. (CVPR 2017): it compares the
    prediction on clip(x + v, 0, 1) with the prediction on x, not with the
    true label.

    Args:
      model_fn: images -> logits [B, K] (probabilities give the same argmax
        and are accepted).
      images: float32 [N, H, W, C] in [0, 1].
      v: float32 [H, W, C] (one perturbation for all images) or [N, H, W, C],
        [0, 1] pixel units (|v| <= 1).
      batch_size: images per model call.
      clean_labels: optional int [N] predictions on `images`, if already known.

    Returns:
      float in [0, 1].

    Raises:
      UserError (a ValueError): one line naming the bad argument (v in 0-255
        units among them), or the model when its output is not one row of
        scores per image.
    """
    images = as_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    v = as_perturbation(v, images)
    model_fn, _ = check_model(model_fn, images, probabilities_ok=True)
    if clean_labels is not None:
        clean_labels = as_labels(clean_labels, images.shape[0], "clean_labels")
    return fooling_rate_unchecked(model_fn, images, v, batch_size, clean_labels)


def fooling_rate_unchecked(model_fn, images, v, batch_size, clean_labels=None):
    """`fooling_rate` on arguments already checked."""
    if clean_labels is None:
        clean_labels = predict_unchecked(model_fn, images, batch_size)
    clean_labels = tf.cast(clean_labels, tf.int64)
    if v.shape == images.shape:
        perturbed = predict_unchecked(
            model_fn, tf.clip_by_value(images + v, 0.0, 1.0), batch_size
        )
    else:
        perturbed = _predict_with_shift(model_fn, images, v, batch_size)
    return misclassification_rate(perturbed, clean_labels)


def _classes(values, name: str) -> np.ndarray:
    """Integer classes flattened to [N] (`core.arrays`: integers, one line)."""
    tensor = arrays.as_tensor(values, name)
    if tensor.shape.num_elements() == 0:
        return np.zeros(0, np.int64)
    if not tensor.dtype.is_integer:
        raise UserError(f"{name} must be integers, got {tensor.dtype.name}.")
    return tensor.numpy().reshape(-1)


def _rate(first, second, names: tuple[str, str], equal: bool) -> float:
    first, second = _classes(first, names[0]), _classes(second, names[1])
    if first.shape != second.shape:
        raise UserError(
            f"{names[0]} {first.shape} and {names[1]} {second.shape} differ in shape."
        )
    if first.size == 0:
        raise UserError(f"{names[0]} is empty.")
    return float(np.mean((first == second) if equal else (first != second)))


def targeted_success_rate(predictions, target_labels) -> float:
    """Fraction of predictions equal to their target class.

    Args:
      predictions: int [N] predicted classes on adversarial images.
      target_labels: int [N] targets.

    Returns:
      float in [0, 1].
    """
    return _rate(predictions, target_labels, ("predictions", "target_labels"), True)


def misclassification_rate(predictions, labels) -> float:
    """Fraction of predictions different from `labels`.

    With true labels this is the error rate; with clean predictions as
    `labels` it is the fooling rate.

    Args:
      predictions: int [N] predicted classes.
      labels: int [N] reference classes.

    Returns:
      float in [0, 1].
    """
    return _rate(predictions, labels, ("predictions", "labels"), False)
