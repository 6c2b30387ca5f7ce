"""Universal adversarial perturbations: the DeepFool loop and the sgd method."""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import TINY
from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import Progress
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import as_labels
from cifar_denoise_adv.adversarial.attacks._checks import check_budget
from cifar_denoise_adv.adversarial.attacks._checks import check_fraction
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import check_step
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks._checks import values_per_image
from cifar_denoise_adv.adversarial.attacks._gradients import cross_entropy_gradient
from cifar_denoise_adv.adversarial.attacks.contract import check_model
from cifar_denoise_adv.adversarial.attacks.contract import warn_without_gradient
from cifar_denoise_adv.adversarial.attacks.deepfool import check_deepfool_settings
from cifar_denoise_adv.adversarial.attacks.deepfool import deepfool_unchecked
from cifar_denoise_adv.adversarial.attacks.metrics import fooling_rate_unchecked
from cifar_denoise_adv.adversarial.attacks.metrics import predict_shifted
from cifar_denoise_adv.adversarial.attacks.metrics import predict_unchecked
from cifar_denoise_adv.adversarial.attacks.norms import norm_order
from cifar_denoise_adv.adversarial.attacks.norms import project
from cifar_denoise_adv.adversarial.attacks.norms import project_lp
from cifar_denoise_adv.core.errors import UserError


class UniversalResult(NamedTuple):
    """What the universal perturbation searches return.

    Attributes:
      perturbation: float32 [H, W, C], the universal perturbation v (pixel
        units, inside the lp ball of radius xi).
      history: plain-Python dict (JSON-ready): "fooling_rates", the fooling
        rate on the whole set after each pass (epoch); "passes", the passes
        (epochs) done; "seconds", the wall-clock time of the search; for
        the DeepFool loop also "returned_pass", the pass whose v is returned.
    """

    perturbation: tf.Tensor
    history: dict


def _history(rates: list[float], start: float) -> dict:
    return {
        "fooling_rates": rates,
        "passes": len(rates),
        "seconds": time.perf_counter() - start,
    }


def _validate_universal(model_fn, images, xi, p, batch_size, attack):
    """The checked images, model (and its width K), xi, p and batch size.

    A model without an input gradient gets one UserWarning naming `attack`.
    """
    images = as_images(images)
    if images.shape.rank != 4:
        raise UserError(f"images must be [N, H, W, C], got {images.shape}.")
    p = norm_order(p)
    model_fn, width = check_model(model_fn, images)
    checked = (
        images,
        model_fn,
        width,
        check_budget(xi, "xi", p, values_per_image(images)),
        p,
        check_positive_int(batch_size, "batch_size"),
    )
    warn_without_gradient(model_fn, images, attack, stacklevel=4)
    return checked


