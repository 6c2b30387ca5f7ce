"""The model contract of the attacks: [0, 1] images in, one row of logits out.

Every attack entry point calls `check_model` once on the model it is given:

- a Keras model must take images shaped like the ones passed, and must not
  start with `Rescaling(1/255)` (it would expect 0-255 pixels);
- the output must be one row of K >= 2 finite scores per image;
- the scores must be logits. A Keras model that ends in a softmax (a
  `Softmax` layer, `Activation("softmax")`, or `activation="softmax"` on its
  last layer) is attacked through its logits, the softmax's input: the
  same model without the softmax, with the same predictions. A
  `UserWarning` says so (the apps log it instead, see
  `classifier.load_classifier`). Any other model whose outputs are
  probabilities (every row in [0, 1], summing to 1) is refused with one
  line, since its logits cannot be recovered.

Why not attack probabilities: the losses and DeepFool's boundary distances
are defined on logits. On a confident model the softmax saturates and its
gradients all but vanish, so DeepFool's step |f| / ||grad f|| is wrong.
Measured on a linear CIFAR-sized model (4 images): with top-two logit gaps
of 17-30, DeepFool on the probabilities "succeeds" with perturbations of L2
about 32 instead of the 0.43-0.76 it finds on the logits; with gaps of
84-149 the gradients underflow to zero and it fails on every image, where
the logits give 4 of 4 in one step.

`predict_labels` and `fooling_rate` need only the argmax, which a softmax
does not change: they check the shapes but accept probabilities.

Mixed precision (a classifier trained with --precision=mixed_bfloat16 or
mixed_float16 keeps that policy in its model.keras): every gradient is
still taken in float32 on the input. The attacks watch float32 images; the
model's first 16-bit layer casts them, and back-propagation runs through
the layers in their compute dtype (bfloat16: about 3 significant digits)
and back through that cast, so the tape returns a float32 gradient of the
input's shape. The losses and DeepFool's distances are computed on float32
logits: our models end in float32 layers, and `check_model` casts the
scores of any other model that returns 16-bit ones (`float32_scores`).
Perturbations, projections and clipping are float32 throughout. float16
(unlike bfloat16) has a narrow range: the cross-entropy's gradient on a
confident model's logits (about exp(-gap)) underflows to 0 in its backward
pass, so each image's loss is scaled by a power of two first
(`_gradients`).

A model without a gradient from its input to its output is found by the
same call of the model that checks its outputs (`has_input_gradient`),
and the gradient attacks warn once (`warn_without_gradient`). The
gradient carries bfloat16's rounding: on an untrained resnet9 classifier
its cosine with the float32 model's gradient was 0.90-0.997 per image, its
signs (what FGSM and PGD follow) agreeing on 86-98% of the pixels.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.core.errors import UserError

PROBE_IMAGES = 8  # images the output check runs the model on
SUM_TOLERANCE = 1e-3  # rows summing to 1 within this are probabilities

# Keras model -> its logits model, or None when it has no final softmax.
_LOGITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _output_layer(model: keras.Model):
    """The layer that makes the model's single output, or None."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    for layer in reversed(model.layers):
        try:
            if layer.output is outputs[0]:
                return layer
        except (AttributeError, ValueError):  # a layer called more than once
            continue
    return None


def _softmax_kind(layer) -> str | None:
    """'layer' (Softmax, Activation), 'activation' (Dense(..., 'softmax')), None."""
    if isinstance(layer, layers.Softmax):
        return "layer"
    if layer.get_config().get("activation") == "softmax":
        return "layer" if isinstance(layer, layers.Activation) else "activation"
    return None


def softmax_logits(model: keras.Model) -> keras.Model | None:
    """The model without its final softmax, or None if it does not end in one.

    A `Softmax` or `Activation("softmax")` last layer is dropped; a last
    layer with `activation="softmax"` (e.g. Dense) is replaced by a copy of
    itself with a linear activation and the same weights.

    Returns:
      A keras.Model from the same inputs to the logits (named
      `<name>_logits`), or None.
    """
    layer = _output_layer(model)
    kind = None if layer is None else _softmax_kind(layer)
    if kind is None:
        return None
    if kind == "layer":
        logits = layer.input
    else:
        config = {
            **layer.get_config(),
            "activation": "linear",
            "name": f"{layer.name}_logits",
        }
        linear = type(layer).from_config(config)
        logits = linear(layer.input)
        linear.set_weights(layer.get_weights())
    # One input as a tensor, not a list: Keras warns when called otherwise.
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, logits, name=f"{model.name}_logits")


