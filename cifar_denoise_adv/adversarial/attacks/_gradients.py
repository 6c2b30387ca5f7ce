"""Input gradients of the attacks' losses, exact in reduced precision (internal).

Why the loss's gradient is scaled per image. A float16 model (Keras
`mixed_float16`) back-propagates in float16, whose smallest value is about
6e-8. The cross-entropy's gradient on the logits, softmax(z) - onehot(y),
is about exp(-gap) for a top-two logit gap: 2e-9 at a gap of 20, which a
confident classifier has on most images, so it underflows to 0 at the first
float16 layer and the input gradient is exactly 0. Measured on a resnet9
(width 8) with confident logits, in mixed_float16 on a CPU: the gradient
was 0 on 2 of 6 images, and PGD-10 at 8/255 left 2 of 6 right, against 0
in float32.

The fix is the loss scaling of mixed-precision training, per image: each
image's loss is scaled by the power of two s that brings its largest
logit gradient into [1, 2), and its input gradient divided by s again in
float32. A power of two changes no digit, so a float32 model's gradient is
unchanged (bit for bit, barring subnormals), and a bfloat16 one (float32's
range, 3 significant digits) is unaffected. Each image's loss depends on
that image alone (batch norms run in inference mode), so per-image scales
are exact.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

# 2^100 stays finite in float32 (up to 2^127): the scale of an image whose
# loss gradient is exactly 0 (and stays 0).
LARGEST_EXPONENT = 100.0


def upstream_scale(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Per image, the power of two s with max_k |dCE/dz_k| * s in [1, 2).

    Args:
      logits: float32 [B, K].
      labels: int [B].

    Returns:
      float32 [B], >= 1 (no gradient flows through it).
    """
    logits = tf.stop_gradient(logits)
    probabilities = tf.nn.softmax(logits)
    onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    largest = tf.reduce_max(tf.abs(probabilities - onehot), axis=-1)
    exponent = -tf.floor(tf.math.log(largest) / math.log(2.0))  # log(0): +inf
    return tf.pow(2.0, tf.clip_by_value(exponent, 0.0, LARGEST_EXPONENT))


def cross_entropy_gradient(model_fn, inputs, labels, clamp=None) -> tf.Tensor:
    """The gradient of CE(labels[i], f(inputs)[i]) w.r.t. inputs[i], per example.

    The loss is computed on float32 logits and scaled per example
    (`upstream_scale`), so a float16 model's backward pass does not
    underflow; the gradient is unscaled in float32. A model with no path
    from its input to its output (tf.stop_gradient, rounding) gives zeros,
    never None.

    Args:
      model_fn: inputs -> logits [B, K] (16-bit logits are cast).
      inputs: float32 [B, ...], watched.
      labels: int [B].
      clamp: optional float32 scalar: the loss is min(CE, clamp) (its
        gradient is 0 where CE > clamp).

    Returns:
      float32 [B, ...] shaped like `inputs`.
    """
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logits = tf.cast(model_fn(inputs), tf.float32)
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        )
        if clamp is not None:
            loss = tf.minimum(loss, clamp)
    scale = upstream_scale(logits, labels)
    try:
        gradient = tape.gradient(
            loss,
            inputs,
            output_gradients=scale,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
    except LookupError:  # an op with no gradient registered: none at all
        gradient = tf.zeros_like(inputs)
    per_example = tf.concat([[-1], tf.ones([tf.rank(inputs) - 1], tf.int32)], 0)
    return tf.cast(gradient, tf.float32) / tf.reshape(scale, per_example)
