"""Adversarial attacks: targeted FGSM / I-FGSM, DeepFool, universal perturbations.

Pure functions on tensors, in the style of cleverhans' TF2 attacks: no flags,
no files, no printing. Every gradient comes from `tf.GradientTape`.

Conventions shared by every function here:

- `model_fn` is any callable mapping float32 images [B, H, W, C] in [0, 1]
  to logits [B, K] (a Keras model, or a function of TF ops). The heavy inner
  loops run under `tf.function`, so `model_fn` must be traceable; the
  functions themselves take and return eager tensors or NumPy arrays.
- Images are float32 in [0, 1]; epsilon, step sizes and radii are in the
  same [0, 1] pixel units. Attacks return images clipped to [0, 1].
- Norms: `p` is 2 or `np.inf` (also accepted: "l2", "2", "inf", "linf").
  `project_lp` treats its whole argument as ONE vector (a universal
  perturbation [H, W, C]); `batch_project_lp` projects each example of a
  batch [B, ...] separately, over all axes but the first.
- Long loops report progress through an optional `progress` callback, called
  with a dict of plain numbers.
- Bad arguments raise `ValueError` naming the argument.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

ModelFn = Callable[[tf.Tensor], tf.Tensor]
Progress = Callable[[dict], None]

# DeepFool's reference code adds this to every step so that the linearised
# boundary is crossed, not just reached.
DEEPFOOL_STEP_EPSILON = 1e-4
# Guards divisions by a zero gradient norm (e.g. two tied classes).
_TINY = 1e-12


# --------------------------------------------------------------------------
# Argument checks.


def _as_images(images, name: str = "images") -> tf.Tensor:
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank is None or images.shape.rank < 2:
        raise ValueError(f"{name} must be a batch [B, ...], got shape {images.shape}.")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got [{low:g}, {high:g}].")
    return images


def _as_labels(labels, batch: int, name: str) -> tf.Tensor:
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(f"{name} must be integers, got {labels.dtype.name}.")
    if labels.shape.as_list() != [batch]:
        raise ValueError(f"{name} must have shape [{batch}], got {labels.shape}.")
    return tf.cast(labels, tf.int64)


def _check_non_negative(value: float, name: str) -> float:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    return float(value)


def _check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def norm_order(p) -> float:
    """Canonical norm order: 2.0 or np.inf.

    Args:
      p: 2, 2.0, "2", "l2", np.inf, float("inf"), "inf" or "linf".

    Returns:
      2.0 or np.inf.
    """
    names = {"2": 2.0, "l2": 2.0, "inf": np.inf, "linf": np.inf, "l_inf": np.inf}
    if isinstance(p, str):
        if p.lower() in names:
            return names[p.lower()]
    elif isinstance(p, int | float | np.number) and float(p) in (2.0, np.inf):
        return float(p)
    raise ValueError(f"p must be 2 or np.inf ('l2' or 'linf'), got {p!r}.")


# --------------------------------------------------------------------------
# Norms and projections.


def linf_norm(perturbations) -> tf.Tensor:
    """Per-example L-inf norm.

    Args:
      perturbations: float [B, ...].

    Returns:
      float32 [B], max |value| over all axes but the first (pixel units).
    """
    perturbations = tf.convert_to_tensor(perturbations, tf.float32)
    flat = tf.reshape(perturbations, [tf.shape(perturbations)[0], -1])
    return tf.reduce_max(tf.abs(flat), axis=1)


def l2_norm(perturbations) -> tf.Tensor:
    """Per-example L2 norm.

    Args:
      perturbations: float [B, ...].

    Returns:
      float32 [B], Euclidean norm over all axes but the first (pixel units).
    """
    perturbations = tf.convert_to_tensor(perturbations, tf.float32)
    flat = tf.reshape(perturbations, [tf.shape(perturbations)[0], -1])
    return tf.norm(flat, axis=1)


def _project(perturbation: tf.Tensor, radius, p: float, axis) -> tf.Tensor:
    if p == np.inf:
        return tf.clip_by_value(perturbation, -radius, radius)
    norm = tf.sqrt(tf.reduce_sum(tf.square(perturbation), axis=axis, keepdims=True))
    return perturbation * tf.minimum(1.0, radius / tf.maximum(norm, _TINY))


def project_lp(perturbation, radius: float, p) -> tf.Tensor:
    """Euclidean projection of ONE perturbation onto the lp ball of `radius`.

    The whole tensor is one vector: use this for a universal perturbation
    [H, W, C]; use `batch_project_lp` for a batch of per-image perturbations.
    Points inside the ball are returned unchanged. This is P_{p,xi} of
    Moosavi-Dezfooli et al., "Universal adversarial perturbations", CVPR 2017.

    Args:
      perturbation: float tensor of any shape, pixel units.
      radius: ball radius xi >= 0, pixel units.
      p: 2 or np.inf (see `norm_order`). L2 rescales the tensor; L-inf clips
        each value to [-radius, radius].

    Returns:
      float32 tensor shaped like `perturbation`.
    """
    p = norm_order(p)
    radius = _check_non_negative(radius, "radius")
    perturbation = tf.convert_to_tensor(perturbation, tf.float32)
    return _project(perturbation, radius, p, axis=None)


def batch_project_lp(perturbations, radius: float, p) -> tf.Tensor:
    """`project_lp` applied to each example of a batch separately.

    Args:
      perturbations: float [B, ...], pixel units.
      radius: ball radius >= 0, pixel units, the same for every example.
      p: 2 or np.inf (see `norm_order`).

    Returns:
      float32 [B, ...]; each example's norm over all axes but the first is at
      most `radius`.
    """
    p = norm_order(p)
    radius = _check_non_negative(radius, "radius")
    perturbations = tf.convert_to_tensor(perturbations, tf.float32)
    if perturbations.shape.rank is None or perturbations.shape.rank < 1:
        raise ValueError(
            f"perturbations must be a batch [B, ...], got {perturbations.shape}."
        )
    axis = list(range(1, perturbations.shape.rank))
    return _project(perturbations, radius, p, axis=axis)


def random_perturbation_like(shape, xi: float, p, seed: int) -> tf.Tensor:
    """Random noise of norm exactly `xi`: a baseline for universal attacks.

    L-inf: independent random signs times xi (a corner of the ball).
    L2: a Gaussian draw rescaled to L2 norm xi, the whole tensor being one
    vector.

    Args:
      shape: the output shape, e.g. [32, 32, 3].
      xi: the norm, pixel units.
      p: 2 or np.inf (see `norm_order`).
      seed: int; the same seed gives the same noise.

    Returns:
      float32 tensor of `shape`.
    """
    p = norm_order(p)
    xi = _check_non_negative(xi, "xi")
    stateless_seed = tf.constant([int(seed), 0], tf.int64)
    if p == np.inf:
        bits = tf.random.stateless_uniform(
            shape, stateless_seed, minval=0, maxval=2, dtype=tf.int32
        )
        return xi * (2.0 * tf.cast(bits, tf.float32) - 1.0)
    draws = tf.random.stateless_normal(shape, stateless_seed, dtype=tf.float32)
    return xi * draws / tf.maximum(tf.norm(draws), _TINY)


# --------------------------------------------------------------------------
# Predictions and rates.


@tf.function(reduce_retracing=True)
def _predict(model_fn: ModelFn, images: tf.Tensor) -> tf.Tensor:
    return tf.argmax(model_fn(images), axis=-1)


@tf.function(reduce_retracing=True)
def _predict_shifted(model_fn: ModelFn, images: tf.Tensor, shift: tf.Tensor):
    return tf.argmax(model_fn(tf.clip_by_value(images + shift, 0.0, 1.0)), axis=-1)


def predict_labels(model_fn: ModelFn, images, batch_size: int = 256) -> tf.Tensor:
    """Argmax of the logits, in batches.

    Args:
      model_fn: images -> logits [B, K].
      images: float32 [N, H, W, C] in [0, 1].
      batch_size: images per model call.

    Returns:
      int64 [N] predicted classes.
    """
    images = _as_images(images)
    batch_size = _check_positive_int(batch_size, "batch_size")
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
            _predict_shifted(model_fn, images[start : start + batch_size], shift)
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
      model_fn: images -> logits [B, K].
      images: float32 [N, H, W, C] in [0, 1].
      v: float32 [H, W, C] (one perturbation for all images) or [N, H, W, C],
        pixel units.
      batch_size: images per model call.
      clean_labels: optional int [N] predictions on `images`, if already known.

    Returns:
      float in [0, 1].
    """
    images = _as_images(images)
    batch_size = _check_positive_int(batch_size, "batch_size")
    v = tf.convert_to_tensor(v, tf.float32)
    if v.shape != images.shape and v.shape != images.shape[1:]:
        raise ValueError(
            f"v must have shape {images.shape[1:]} or {images.shape}, got {v.shape}."
        )
    if clean_labels is None:
        clean_labels = predict_labels(model_fn, images, batch_size)
    clean_labels = _as_labels(clean_labels, images.shape[0], "clean_labels")
    if v.shape == images.shape:
        perturbed = predict_labels(
            model_fn, tf.clip_by_value(images + v, 0.0, 1.0), batch_size
        )
    else:
        perturbed = _predict_with_shift(model_fn, images, v, batch_size)
    return misclassification_rate(perturbed, clean_labels)