def _universal_pass(model_fn, images, clean_labels, order, v, update, batch_size):
    """One pass of Algorithm 1 in the given order; returns the new v.

    Sequential semantics: image k is tested against the v left by images
    before it. To save model calls, the "still correct?" test runs on a chunk
    of upcoming images at once; whenever v changes, the rest of the chunk is
    re-tested. The chunk grows while images are already fooled and shrinks
    after each update.
    """
    position, chunk = 0, 1
    while position < len(order):
        index = order[position : position + chunk]
        labels = predict_shifted(model_fn, tf.gather(images, index), v).numpy()
        unfooled = np.flatnonzero(labels == clean_labels[index])
        if unfooled.size == 0:
            position += len(index)
            chunk = min(2 * chunk, batch_size)
            continue
        first = int(unfooled[0])
        v = update(v, int(index[first]))
        position += first + 1
        chunk = max(1, chunk // 2)
    return v


def universal_perturbation(
    model_fn: ModelFn,
    images,
    xi: float,
    p,
    delta: float = 0.2,
    max_passes: int = 10,
    overshoot: float = 0.02,
    max_iter_deepfool: int = 10,
    num_classes: int = 10,
    seed: int = 0,
    progress: Progress | None = None,
    batch_size: int = 128,
    num_candidates: int | None = None,
    deepfool_norm="l2",
    keep_best_pass: bool = False,
) -> UniversalResult:
    """Universal adversarial perturbation by iterated DeepFool (Algorithm 1).

    Moosavi-Dezfooli, Fawzi, Fawzi and Frossard, "Universal adversarial
    perturbations", CVPR 2017. Each pass visits the images in a new random
    order; for every image x whose prediction on clip(x + v, 0, 1) still
    equals its clean prediction, DeepFool on clip(x + v, 0, 1) gives r and
    v <- P_{p,xi}(v + r). Passes stop when the fooling rate on the set
    (prediction changed vs clean) reaches 1 - delta, or after `max_passes`.

    r is DeepFool's effective perturbation (its clipped adversarial minus
    its input, overshoot included). As in the paper (arg min ||r||_2) and
    the authors' code, DeepFool is the L2 one whatever `p` is; only the
    projection uses `p`. v is updated only when DeepFool changed the label
    within `max_iter_deepfool` steps, as the reference code's convergence
    check intends.

    Args:
      model_fn: images -> logits [B, num_classes] (the model contract of
        `attacks.contract.check_model`).
      images: float32 [N, H, W, C] in [0, 1].
      xi: radius of the lp ball in [0, 1] pixel units: at most 1 for L-inf
        (10/255, not 10), at most sqrt(H * W * C) for L2.
      p: 2 or np.inf (see `norm_order`), the norm of the ball.
      delta: stop once the fooling rate is >= 1 - delta, a fraction in [0, 1].
      max_passes: passes over the images at most >= 1.
      overshoot: DeepFool's overshoot, a fraction in [0, 1].
      max_iter_deepfool: DeepFool's max_iter.
      num_classes: width of the logits.
      seed: seed of the per-pass shuffles.
      progress: optional callback, called once per pass with
        {"pass", "fooling_rate", "images_per_s", "elapsed_s"}.
      batch_size: images per model call when testing predictions.
      num_candidates: DeepFool's candidate classes (default num_classes).
      deepfool_norm: DeepFool's norm, "l2" (the paper's) or "linf".
      keep_best_pass: return the v of the pass with the highest fooling rate
        on `images` instead of the last pass's v (Algorithm 1 returns the
        last; the rate is not monotonic in the passes). The rates compared
        are on the same images v is computed on, never on held-out ones.

    Returns:
      UniversalResult(perturbation [H, W, C], history with the fooling rate
      after each pass, the passes done and the seconds taken).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images, model_fn, width, xi, p, batch_size = _validate_universal(
        model_fn, images, xi, p, batch_size, "universal_perturbation"
    )
    delta = check_fraction(delta, "delta")
    max_passes = check_positive_int(max_passes, "max_passes")
    num_candidates = num_classes if num_candidates is None else num_candidates
    settings = check_deepfool_settings(
        num_classes, num_candidates, overshoot, max_iter_deepfool, deepfool_norm, width
    )
    clean_labels = predict_unchecked(model_fn, images, batch_size).numpy()

    def update(v, index):
        shifted = tf.clip_by_value(images[index : index + 1] + v, 0.0, 1.0)
        result = deepfool_unchecked(model_fn, shifted, *settings)
        if not bool(result.success[0]):
            return v
        return project_lp(v + result.perturbation[0], xi, p)

    rng = np.random.default_rng(seed)
    v = tf.zeros(images.shape[1:], tf.float32)
    best_v, best_rate = v, -1.0
    rates: list[float] = []
    start = time.perf_counter()
    while len(rates) < max_passes:
        pass_start = time.perf_counter()
        order = rng.permutation(images.shape[0])
        v = _universal_pass(
            model_fn, images, clean_labels, order, v, update, batch_size
        )
        rates.append(
            fooling_rate_unchecked(model_fn, images, v, batch_size, clean_labels)
        )
        _report(progress, len(rates), rates[-1], images.shape[0], pass_start, start)
        if rates[-1] > best_rate:
            best_v, best_rate = v, rates[-1]
        if rates[-1] >= 1.0 - delta:
            break
    history = _history(rates, start)
    history["returned_pass"] = (
        int(np.argmax(rates)) + 1 if keep_best_pass else len(rates)
    )
    return UniversalResult(best_v if keep_best_pass else v, history)


def _report(progress, count, rate, num_images, pass_start, start):
    if progress is None:
        return
    now = time.perf_counter()
    progress(
        {
            "pass": count,
            "fooling_rate": rate,
            "images_per_s": num_images / max(now - pass_start, 1e-9),
            "elapsed_s": now - start,
        }
    )


@per_model
def _sgd_universal_step(
    model_fn, v, images, labels, step_size, xi, linf, clamp, num_draws=1
):
    # One tape per draw of a random model_fn (EOT): the mean of the draws'
    # gradients, with one forward pass in memory at a time. Each image's
    # gradient w.r.t. its shifted input x + v is its gradient w.r.t. v, taken
    # with the loss scaled per image (float16 models do not underflow) and
    # zero, never None, for a model without gradient.
    def shifted_model(shifted):
        return model_fn(tf.clip_by_value(shifted, 0.0, 1.0))

    gradient = tf.zeros_like(v)
    for _ in range(num_draws):
        # Shafahi et al.'s clamped loss min(CE, clamp): images already
        # fooled by a wide margin stop dominating the gradient.
        per_image = cross_entropy_gradient(shifted_model, images + v, labels, clamp)
        gradient += tf.reduce_mean(per_image, axis=0) / num_draws
    if linf:
        return tf.clip_by_value(v + step_size * tf.sign(gradient), -xi, xi)
    step = gradient / tf.maximum(tf.norm(gradient), TINY)
    return project(v + step_size * step, xi, 2.0, axis=None)


def _step_schedule(first: float, last: float | None, total: int):
    """Step sizes: constant, or a half cosine from `first` to `last`."""
    for k in range(total):
        if last is None:
            yield first
        else:
            fraction = k / max(total - 1, 1)
            yield last + 0.5 * (first - last) * (1.0 + np.cos(np.pi * fraction))


def sgd_universal_perturbation(
    model_fn: ModelFn,
    images,
    xi: float,
    p,
    step_size: float,
    num_epochs: int,
    batch_size: int,
    seed: int,
    progress: Progress | None = None,
    labels=None,
    loss_clamp: float | None = None,
    final_step_size: float | None = None,
    num_draws: int = 1,
) -> UniversalResult:
    """Universal perturbation by mini-batch gradient ascent on v.

    Shafahi, Najibi, Xu, Dickerson, Davis and Goldstein, "Universal
    adversarial training", AAAI 2020 (Algorithm 1, without the model
    update). For each mini-batch, v takes a step that increases the mean
    cross-entropy of f(clip(x + v, 0, 1)) against the CLEAN predictions f(x)
    (or against `labels`, the true classes, when given), then is projected
    onto the lp ball of radius xi. L-inf steps are signed
    (step_size * sign(g)); L2 steps are normalised (step_size * g / ||g||_2).

    Args:
      model_fn: images -> logits [B, K] (the model contract of
        `attacks.contract.check_model`).
      images: float32 [N, H, W, C] in [0, 1].
      xi: radius of the lp ball in [0, 1] pixel units: at most 1 for L-inf
        (10/255, not 10), at most sqrt(H * W * C) for L2.
      p: 2 or np.inf (see `norm_order`).
      step_size: size of each step > 0 in pixel units, measured like xi:
        the signed step (L-inf) or the step's L2 length.
      num_epochs: passes over the shuffled images >= 1.
      batch_size: images per step.
      seed: seed of the per-epoch shuffles.
      progress: optional callback, called once per epoch with
        {"pass", "fooling_rate", "images_per_s", "elapsed_s"}.
      labels: optional int [N] classes in 0..K-1 whose loss is raised;
        default the clean predictions.
      loss_clamp: optional beta > 0 of the paper's clamped loss min(CE, beta)
        (cross-entropy units, nats).
      final_step_size: optional; if given, the step size decays from
        `step_size` to this value over all steps on a cosine (half period);
        by default it stays `step_size`.
      num_draws: calls of a random `model_fn` (a randomised defense) whose
        gradients each step averages: expectation over transformation
        (Athalye et al., ICML 2018). 1 for a deterministic model.

    Returns:
      UniversalResult(perturbation [H, W, C], history with the fooling rate
      (vs the clean predictions) after each epoch, the epochs done as
      "passes" and the seconds taken).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images, model_fn, width, xi, p, batch_size = _validate_universal(
        model_fn, images, xi, p, batch_size, "sgd_universal_perturbation"
    )
    size = values_per_image(images)
    step_size = check_step(step_size, "step_size", p, size)
    num_epochs = check_positive_int(num_epochs, "num_epochs")
    num_draws = check_positive_int(num_draws, "num_draws")
    if loss_clamp is not None and not (np.isfinite(loss_clamp) and loss_clamp > 0):
        raise UserError(f"loss_clamp must be > 0 or None, got {loss_clamp}.")
    clean_labels = predict_unchecked(model_fn, images, batch_size)
    targets = clean_labels if labels is None else labels
    targets = as_labels(targets, images.shape[0], "labels", num_classes=width)
    if final_step_size is not None:
        final_step_size = check_step(final_step_size, "final_step_size", p, size)
        if final_step_size > step_size:
            raise UserError(
                f"final_step_size must be in (0, step_size={step_size}], "
                f"got {final_step_size}."
            )
    clamp = None if loss_clamp is None else tf.constant(loss_clamp, tf.float32)
    xi_tensor = tf.constant(xi, tf.float32)
    steps_per_epoch = -(-images.shape[0] // batch_size)
    step_sizes = _step_schedule(
        step_size, final_step_size, num_epochs * steps_per_epoch
    )
    rng = np.random.default_rng(seed)
    v = tf.zeros(images.shape[1:], tf.float32)
    rates: list[float] = []
    start = time.perf_counter()
    for epoch in range(1, num_epochs + 1):
        epoch_start = time.perf_counter()
        order = rng.permutation(images.shape[0])
        for first in range(0, len(order), batch_size):
            index = order[first : first + batch_size]
            v = _sgd_universal_step(
                model_fn,
                v,
                tf.gather(images, index),
                tf.gather(targets, index),
                tf.constant(next(step_sizes), tf.float32),
                xi_tensor,
                p == np.inf,
                clamp,
                num_draws,
            )
        rates.append(
            fooling_rate_unchecked(model_fn, images, v, batch_size, clean_labels)
        )
        _report(progress, epoch, rates[-1], images.shape[0], epoch_start, start)
    return UniversalResult(v, _history(rates, start))
