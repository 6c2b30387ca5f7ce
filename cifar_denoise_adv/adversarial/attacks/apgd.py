"""Auto-PGD (APGD), L-inf, on the cross-entropy or the DLR loss.

Croce and Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks" (ICML 2020), the gradient
attacks of AutoAttack: Algorithm 1 with its step-size schedule, and the
difference-of-logits-ratio loss (eq. 6) and its targeted form.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import TINY
from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import as_labels
from cifar_denoise_adv.adversarial.attacks._checks import check_budget
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks.contract import check_model
from cifar_denoise_adv.core.errors import UserError

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75  # alpha of Algorithm 1
RHO = 0.75  # condition 1: fraction of steps that must raise the loss
# Checkpoints p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
# 0.06), in hundredths so that w_j = ceil(p_j N) is exact.
_FIRST, _SHRINK, _LEAST = 22, 3, 6


def checkpoints(num_steps: int) -> list[int]:
    """The iterations w_j = ceil(p_j N) where the step size may be halved.

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    (Croce and Hein 2020, section 3.1), for p_j <= 1. For N = 100:
    0, 22, 41, 57, 70, 80, 87, 93, 99.
    """
    percents = [0, _FIRST]
    while True:
        step = max(percents[-1] - percents[-2] - _SHRINK, _LEAST)
        if percents[-1] + step > 100:
            break
        percents.append(percents[-1] + step)
    return sorted({-(-p * num_steps // 100) for p in percents})


def dlr_loss(logits, labels, target_labels=None) -> tf.Tensor:
    """The difference of logits ratio, per image (to be maximised).

    Untargeted (eq. 6): DLR(x, y) = -(z_y - max_{i != y} z_i) /
    (z_pi1 - z_pi3), pi ordering the logits z decreasingly. Targeted:
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2). Both are invariant to a
    shift and a positive scaling of the logits. A tiny constant keeps the
    denominator away from 0.

    Args:
      logits: float [B, K] (K >= 3; >= 4 for the targeted form).
      labels: int [B] true classes.
      target_labels: int [B] targets, or None for the untargeted loss.

    Returns:
      float32 [B].
    """
    logits = tf.cast(logits, tf.float32)
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    true = tf.gather(logits, labels, batch_dims=1)
    if target_labels is None:
        is_true = tf.one_hot(labels, tf.shape(logits)[-1]) > 0
        other = tf.reduce_max(tf.where(is_true, -np.inf, logits), axis=-1)
        scale = ordered[:, 0] - ordered[:, 2]
        return -(true - other) / (scale + TINY)
    target = tf.gather(logits, target_labels, batch_dims=1)
    scale = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2
    return -(true - target) / (scale + TINY)


def _loss(logits, labels, target_labels, kind: str):
    """The per-image loss APGD maximises."""
    if kind == "dlr":
        return dlr_loss(logits, labels, target_labels)
    logits = tf.cast(logits, tf.float32)
    if target_labels is None:
        return keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        )
    # Targeted CE: maximise -CE(target), i.e. walk towards the target.
    return -keras.losses.sparse_categorical_crossentropy(
        target_labels, logits, from_logits=True
    )


def _evaluate(model_fn, x, goal, with_gradient=True):
    """(loss [B], its gradient, mean logits), each averaged over the draws.

    Without `with_gradient` the gradient is zeros and no tape is kept.
    """
    labels, target_labels, kind, num_draws, targeted = goal
    loss_total = tf.zeros(tf.shape(x)[:1])
    gradient = tf.zeros_like(x)
    logits_total = None
    for _ in range(num_draws):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(model_fn(x), tf.float32)
            loss = _loss(logits, labels, target_labels if targeted else None, kind)
        if with_gradient:
            gradient += tape.gradient(
                loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
        loss_total += loss
        logits_total = logits if logits_total is None else logits_total + logits
    return loss_total / num_draws, gradient / num_draws, logits_total / num_draws


_evaluate_graph = per_model(_evaluate)


def _project(x, images, epsilon):
    """P_S: onto the L-inf ball of radius epsilon around `images` and [0, 1]."""
    return tf.clip_by_value(
        tf.clip_by_value(x, images - epsilon, images + epsilon), 0.0, 1.0
    )


def _reached(logits, labels, target_labels, targeted):
    """Bool [B]: the image is adversarial (moved off its label / onto the target)."""
    predicted = tf.argmax(logits, axis=-1)
    return predicted == target_labels if targeted else predicted != labels


def _start(images, epsilon, seed):
    noise = tf.random.stateless_uniform(
        images.shape, tf.constant([int(seed), 3], tf.int64), -epsilon, epsilon
    )
    return tf.clip_by_value(images + noise, 0.0, 1.0)


def apgd(
    model_fn: ModelFn,
    images,
    labels,
    epsilon: float,
    num_steps: int = 100,
    loss: str = "ce",
    target_labels=None,
    seed: int = 0,
    num_draws: int = 1,
) -> tf.Tensor:
    """Auto-PGD (APGD-CE, APGD-DLR, targeted APGD-DLR), L-inf, one run.

    Croce and Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks" (ICML 2020), Algorithm 1.
    With P_S the projection onto the L-inf ball of radius epsilon around x
    and onto [0, 1], f the loss and eta^(0) = 2 epsilon:

      x^(1) = P_S(x^(0) + eta sign(grad f(x^(0))))
      z^(k+1) = P_S(x^(k) + eta^(k) sign(grad f(x^(k))))
      x^(k+1) = P_S(x^(k) + alpha (z^(k+1) - x^(k))
                    + (1 - alpha) (x^(k) - x^(k-1))),   alpha = 0.75,

    keeping the best point x_max (highest f) per image. At the checkpoints
    w_j = ceil(p_j N) (`checkpoints`) the step size of an image is halved,
    and it restarts from its x_max, when
      condition 1: f rose in fewer than rho = 0.75 of the steps since
        w_{j-1}: sum_{i=w_{j-1}}^{w_j - 1} 1[f(x^(i+1)) > f(x^(i))]
        < rho (w_j - w_{j-1}); or
      condition 2: eta^(w_{j-1}) = eta^(w_j) and
        f_max^(w_{j-1}) = f_max^(w_j) (not halved last time, no progress).
    Losses: the cross-entropy CE(y, z) ("ce"), or the difference of logits
    ratio ("dlr", eq. 6), DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3),
    and with targets -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    (`dlr_loss`); targeted "ce" maximises -CE(t, z).

    The start x^(0) is a uniform draw in the ball (seeded). N = `num_steps`
    costs N gradients per image (at x^(0) .. x^(N-1)) and one forward pass
    (at x^(N)), as PGD with N steps. Each image returns the last iterate
    that was adversarial (misclassified; on the target when targeted), as
    AutoAttack does, or else its x_max. With `num_draws` > 1 the loss, its
    gradient and the logits are averaged over calls of a random model
    (expectation over transformation, as for PGD).

    Args:
      model_fn: images -> logits [B, K] (the contract of
        `attacks.contract.check_model`); K >= 3 for "dlr", >= 4 targeted.
      images: float32 [B, H, W, C] in [0, 1].
      labels: int [B] true classes in 0..K-1.
      epsilon: L-inf budget in [0, 1] pixel units (8/255, not 8).
      num_steps: iterations N >= 1 (gradients per image).
      loss: "ce" or "dlr".
      target_labels: int [B] classes to reach (targeted APGD), or None.
      seed: int seed of the random start.
      num_draws: calls of `model_fn` averaged per step (EOT), >= 1.

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images = as_images(images)
    model_fn, width = check_model(model_fn, images)
    labels = as_labels(labels, images.shape[0], "labels", num_classes=width)
    targeted = target_labels is not None
    if targeted:
        target_labels = as_labels(
            target_labels, images.shape[0], "target_labels", num_classes=width
        )
    else:
        target_labels = labels
    if loss not in LOSSES:
        raise UserError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}.")
    least = 4 if targeted else 3
    if loss == "dlr" and width < least:
        raise UserError(
            f"loss='dlr' needs at least {least} classes "
            f"({'targeted' if targeted else 'untargeted'}); the model returns {width}."
        )
    epsilon = check_budget(epsilon, "epsilon")
    num_steps = check_positive_int(num_steps, "num_steps")
    num_draws = check_positive_int(num_draws, "num_draws")
    goal = (labels, target_labels, loss, num_draws, targeted)
    return _run(model_fn, images, goal, epsilon, num_steps, seed)


