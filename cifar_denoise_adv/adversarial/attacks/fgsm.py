"""Targeted FGSM and its iterative version (I-FGSM / PGD)."""

from __future__ import annotations

import keras
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import as_labels
from cifar_denoise_adv.adversarial.attacks._checks import check_budget
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import check_step
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks.contract import check_model


def _signed_step(model_fn, images, target_labels, epsilon):
    """One step: clip(x + epsilon * sign(grad_x(-CE(target, f(x)))), 0, 1)."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = keras.losses.sparse_categorical_crossentropy(
            target_labels, model_fn(images), from_logits=True
        )
    # Descend the target's loss: the step moves *towards* the target class.
    step = -epsilon * tf.sign(tape.gradient(loss, images))
    return tf.clip_by_value(images + step, 0.0, 1.0)


_signed_step_graph = per_model(_signed_step)


def targeted_fgsm(
    model_fn: ModelFn, images, target_labels, epsilon: float
) -> tf.Tensor:
    """Targeted fast gradient sign method: one signed step towards the target.

    x' = clip(x - epsilon * sign(grad_x CE(target, f(x))), 0, 1), as in
    Kurakin, Goodfellow and Bengio, "Adversarial examples in the physical
    world" (2017), targeted form of Goodfellow, Shlens and Szegedy,
    "Explaining and harnessing adversarial examples" (ICLR 2015).

    Args:
      model_fn: images -> logits [B, K] (the model contract of
        `attacks.contract.check_model`: a Keras model ending in a softmax is
        attacked through its logits, other probabilities are refused).
      images: float32 [B, H, W, C] in [0, 1].
      target_labels: int [B] classes in 0..K-1 to push the prediction towards.
      epsilon: L-inf step size in [0, 1] pixel units (8/255, not 8).

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images = as_images(images)
    model_fn, width = check_model(model_fn, images)
    target_labels = as_labels(
        target_labels, images.shape[0], "target_labels", num_classes=width
    )
    epsilon = check_budget(epsilon, "epsilon")
    return _signed_step_graph(
        model_fn, images, target_labels, tf.constant(epsilon, tf.float32)
    )


@per_model
def _projected_step(model_fn, images, adversarial, target_labels, epsilon, step_size):
    adversarial = _signed_step(model_fn, adversarial, target_labels, step_size)
    delta = tf.clip_by_value(adversarial - images, -epsilon, epsilon)
    return tf.clip_by_value(images + delta, 0.0, 1.0)


def targeted_iterative(
    model_fn: ModelFn,
    images,
    target_labels,
    epsilon: float,
    step_size: float,
    num_steps: int,
    random_start: bool = False,
    seed: int | None = None,
) -> tf.Tensor:
    """Targeted iterative FGSM / L-inf PGD.

    Repeats the `targeted_fgsm` step `num_steps` times, projecting after each
    step onto the L-inf ball of radius epsilon around `images` and onto
    [0, 1]. Kurakin, Goodfellow and Bengio, "Adversarial machine learning at
    scale" (ICLR 2017; iterative least-likely-class method); with
    `random_start`, projected gradient descent of Madry et al., "Towards deep
    learning models resistant to adversarial attacks" (ICLR 2018).

    Args:
      model_fn: images -> logits [B, K] (as for `targeted_fgsm`).
      images: float32 [B, H, W, C] in [0, 1].
      target_labels: int [B] target classes in 0..K-1.
      epsilon: L-inf budget in [0, 1] pixel units.
      step_size: size of each signed step, in (0, 1] pixel units.
      num_steps: number of steps >= 1.
      random_start: start from a uniform draw in the epsilon ball (clipped to
        [0, 1]) instead of from `images`.
      seed: int seed of the random start (stateless, reproducible); None
        draws from TF's global generator.

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images = as_images(images)
    model_fn, width = check_model(model_fn, images)
    target_labels = as_labels(
        target_labels, images.shape[0], "target_labels", num_classes=width
    )
    epsilon = check_budget(epsilon, "epsilon")
    step_size = check_step(step_size, "step_size")
    num_steps = check_positive_int(num_steps, "num_steps")
    start = images
    if random_start:
        if seed is None:
            noise = tf.random.uniform(images.shape, -epsilon, epsilon)
        else:
            noise = tf.random.stateless_uniform(
                images.shape, tf.constant([int(seed), 1], tf.int64), -epsilon, epsilon
            )
        start = tf.clip_by_value(images + noise, 0.0, 1.0)
    epsilon = tf.constant(epsilon, tf.float32)
    step_size = tf.constant(step_size, tf.float32)
    # A Python loop over one compiled step: on CPU this runs about 30% faster
    # than the same loop as a tf.while_loop inside one graph (TF 2.21).
    adversarial = start
    for _ in range(num_steps):
        adversarial = _projected_step(
            model_fn, images, adversarial, target_labels, epsilon, step_size
        )
    return adversarial