def logits_model(model, warn: bool = True):
    """`model`, or its logits model when it is a Keras model ending in softmax.

    The logits model is built once per model and kept while the model lives.
    With `warn`, a `UserWarning` says the softmax was left out.
    """
    if not isinstance(model, keras.Model):
        return model
    if model in _LOGITS:
        stripped = _LOGITS[model]
    else:
        stripped = softmax_logits(model)
        _LOGITS[model] = stripped
        if stripped is not None and warn:
            warnings.warn(
                f"{model.name} ends in a softmax: attacking its logits (the "
                "softmax's input), which give the same predictions.",
                UserWarning,
                stacklevel=3,
            )
    return model if stripped is None else stripped


def rescales_from_0_255(model: keras.Model) -> bool:
    """Whether the model's first layer is Rescaling(1/255) (0-255 inputs)."""
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.Rescaling):
            scale = np.asarray(layer.get_config()["scale"], np.float64)
            return bool(np.allclose(scale * 255.0, 1.0, rtol=1e-3))
        return False
    return False


def _check_keras_input(model: keras.Model, item_shape: tuple, name: str) -> None:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return
    expected = tuple(inputs[0].shape[1:])
    fits = len(expected) == len(item_shape) and all(
        e is None or e == g for e, g in zip(expected, item_shape, strict=False)
    )
    if not fits:
        raise UserError(
            f"{name} takes inputs of shape {list(expected)} per image; the "
            f"images are {list(item_shape)}."
        )
    if rescales_from_0_255(model):
        raise UserError(
            f"{name} starts with Rescaling(1/255), so it expects 0-255 pixels; "
            "the attacks give it images in [0, 1]: remove that layer."
        )


def output_scores(
    model_fn: ModelFn, images: tf.Tensor, name: str
) -> tuple[np.ndarray, tf.DType]:
    """The model's scores on the first few images, checked: [b, K], finite.

    Returns:
      (float64 scores [b, K], the dtype the model returned them in).

    Raises:
      UserError: one line naming `name`, when the output is not one row of
        K >= 2 finite scores per image.
    """
    sample = tf.identity(images[:PROBE_IMAGES])
    # The same call tells whether the model has an input gradient (one draw
    # of a random model, not two; `has_input_gradient`).
    with tf.GradientTape() as tape:
        tape.watch(sample)
        scores = tf.convert_to_tensor(model_fn(sample))
        probe = _gradient_probe(scores)
    _remember_gradient(model_fn, _probe_gradient(tape, probe, sample))
    count = int(sample.shape[0])
    shape = scores.shape.as_list()
    if len(shape) != 2 or shape[0] != count or shape[1] < 2:
        raise UserError(
            f"{name} must return one row of K >= 2 scores per image ([B, K]); it "
            f"returned shape {shape} for {count} images."
        )
    if not scores.dtype.is_floating:
        raise UserError(f"{name} must return float scores, got {scores.dtype.name}.")
    values = scores.numpy().astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise UserError(f"{name} returned NaN or infinite scores on [0, 1] images.")
    return values, scores.dtype


_FLOAT32 = weakref.WeakKeyDictionary()  # model -> its float32_scores wrapper


def float32_scores(model_fn: ModelFn) -> ModelFn:
    """`model_fn` with its scores cast to float32 (for 16-bit outputs).

    Made once per model and kept while the model lives (the attacks compile
    once per model function); it holds the model weakly.
    """
    try:
        return _FLOAT32[model_fn]
    except (KeyError, TypeError):
        pass
    try:
        if inspect.ismethod(model_fn):  # model.__call__: alive with its model
            reference = weakref.WeakMethod(model_fn)
        else:
            reference = weakref.ref(model_fn)
    except TypeError:  # not weakly referable: held strongly, not kept

        def reference():
            return model_fn

    def scores(images):
        return tf.cast(reference()(images), tf.float32)

    with contextlib.suppress(TypeError):  # not weakly referable: not kept
        _FLOAT32[model_fn] = scores
    return scores


def are_probabilities(scores: np.ndarray) -> bool:
    """Every row in [0, 1] and summing to 1 (within SUM_TOLERANCE)."""
    return bool(
        scores.min() >= 0.0
        and scores.max() <= 1.0
        and np.all(np.abs(scores.sum(axis=1) - 1.0) <= SUM_TOLERANCE)
    )