class _State:
    """The per-image bookkeeping of Algorithm 1 between iterations."""

    def __init__(self, x, f, gradient, logits, goal, eta):
        labels, target_labels, _, _, targeted = goal
        self.best_x, self.best_f, self.best_gradient = x, f, gradient
        reached = _reached(logits, labels, target_labels, targeted)
        self.adversarial = x
        self.found = reached
        self.eta = eta
        self.rises = tf.zeros_like(f)
        self.eta_at_checkpoint = eta
        self.best_f_at_checkpoint = f
        self.halved_last = tf.zeros_like(f, tf.bool)

    def observe(self, x, f, f_before, gradient, logits, goal):
        labels, target_labels, _, _, targeted = goal
        better = f > self.best_f
        self.best_x = _where(better, x, self.best_x)
        self.best_gradient = _where(better, gradient, self.best_gradient)
        self.best_f = tf.where(better, f, self.best_f)
        self.rises += tf.cast(f > f_before, tf.float32)
        reached = _reached(logits, labels, target_labels, targeted)
        self.adversarial = _where(reached, x, self.adversarial)
        self.found = self.found | reached

    def checkpoint(self, steps_since: int):
        """Bool [B]: halve the step and restart from x_max (conditions 1, 2)."""
        condition_1 = self.rises < RHO * steps_since
        condition_2 = tf.logical_not(self.halved_last) & (
            self.best_f <= self.best_f_at_checkpoint
        )
        halve = condition_1 | condition_2
        self.eta = tf.where(halve[:, None, None, None], self.eta / 2, self.eta)
        self.halved_last = halve
        self.best_f_at_checkpoint = self.best_f
        self.rises = tf.zeros_like(self.rises)
        return halve