def _rate(first, second, names: tuple[str, str], equal: bool) -> float:
    first = np.asarray(first).reshape(-1)
    second = np.asarray(second).reshape(-1)
    if first.shape != second.shape:
        raise ValueError(
            f"{names[0]} {first.shape} and {names[1]} {second.shape} differ in shape."
        )
    if first.size == 0:
        raise ValueError(f"{names[0]} is empty.")
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


# --------------------------------------------------------------------------
# Targeted FGSM and its iterative version.


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


_signed_step_graph = tf.function(_signed_step, reduce_retracing=True)


def targeted_fgsm(
    model_fn: ModelFn, images, target_labels, epsilon: float
) -> tf.Tensor:
    """Targeted fast gradient sign method: one signed step towards the target.

    x' = clip(x - epsilon * sign(grad_x CE(target, f(x))), 0, 1), as in
    Kurakin, Goodfellow and Bengio, "Adversarial examples in the physical
    world" (2017), targeted form of Goodfellow, Shlens and Szegedy,
    "Explaining and harnessing adversarial examples" (ICLR 2015).

    Args:
      model_fn: images -> logits [B, K].
      images: float32 [B, H, W, C] in [0, 1].
      target_labels: int [B] classes to push the prediction towards.
      epsilon: L-inf step size >= 0, [0, 1] pixel units.

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).
    """
    images = _as_images(images)
    target_labels = _as_labels(target_labels, images.shape[0], "target_labels")
    epsilon = _check_non_negative(epsilon, "epsilon")
    return _signed_step_graph(
        model_fn, images, target_labels, tf.constant(epsilon, tf.float32)
    )


