"""FGSM and its iterative version (I-FGSM / PGD), targeted and untargeted.

Every step follows the sign of `input_gradient`, the gradient of the
cross-entropy with respect to the images. With `num_draws` > 1 that gradient
is averaged over several calls of a random `model_fn` (expectation over
transformation), which is how a randomised defense is attacked.
"""

from __future__ import annotations

import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import as_labels
from cifar_denoise_adv.adversarial.attacks._checks import check_budget
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import check_step
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks._gradients import cross_entropy_gradient
from cifar_denoise_adv.adversarial.attacks.contract import check_model
from cifar_denoise_adv.adversarial.attacks.contract import warn_without_gradient


def _checked(model_fn, images, labels, name: str = "labels", attack: str = "fgsm"):
    """(model_fn, images, labels) as every attack here takes them, checked.

    A model without a gradient from its input to its output gets one
    UserWarning naming `attack` (`contract.warn_without_gradient`).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images = as_images(images)
    model_fn, width = check_model(model_fn, images)
    labels = as_labels(labels, images.shape[0], name, num_classes=width)
    warn_without_gradient(model_fn, images, attack, stacklevel=4)
    return model_fn, images, labels


def _gradient(model_fn, images, labels, num_draws: int):
    """Mean over `num_draws` calls of grad_x CE(labels, f(x)), one tape per call.

    One tape per draw keeps one forward pass in memory, not `num_draws`; the
    loss is computed in float32 and scaled per image (`_gradients`).
    """
    total = tf.zeros_like(images)
    for _ in range(num_draws):
        # Scaled per image, so that a float16 model's gradient does not
        # underflow to 0; a model with no gradient gives zeros, not None
        # (the entry points warn about it: `contract.warn_without_gradient`).
        total += cross_entropy_gradient(model_fn, images, labels)
    return total / num_draws


_gradient_graph = tf.function(_gradient, reduce_retracing=True)


def input_gradient(model_fn: ModelFn, images, labels, num_draws: int = 1) -> tf.Tensor:
    """Gradient of each image's cross-entropy, averaged over model draws (EOT).

    g(x) = (1/K) sum_k grad_x CE(y, f_k(x)), where f_1..f_K are K successive
    calls of `model_fn`. For a deterministic model every call is the same and
    K = 1 suffices; for a random one (noise inside the model) this is the
    expectation over transformation of Athalye, Carlini and Wagner,
    "Obfuscated gradients give a false sense of security" (ICML 2018), and
    Athalye et al., "Synthesizing robust adversarial examples" (ICML 2018).
    Each image's loss depends on that image only, so the gradient of the
    summed loss is each image's own gradient.

    Args:
      model_fn: images -> logits [B, K] (the contract of
        `attacks.contract.check_model`); may draw fresh randomness per call.
      images: float32 [B, H, W, C] in [0, 1].
      labels: int [B] classes in 0..K-1 whose cross-entropy is differentiated.
      num_draws: calls of `model_fn` averaged, >= 1.

    Returns:
      float32 [B, H, W, C].

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    model_fn, images, labels = _checked(
        model_fn, images, labels, attack="input_gradient"
    )
    num_draws = check_positive_int(num_draws, "num_draws")
    return _gradient_graph(model_fn, images, labels, num_draws)


def _signed_step(model_fn, images, labels, epsilon, num_draws=1, ascend=False):
    """clip(x +- epsilon * sign(g), 0, 1); + ascends CE(labels), - descends it."""
    gradient = _gradient(model_fn, images, labels, num_draws)
    # Targeted attacks descend the target's loss (towards the target class);
    # untargeted ones ascend the true label's loss (away from it).
    direction = 1.0 if ascend else -1.0
    step = direction * epsilon * tf.sign(gradient)
    return tf.clip_by_value(images + step, 0.0, 1.0)


_signed_step_graph = per_model(_signed_step)