def _where(mask, a, b):
    return tf.where(tf.reshape(mask, [-1] + [1] * (a.shape.rank - 1)), a, b)


@per_model
def _momentum_step(model_fn, images, x, x_before, gradient, eta, alpha, goal, last):
    """z, then x^(k+1) with momentum; f, its gradient (none at the last) and logits."""
    epsilon, goal = goal[0], goal[1:]
    z = _project(x + eta * tf.sign(gradient), images, epsilon)
    x_new = _project(
        x + alpha * (z - x) + (1 - alpha) * (x - x_before), images, epsilon
    )
    f, new_gradient, logits = _evaluate(model_fn, x_new, goal, not last)
    return x_new, f, new_gradient, logits


def _run(model_fn, images, goal, epsilon, num_steps, seed) -> tf.Tensor:
    x = _start(images, epsilon, seed)
    f, gradient, logits = _evaluate_graph(model_fn, x, goal)
    eta = tf.fill([images.shape[0], 1, 1, 1], 2.0 * epsilon)
    state = _State(x, f, gradient, logits, goal, eta)
    marks = set(checkpoints(num_steps)[1:])
    last_mark = 0
    x_before = x
    step_goal = (tf.constant(epsilon, tf.float32), *goal)
    for k in range(num_steps):
        # The first step has no momentum (alpha = 1): x^(1) = z^(1).
        alpha = tf.constant(1.0 if k == 0 else MOMENTUM, tf.float32)
        last = k == num_steps - 1  # N gradients in all, as PGD with N steps
        x_new, f_new, gradient, logits = _momentum_step(
            model_fn, images, x, x_before, gradient, state.eta, alpha, step_goal, last
        )
        state.observe(x_new, f_new, f, gradient, logits, goal)
        x_before, x, f = x, x_new, f_new
        if k + 1 in marks and not last:
            halve = state.checkpoint(k + 1 - last_mark)
            last_mark = k + 1
            x = _where(halve, state.best_x, x)
            gradient = _where(halve, state.best_gradient, gradient)
            f = tf.where(halve, state.best_f, f)
    return _where(state.found, state.adversarial, state.best_x)