def check_model(
    model_fn: ModelFn,
    images: tf.Tensor,
    *,
    name: str = "model_fn",
    probabilities_ok: bool = False,
) -> tuple[ModelFn, int]:
    """Checks the model contract; returns the model to attack and K.

    Args:
      model_fn: the model given to an attack: images -> logits [B, K].
      images: float32 [B, ...] in [0, 1], already checked (`as_images`).
      name: how messages call the model.
      probabilities_ok: accept probabilities (only the argmax is used).

    Returns:
      (the model to use, K): the logits model of a Keras model ending in a
      softmax (with a UserWarning), else `model_fn`; K scores per image.

    Raises:
      UserError: one line naming `name`: wrong input shape, 0-255 input
        rescaling, output not [B, K] finite, or probabilities that cannot be
        turned back into logits.
    """
    if isinstance(model_fn, keras.Model):
        _check_keras_input(model_fn, tuple(images.shape[1:]), name)
        if not probabilities_ok:
            model_fn = logits_model(model_fn)
    scores, dtype = output_scores(model_fn, images, name)
    if dtype != tf.float32:
        found = _HAS_GRADIENT.get(model_fn) if _weakly_keyed(model_fn) else None
        model_fn = float32_scores(model_fn)
        if found is not None:
            _remember(model_fn, found)
    if not probabilities_ok and are_probabilities(scores):
        raise UserError(
            f"{name} returns probabilities (each row of its output sums to 1, as "
            "after a softmax); the attacks need logits: pass the model without "
            "its final softmax."
        )
    return model_fn, int(scores.shape[1])


# model -> whether its scores have a gradient w.r.t. its input (probed once).
_HAS_GRADIENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weakly_keyed(model_fn) -> bool:
    try:
        weakref.ref(model_fn)
        hash(model_fn)
    except TypeError:
        return False
    return True


def _remember(model_fn, found: bool) -> None:
    with contextlib.suppress(TypeError):  # not weakly referable: not kept
        _HAS_GRADIENT[model_fn] = found


def _gradient_probe(scores: tf.Tensor) -> tf.Tensor | None:
    """A fixed random mix of the scores (a plain sum could cancel), or None."""
    if scores.shape.rank != 2 or not scores.dtype.is_floating:
        return None
    mix = np.random.default_rng(0).uniform(0.5, 1.5, size=scores.shape[-1])
    return tf.reduce_sum(tf.cast(scores, tf.float32) * tf.constant(mix, tf.float32))


def _probe_gradient(tape, probe, sample):
    """The gradient of the probe, or None (no probe, or an op without one)."""
    if probe is None:
        return None
    try:
        return tape.gradient(probe, sample)
    except LookupError:  # "No gradient defined for operation ..."
        return None


def _remember_gradient(model_fn, gradient) -> bool:
    found = gradient is not None and bool(np.any(gradient.numpy() != 0))
    _remember(model_fn, found)
    return found


def has_input_gradient(model_fn: ModelFn, images: tf.Tensor) -> bool:
    """Whether the model's scores change to first order with its input.

    Found with one backward pass of a fixed random mix of the scores on the
    first few images (by `check_model`'s call of the model, so a random
    model is not drawn again): False when the tape finds no path from the
    input to the output (`tf.stop_gradient`, `tf.round`, a cast to
    integers) or the gradient is exactly zero everywhere (a
    piecewise-constant model). Kept per model while it lives.
    """
    with contextlib.suppress(KeyError, TypeError):
        return _HAS_GRADIENT[model_fn]
    sample = tf.identity(images[:PROBE_IMAGES])
    with tf.GradientTape() as tape:
        tape.watch(sample)
        probe = _gradient_probe(tf.convert_to_tensor(model_fn(sample)))
    return _remember_gradient(model_fn, _probe_gradient(tape, probe, sample))


def warn_without_gradient(
    model_fn: ModelFn,
    images: tf.Tensor,
    attack: str,
    *,
    name: str = "model_fn",
    stacklevel: int = 3,
) -> bool:
    """One UserWarning when a gradient attack is given a model without gradient.

    The attack still runs, and makes no progress: its gradient is zero (never
    None), so FGSM returns the images, PGD its random start, DeepFool and the
    universal searches no perturbation. That is what a gradient-masking
    defense looks like; the gradient-free `square_attack` is the check.

    Returns:
      Whether the model has an input gradient (`has_input_gradient`).
    """
    if has_input_gradient(model_fn, images):
        return True
    warnings.warn(
        f"{name} has no gradient from its input to its output (a "
        "tf.stop_gradient, rounding or cast inside it?): the gradient is zero, "
        f"so {attack} makes no progress; square_attack needs no gradient.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return False
