"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import TINY
from cifar_denoise_adv.adversarial.attacks._checks import ModelFn
from cifar_denoise_adv.adversarial.attacks._checks import as_images
from cifar_denoise_adv.adversarial.attacks._checks import check_fraction
from cifar_denoise_adv.adversarial.attacks._checks import check_positive_int
from cifar_denoise_adv.adversarial.attacks._checks import per_model
from cifar_denoise_adv.adversarial.attacks.contract import check_model
from cifar_denoise_adv.adversarial.attacks.contract import warn_without_gradient
from cifar_denoise_adv.adversarial.attacks.norms import norm_order
from cifar_denoise_adv.core.errors import UserError

# DeepFool's reference code adds this to every step so that the linearised
# boundary is crossed, not just reached.
DEEPFOOL_STEP_EPSILON = 1e-4


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
    # A model without a gradient gives zeros, never None (no step is taken).
    try:
        w = tape.batch_jacobian(
            f, images, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )  # [b, C-1, ...]
    except LookupError:  # an op with no gradient registered: none at all
        w = tf.zeros(tf.concat([tf.shape(f), tf.shape(images)[1:]], 0))
    w_flat = tf.reshape(w, tf.concat([tf.shape(w)[:2], [-1]], axis=0))
    if linf:  # dual norm of L-inf is L1 (paper, eq. 11 with q = 1)
        w_norm = tf.reduce_sum(tf.abs(w_flat), axis=-1)
    else:
        w_norm = tf.norm(w_flat, axis=-1)
    w_norm = tf.maximum(w_norm, TINY)
    distance = tf.abs(f) / w_norm  # [b, C-1]
    nearest = tf.argmin(distance, axis=1)
    distance = tf.gather(distance, nearest, batch_dims=1) + DEEPFOOL_STEP_EPSILON
    w = tf.gather(w, nearest, batch_dims=1)  # [b, ...]
    per_image = [-1] + [1] * (images.shape.rank - 1)
    scale = tf.reshape(distance, per_image)
    if linf:
        return scale * tf.sign(w)
    return scale * w / tf.reshape(tf.gather(w_norm, nearest, batch_dims=1), per_image)


@per_model
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


@per_model
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
      model_fn: images -> logits [B, num_classes] (the model contract of
        `attacks.contract.check_model`: a Keras model ending in a softmax is
        attacked through its logits, other probabilities are refused).
      images: float32 [B, H, W, C] (or any [B, ...]) in [0, 1].
      num_classes: K, the width of the logits (checked).
      num_candidates: classes considered (top ones of the clean logits),
        2 <= num_candidates <= num_classes.
      overshoot: relative overshoot of the tested perturbation, a fraction
        in [0, 1] (0.02 for 2%).
      max_iter: maximum DeepFool steps per image >= 1.
      norm: "l2" or "linf" (or 2 / np.inf).

    Returns:
      DeepFoolResult(adversarial, perturbation, iterations, success).

    Raises:
      UserError (a ValueError): one line naming the bad argument.
    """
    images = as_images(images)
    model_fn, width = check_model(model_fn, images)
    settings = check_deepfool_settings(
        num_classes, num_candidates, overshoot, max_iter, norm, width
    )
    warn_without_gradient(model_fn, images, "deepfool")
    return deepfool_unchecked(model_fn, images, *settings)


def check_deepfool_settings(
    num_classes, num_candidates, overshoot, max_iter, norm, width: int
) -> tuple[int, float, int, bool]:
    """DeepFool's settings, checked against the model's width K.

    Returns:
      (num_candidates, overshoot, max_iter, linf), as `deepfool_unchecked`
      takes them.
    """
    linf = norm_order(norm) == np.inf
    num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    num_candidates = check_positive_int(num_candidates, "num_candidates", minimum=2)
    if num_candidates > num_classes:
        raise UserError(
            f"num_candidates must be <= num_classes ({num_classes}), got "
            f"{num_candidates}."
        )
    if width != num_classes:
        raise UserError(
            f"num_classes is {num_classes} but model_fn returns {width} logits."
        )
    overshoot = check_fraction(overshoot, "overshoot")
    max_iter = check_positive_int(max_iter, "max_iter")
    return num_candidates, overshoot, max_iter, linf


def deepfool_unchecked(
    model_fn: ModelFn,
    images: tf.Tensor,
    num_candidates: int,
    overshoot: float,
    max_iter: int,
    linf: bool,
) -> DeepFoolResult:
    """`deepfool` on arguments already checked (the universal loop's inner call)."""
    candidates, _ = _top_classes(model_fn, images, num_candidates)
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