@tf.function(reduce_retracing=True)
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
      model_fn: images -> logits [B, K].
      images: float32 [B, H, W, C] in [0, 1].
      target_labels: int [B] target classes.
      epsilon: L-inf budget >= 0, pixel units.
      step_size: size of each signed step > 0, pixel units.
      num_steps: number of steps >= 1.
      random_start: start from a uniform draw in the epsilon ball (clipped to
        [0, 1]) instead of from `images`.
      seed: int seed of the random start (stateless, reproducible); None
        draws from TF's global generator.

    Returns:
      float32 [B, H, W, C] in [0, 1], within epsilon of `images` (L-inf).
    """
    images = _as_images(images)
    target_labels = _as_labels(target_labels, images.shape[0], "target_labels")
    epsilon = _check_non_negative(epsilon, "epsilon")
    if not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}.")
    num_steps = _check_positive_int(num_steps, "num_steps")
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


# --------------------------------------------------------------------------
# DeepFool.


class DeepFoolResult(NamedTuple):
    """What `deepfool` returns.

    Attributes:
      adversarial: float32 [B, H, W, C] in [0, 1], the last image tested.
      perturbation: float32 [B, H, W, C], adversarial - images (pixel units).
      iterations: int32 [B], DeepFool steps taken per image (1 to max_iter).
      success: bool [B], the prediction on `adversarial` differs from the
        prediction on `images`.
    """

    adversarial: tf.Tensor
    perturbation: tf.Tensor
    iterations: tf.Tensor
    success: tf.Tensor


def _deepfool_step(model_fn, images, candidates, linf: bool):
    """Minimal linearised step to the nearest candidate boundary, per image.

    Returns r_i [b, ...] shaped like `images`: the step of DeepFool's inner
    loop, with the 1e-4 margin of the reference code.
    """
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = tf.gather(model_fn(images), candidates, batch_dims=1)  # [b, C]
        # f_k - f_clean for the other candidates: C - 1 gradients, not C.
        f = logits[:, 1:] - logits[:, :1]  # [b, C-1]
    # All candidates' gradients from one forward pass.
    w = tape.batch_jacobian(f, images)  # [b, C-1, ...]
    w_flat = tf.reshape(w, tf.concat([tf.shape(w)[:2], [-1]], axis=0))
    if linf:  # dual norm of L-inf is L1 (paper, eq. 11 with q = 1)
        w_norm = tf.reduce_sum(tf.abs(w_flat), axis=-1)
    else:
        w_norm = tf.norm(w_flat, axis=-1)
    w_norm = tf.maximum(w_norm, _TINY)
    distance = tf.abs(f) / w_norm  # [b, C-1]
    nearest = tf.argmin(distance, axis=1)
    distance = tf.gather(distance, nearest, batch_dims=1) + DEEPFOOL_STEP_EPSILON
    w = tf.gather(w, nearest, batch_dims=1)  # [b, ...]
    per_image = [-1] + [1] * (images.shape.rank - 1)
    scale = tf.reshape(distance, per_image)
    if linf:
        return scale * tf.sign(w)
    return scale * w / tf.reshape(tf.gather(w_norm, nearest, batch_dims=1), per_image)


@tf.function(reduce_retracing=True)
def _deepfool_iteration(
    model_fn, images, adversarial, r_total, candidates, overshoot, linf, item_shape
):
    """One DeepFool iteration for the images still running.

    Returns the new r_tot, the image tested, clip(x + (1 + overshoot) r_tot)
    as in the reference code, and whether its label still is the clean one.
    `item_shape` (a Python tuple, so part of the trace key) restores the
    static shape that `batch_jacobian` needs when `reduce_retracing` has
    generalised the inputs to an unknown rank.
    """
    shape = (None, *item_shape)
    images = tf.ensure_shape(images, shape)
    adversarial = tf.ensure_shape(adversarial, shape)
    r_total = tf.ensure_shape(r_total, shape)
    r_total = r_total + _deepfool_step(model_fn, adversarial, candidates, linf)
    tested = tf.clip_by_value(images + (1.0 + overshoot) * r_total, 0.0, 1.0)
    labels = tf.argmax(model_fn(tested), axis=-1, output_type=tf.int32)
    return r_total, tested, tf.equal(labels, candidates[:, 0])


@tf.function(reduce_retracing=True)
def _top_classes(model_fn, images, num_candidates: int):
    logits = model_fn(images)
    return tf.math.top_k(logits, k=num_candidates).indices, tf.shape(logits)[-1]


def deepfool(
    model_fn: ModelFn,
    images,
    num_classes: int = 10,
    num_candidates: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    norm="l2",
) -> DeepFoolResult:
    """DeepFool: a small perturbation that changes each image's prediction.

    Moosavi-Dezfooli, Fawzi and Frossard, "DeepFool: a simple and accurate
    method to fool deep neural networks", CVPR 2016 (Algorithm 2, multi-class;
    L-inf per eq. 11). Follows the authors' reference code: the candidate
    classes are the `num_candidates` top classes of the clean logits; at each
    iteration every candidate's gradient comes from one forward pass
    (`batch_jacobian`), the minimal step to the nearest linearised boundary
    (plus 1e-4) is added to r_tot, and the image tested is
    clip(x + (1 + overshoot) r_tot, 0, 1). An image stops as soon as its
    prediction differs from the clean one, or after `max_iter` steps; only
    images still running are computed.

    L2 step: (|f_l| / ||w_l||_2 + 1e-4) w_l / ||w_l||_2.
    L-inf step: (|f_l| / ||w_l||_1 + 1e-4) sign(w_l).

    Args:
      model_fn: images -> logits [B, num_classes].
      images: float32 [B, H, W, C] (or any [B, ...]) in [0, 1].
      num_classes: K, the width of the logits (checked).
      num_candidates: classes considered (top ones of the clean logits),
        2 <= num_candidates <= num_classes.
      overshoot: relative overshoot >= 0 of the tested perturbation.
      max_iter: maximum DeepFool steps per image >= 1.
      norm: "l2" or "linf" (or 2 / np.inf).

    Returns:
      DeepFoolResult(adversarial, perturbation, iterations, success).
    """
    images = _as_images(images)
    linf = norm_order(norm) == np.inf
    num_classes = _check_positive_int(num_classes, "num_classes", minimum=2)
    num_candidates = _check_positive_int(num_candidates, "num_candidates", minimum=2)
    if num_candidates > num_classes:
        raise ValueError(
            f"num_candidates must be <= num_classes ({num_classes}), got "
            f"{num_candidates}."
        )
    overshoot = _check_non_negative(overshoot, "overshoot")
    max_iter = _check_positive_int(max_iter, "max_iter")
    candidates, width = _top_classes(model_fn, images, num_candidates)
    if int(width) != num_classes:
        raise ValueError(
            f"num_classes is {num_classes} but model_fn returns {int(width)} logits."
        )
    candidates = candidates.numpy()
    clean = images.numpy()
    adversarial, r_total = clean.copy(), np.zeros_like(clean)
    iterations = np.zeros(len(clean), np.int32)
    active = np.arange(len(clean))  # images whose label has not changed yet
    overshoot = tf.constant(overshoot, tf.float32)
    # A Python loop over one compiled iteration runs about 2.5x faster on CPU
    # than a tf.while_loop holding the jacobian (TF 2.21), and makes computing
    # only the active images a plain gather.
    for _ in range(max_iter):
        if active.size == 0:
            break
        r_active, tested, unchanged = _deepfool_iteration(
            model_fn,
            clean[active],
            adversarial[active],
            r_total[active],
            candidates[active],
            overshoot,
            linf,
            tuple(clean.shape[1:]),
        )
        r_total[active] = r_active.numpy()
        adversarial[active] = tested.numpy()
        iterations[active] += 1
        active = active[unchanged.numpy()]
    success = np.ones(len(clean), bool)
    success[active] = False
    adversarial = tf.constant(adversarial)
    return DeepFoolResult(
        adversarial,
        adversarial - images,
        tf.constant(iterations),
        tf.constant(success),
    )


# --------------------------------------------------------------------------
# Universal perturbations.


class UniversalResult(NamedTuple):
    """What the universal perturbation searches return.

    Attributes:
      perturbation: float32 [H, W, C], the universal perturbation v (pixel
        units, inside the lp ball of radius xi).
      history: plain-Python dict (JSON-ready): "fooling_rates", the fooling
        rate on the whole set after each pass (epoch); "passes", the passes
        (epochs) done; "seconds", the wall-clock time of the search.
    """

    perturbation: tf.Tensor
    history: dict


def _history(rates: list[float], start: float) -> dict:
    return {
        "fooling_rates": rates,
        "passes": len(rates),
        "seconds": time.perf_counter() - start,
    }


def _validate_universal(images, xi, p, batch_size):
    images = _as_images(images)
    if images.shape.rank != 4:
        raise ValueError(f"images must be [N, H, W, C], got {images.shape}.")
    return (
        images,
        _check_non_negative(xi, "xi"),
        norm_order(p),
        _check_positive_int(batch_size, "batch_size"),
    )


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
        labels = _predict_shifted(model_fn, tf.gather(images, index), v).numpy()
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
      model_fn: images -> logits [B, num_classes].
      images: float32 [N, H, W, C] in [0, 1].
      xi: radius of the lp ball, pixel units.
      p: 2 or np.inf (see `norm_order`), the norm of the ball.
      delta: stop once the fooling rate is >= 1 - delta, in [0, 1].
      max_passes: passes over the images at most >= 1.
      overshoot: DeepFool's overshoot.
      max_iter_deepfool: DeepFool's max_iter.
      num_classes: width of the logits.
      seed: seed of the per-pass shuffles.
      progress: optional callback, called once per pass with
        {"pass", "fooling_rate", "images_per_s", "elapsed_s"}.
      batch_size: images per model call when testing predictions.
      num_candidates: DeepFool's candidate classes (default num_classes).
      deepfool_norm: DeepFool's norm, "l2" (the paper's) or "linf".

    Returns:
      UniversalResult(perturbation [H, W, C], history with the fooling rate
      after each pass, the passes done and the seconds taken).
    """
    images, xi, p, batch_size = _validate_universal(images, xi, p, batch_size)
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be in [0, 1], got {delta}.")
    max_passes = _check_positive_int(max_passes, "max_passes")
    norm_order(deepfool_norm)
    num_candidates = num_classes if num_candidates is None else num_candidates
    clean_labels = predict_labels(model_fn, images, batch_size).numpy()

    def update(v, index):
        shifted = tf.clip_by_value(images[index : index + 1] + v, 0.0, 1.0)
        result = deepfool(
            model_fn,
            shifted,
            num_classes=num_classes,
            num_candidates=num_candidates,
            overshoot=overshoot,
            max_iter=max_iter_deepfool,
            norm=deepfool_norm,
        )
        if not bool(result.success[0]):
            return v
        return project_lp(v + result.perturbation[0], xi, p)

    rng = np.random.default_rng(seed)
    v = tf.zeros(images.shape[1:], tf.float32)
    rates: list[float] = []
    start = time.perf_counter()
    while len(rates) < max_passes:
        pass_start = time.perf_counter()
        order = rng.permutation(images.shape[0])
        v = _universal_pass(
            model_fn, images, clean_labels, order, v, update, batch_size
        )
        rates.append(fooling_rate(model_fn, images, v, batch_size, clean_labels))
        _report(progress, len(rates), rates[-1], images.shape[0], pass_start, start)
        if rates[-1] >= 1.0 - delta:
            break
    return UniversalResult(v, _history(rates, start))


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