def targeted_fgsm(
    model_fn: ModelFn, images, target_labels, epsilon: float, num_draws: int = 1
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
      num_draws: gradients averaged per step (EOT, see `input_gradient`).

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    model_fn, images, target_labels = _checked(
        model_fn, images, target_labels, "target_labels", "targeted_fgsm"
    )
    epsilon = check_budget(epsilon, "epsilon")
    num_draws = check_positive_int(num_draws, "num_draws")
    return _signed_step_graph(
        model_fn, images, target_labels, tf.constant(epsilon, tf.float32), num_draws
    )


def fgsm(
    model_fn: ModelFn, images, labels, epsilon: float, num_draws: int = 1
) -> tf.Tensor:
    """Untargeted fast gradient sign method: one signed step up the loss.

    x' = clip(x + epsilon * sign(grad_x CE(y, f(x))), 0, 1), of Goodfellow,
    Shlens and Szegedy, "Explaining and harnessing adversarial examples"
    (ICLR 2015), eq. (3) (the clip keeps a valid image).

    Args:
      model_fn: images -> logits [B, K] (as for `targeted_fgsm`).
      images: float32 [B, H, W, C] in [0, 1].
      labels: int [B] true classes in 0..K-1, whose loss is raised.
      epsilon: L-inf budget in [0, 1] pixel units (8/255, not 8).
      num_draws: gradients averaged per step (EOT, see `input_gradient`).

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    model_fn, images, labels = _checked(model_fn, images, labels)
    epsilon = check_budget(epsilon, "epsilon")
    num_draws = check_positive_int(num_draws, "num_draws")
    return _signed_step_graph(
        model_fn, images, labels, tf.constant(epsilon, tf.float32), num_draws, True
    )


@per_model
def _projected_step(
    model_fn, images, adversarial, labels, epsilon, step_size, num_draws, ascend
):
    adversarial = _signed_step(
        model_fn, adversarial, labels, step_size, num_draws, ascend
    )
    delta = tf.clip_by_value(adversarial - images, -epsilon, epsilon)
    return tf.clip_by_value(images + delta, 0.0, 1.0)


def _iterate(model_fn, images, labels, epsilon, step_size, num_steps, **options):
    """The projected signed-gradient loop shared by both iterative attacks."""
    step_size = check_step(step_size, "step_size")
    num_steps = check_positive_int(num_steps, "num_steps")
    num_draws = check_positive_int(options["num_draws"], "num_draws")
    start = images
    if options["random_start"]:
        seed = options["seed"]
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
            model_fn,
            images,
            adversarial,
            labels,
            epsilon,
            step_size,
            num_draws,
            options["ascend"],
        )
    return adversarial


def targeted_iterative(
    model_fn: ModelFn,
    images,
    target_labels,
    epsilon: float,
    step_size: float,
    num_steps: int,
    random_start: bool = False,
    seed: int | None = None,
    num_draws: int = 1,
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
      num_draws: gradients averaged per step (EOT, see `input_gradient`).

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    model_fn, images, target_labels = _checked(
        model_fn, images, target_labels, "target_labels", "targeted_iterative"
    )
    epsilon = check_budget(epsilon, "epsilon")
    return _iterate(
        model_fn,
        images,
        target_labels,
        epsilon,
        step_size,
        num_steps,
        random_start=random_start,
        seed=seed,
        num_draws=num_draws,
        ascend=False,
    )


def pgd(
    model_fn: ModelFn,
    images,
    labels,
    epsilon: float,
    step_size: float,
    num_steps: int,
    random_start: bool = True,
    seed: int | None = None,
    num_draws: int = 1,
) -> tf.Tensor:
    """Untargeted L-inf projected gradient descent (PGD) on the cross-entropy.

    Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards deep learning models
    resistant to adversarial attacks" (ICLR 2018), eq. (2): from a uniform
    random point of the epsilon ball, `num_steps` times
    x <- P(x + step_size * sign(grad_x CE(y, f(x)))), P projecting onto the
    L-inf ball of radius epsilon around the image and onto [0, 1]. Madry et
    al. take step_size = 2.5 epsilon / num_steps. Without `random_start` this
    is the basic iterative method of Kurakin et al. (2017).

    Args:
      model_fn: images -> logits [B, K] (as for `targeted_fgsm`).
      images: float32 [B, H, W, C] in [0, 1].
      labels: int [B] true classes in 0..K-1, whose loss is raised.
      epsilon: L-inf budget in [0, 1] pixel units (8/255, not 8).
      step_size: size of each signed step, in (0, 1] pixel units.
      num_steps: number of steps >= 1.
      random_start: start from a uniform draw in the epsilon ball.
      seed: int seed of the random start (stateless, reproducible); None
        draws from TF's global generator.
      num_draws: gradients averaged per step (EOT, see `input_gradient`).

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    model_fn, images, labels = _checked(model_fn, images, labels, attack="pgd")
    epsilon = check_budget(epsilon, "epsilon")
    return _iterate(
        model_fn,
        images,
        labels,
        epsilon,
        step_size,
        num_steps,
        random_start=random_start,
        seed=seed,
        num_draws=num_draws,
        ascend=True,
    )
