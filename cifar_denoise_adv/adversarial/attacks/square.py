"""A small Square Attack: gradient-free random search in the L-inf ball.

It queries the model's outputs only, never its gradients, so it is the
check that a defense's robustness is not an artefact of broken or
obfuscated gradients: if random search finds adversarial examples that the
gradient attack misses, the gradient attack was not doing its job.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import as_labels
from cifar_denoise_adv.adversarial.attacks._checks import check_budget
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks.contract import check_model
from cifar_denoise_adv.core.errors import UserError

# The paper's schedule: the square's share of the image halves after these
# iterations (their budget is 10,000 queries; a small budget only reaches
# the first few halvings, which is what we want with few queries).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


# One graph per model: a module-level tf.function taking the model traces
# again for each new one (the defend job attacks three pipelines), which TF
# reports as frequent retracing.
@per_model
def _margins(model_fn, images, labels):
    """f_y(x) - max_{k != y} f_k(x) per image: < 0 means misclassified."""
    logits = model_fn(images)
    true = tf.gather(logits, labels, axis=1, batch_dims=1)
    is_true = tf.one_hot(labels, tf.shape(logits)[1]) > 0.5
    others = tf.where(is_true, tf.constant(-np.inf, logits.dtype), logits)
    return true - tf.reduce_max(others, axis=1)


def square_fraction(iteration: int, p_init: float) -> float:
    """The share of the image a square covers at this iteration (1-based)."""
    return p_init / 2 ** sum(iteration > threshold for threshold in HALVINGS)


def square_attack(
    model_fn: ModelFn,
    images,
    labels,
    epsilon: float,
    num_queries: int,
    p_init: float = 0.1,
    seed: int = 0,
) -> tf.Tensor:
    """Untargeted L-inf Square Attack on the margin loss, without restarts.

    Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a
    query-efficient black-box adversarial attack via random search" (ECCV
    2020), Algorithm 1 with the L-inf sampling of its section 3.1: start from
    vertical stripes of +-epsilon; then, per query, set one random square
    (side sqrt(p H W), p halving on the paper's schedule) of the
    perturbation to +-epsilon, one random sign per channel, and keep the
    change if the margin f_y - max_{k != y} f_k went down. Images already
    misclassified are not queried again. A random `model_fn` (a randomised
    defense) is queried with one draw per query.

    Args:
      model_fn: images -> logits [B, K]; only its outputs are used (the
        contract of `attacks.contract.check_model`).
      images: float32 [B, H, W, C] in [0, 1].
      labels: int [B] true classes in 0..K-1.
      epsilon: L-inf budget in [0, 1] pixel units (8/255, not 8).
      num_queries: model calls per image after the first, >= 1.
      p_init: the first squares' share of the image, in (0, 1].
      seed: seed of the random stripes, positions and signs.

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images = as_images(images)
    if images.shape.rank != 4:
        raise UserError(f"images must be [B, H, W, C], got {images.shape}.")
    model_fn, width = check_model(model_fn, images)
    labels = as_labels(labels, images.shape[0], "labels", num_classes=width)
    epsilon = check_budget(epsilon, "epsilon")
    num_queries = check_positive_int(num_queries, "num_queries")
    if not 0.0 < p_init <= 1.0:
        raise UserError(f"p_init must be in (0, 1], got {p_init}.")
    rng = np.random.default_rng(seed)
    x = images.numpy()
    count, height, width, channels = x.shape
    stripes = rng.choice([-epsilon, epsilon], size=(count, 1, width, channels))
    adversarial = np.clip(x + stripes, 0.0, 1.0).astype(np.float32)
    margins = _margins(model_fn, tf.constant(adversarial), labels).numpy()
    rows, cols = np.arange(height), np.arange(width)
    for iteration in range(1, num_queries + 1):
        active = np.flatnonzero(margins > 0)
        if active.size == 0:
            break
        fraction = square_fraction(iteration, p_init)
        side = int(np.clip(round(np.sqrt(fraction * height * width)), 1, height - 1))
        top = rng.integers(0, height - side + 1, size=active.size)
        left = rng.integers(0, width - side + 1, size=active.size)
        inside = ((rows >= top[:, None]) & (rows < top[:, None] + side))[:, :, None] & (
            (cols >= left[:, None]) & (cols < left[:, None] + side)
        )[:, None, :]
        signs = rng.choice([-epsilon, epsilon], size=(active.size, 1, 1, channels))
        delta = adversarial[active] - x[active]
        delta = np.where(inside[..., None], signs, delta)
        candidate = np.clip(x[active] + delta, 0.0, 1.0).astype(np.float32)
        new_margins = _margins(
            model_fn, tf.constant(candidate), tf.gather(labels, active)
        ).numpy()
        better = new_margins < margins[active]
        adversarial[active[better]] = candidate[better]
        margins[active[better]] = new_margins[better]
    return tf.constant(adversarial)