@tf.function(reduce_retracing=True)
def _sgd_universal_step(model_fn, v, images, labels, step_size, xi, linf, clamp):
    with tf.GradientTape() as tape:
        tape.watch(v)
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, model_fn(tf.clip_by_value(images + v, 0.0, 1.0)), from_logits=True
        )
        if clamp is not None:
            # Shafahi et al.'s clamped loss: images already fooled by a wide
            # margin stop dominating the gradient.
            loss = tf.minimum(loss, clamp)
        loss = tf.reduce_mean(loss)
    gradient = tape.gradient(loss, v)
    if linf:
        return tf.clip_by_value(v + step_size * tf.sign(gradient), -xi, xi)
    step = gradient / tf.maximum(tf.norm(gradient), _TINY)
    return _project(v + step_size * step, xi, 2.0, axis=None)


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
      model_fn: images -> logits [B, K].
      images: float32 [N, H, W, C] in [0, 1].
      xi: radius of the lp ball, pixel units.
      p: 2 or np.inf (see `norm_order`).
      step_size: size of each step > 0, pixel units (L-inf) or L2 length.
      num_epochs: passes over the shuffled images >= 1.
      batch_size: images per step.
      seed: seed of the per-epoch shuffles.
      progress: optional callback, called once per epoch with
        {"pass", "fooling_rate", "images_per_s", "elapsed_s"}.
      labels: optional int [N] classes whose loss is raised; default the clean
        predictions.
      loss_clamp: optional beta of the paper's clamped loss min(CE, beta).
      final_step_size: optional; if given, the step size decays from
        `step_size` to this value over all steps on a cosine (half period);
        by default it stays `step_size`.

    Returns:
      UniversalResult(perturbation [H, W, C], history with the fooling rate
      (vs the clean predictions) after each epoch, the epochs done as
      "passes" and the seconds taken).
    """
    images, xi, p, batch_size = _validate_universal(images, xi, p, batch_size)
    if not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}.")
    num_epochs = _check_positive_int(num_epochs, "num_epochs")
    if loss_clamp is not None and not loss_clamp > 0:
        raise ValueError(f"loss_clamp must be > 0 or None, got {loss_clamp}.")
    clean_labels = predict_labels(model_fn, images, batch_size)
    targets = clean_labels if labels is None else labels
    targets = _as_labels(targets, images.shape[0], "labels")
    if final_step_size is not None and not 0 < final_step_size <= step_size:
        raise ValueError(
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
            )
        rates.append(fooling_rate(model_fn, images, v, batch_size, clean_labels))
        _report(progress, epoch, rates[-1], images.shape[0], epoch_start, start)
    return UniversalResult(v, _history(rates, start))
