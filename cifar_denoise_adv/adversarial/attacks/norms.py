"""Norms, lp-ball projections and random perturbations of a given norm."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial.attacks._checks import TINY
from cifar_denoise_adv.adversarial.attacks._checks import check_budget
from cifar_denoise_adv.core import arrays
from cifar_denoise_adv.core.errors import UserError


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
    raise UserError(f"p must be 2 or np.inf ('l2' or 'linf'), got {p!r}.")


# --------------------------------------------------------------------------
# Norms and projections.


def linf_norm(perturbations) -> tf.Tensor:
    """Per-example L-inf norm.

    Args:
      perturbations: float [B, ...].

    Returns:
      float32 [B], max |value| over all axes but the first (pixel units).
    """
    perturbations = arrays.check_perturbation(
        perturbations, "perturbations", batch=True
    )
    flat = tf.reshape(perturbations, [tf.shape(perturbations)[0], -1])
    return tf.reduce_max(tf.abs(flat), axis=1)


def l2_norm(perturbations) -> tf.Tensor:
    """Per-example L2 norm.

    Args:
      perturbations: float [B, ...].

    Returns:
      float32 [B], Euclidean norm over all axes but the first (pixel units).
    """
    perturbations = arrays.check_perturbation(
        perturbations, "perturbations", batch=True
    )
    flat = tf.reshape(perturbations, [tf.shape(perturbations)[0], -1])
    return tf.norm(flat, axis=1)


def project(perturbation: tf.Tensor, radius, p: float, axis) -> tf.Tensor:
    """Projection onto the lp ball of `radius` over `axis` (None: the whole tensor)."""
    if p == np.inf:
        return tf.clip_by_value(perturbation, -radius, radius)
    norm = tf.sqrt(tf.reduce_sum(tf.square(perturbation), axis=axis, keepdims=True))
    return perturbation * tf.minimum(1.0, radius / tf.maximum(norm, TINY))


def project_lp(perturbation, radius: float, p) -> tf.Tensor:
    """Euclidean projection of ONE perturbation onto the lp ball of `radius`.

    The whole tensor is one vector: use this for a universal perturbation
    [H, W, C]; use `batch_project_lp` for a batch of per-image perturbations.
    Points inside the ball are returned unchanged. This is P_{p,xi} of
    Moosavi-Dezfooli et al., "Universal adversarial perturbations", CVPR 2017.

    Args:
      perturbation: float tensor of any shape, pixel units.
      radius: ball radius xi >= 0 in [0, 1] pixel units: at most 1 for
        L-inf, at most sqrt(size) for L2 (`core.units`).
      p: 2 or np.inf (see `norm_order`). L2 rescales the tensor; L-inf clips
        each value to [-radius, radius].

    Returns:
      float32 tensor shaped like `perturbation`.
    """
    p = norm_order(p)
    perturbation = arrays.check_perturbation(perturbation, "perturbation", batch=False)
    radius = check_budget(radius, "radius", p, perturbation.shape.num_elements() or 1)
    return project(perturbation, radius, p, axis=None)


def batch_project_lp(perturbations, radius: float, p) -> tf.Tensor:
    """`project_lp` applied to each example of a batch separately.

    Args:
      perturbations: float [B, ...], pixel units.
      radius: ball radius >= 0 in pixel units (as for `project_lp`), the same
        for every example.
      p: 2 or np.inf (see `norm_order`).

    Returns:
      float32 [B, ...]; each example's norm over all axes but the first is at
      most `radius`.
    """
    p = norm_order(p)
    perturbations = arrays.check_perturbation(
        perturbations, "perturbations", batch=True
    )
    if perturbations.shape.rank is None or perturbations.shape.rank < 1:
        raise UserError(
            f"perturbations must be a batch [B, ...], got {perturbations.shape}."
        )
    size = perturbations.shape[1:].num_elements() or 1
    radius = check_budget(radius, "radius", p, size)
    axis = list(range(1, perturbations.shape.rank))
    return project(perturbations, radius, p, axis=axis)


def random_perturbation_like(shape, xi: float, p, seed: int) -> tf.Tensor:
    """Random noise of norm exactly `xi`: a baseline for universal attacks.

    L-inf: independent random signs times xi (a corner of the ball).
    L2: a Gaussian draw rescaled to L2 norm xi, the whole tensor being one
    vector.

    Args:
      shape: the output shape, e.g. [32, 32, 3].
      xi: the norm in [0, 1] pixel units (L2: at most sqrt of the size).
      p: 2 or np.inf (see `norm_order`).
      seed: int; the same seed gives the same noise.

    Returns:
      float32 tensor of `shape`.
    """
    p = norm_order(p)
    xi = check_budget(xi, "xi", p, max(int(np.prod(shape)), 1))
    stateless_seed = tf.constant([int(seed), 0], tf.int64)
    if p == np.inf:
        bits = tf.random.stateless_uniform(
            shape, stateless_seed, minval=0, maxval=2, dtype=tf.int32
        )
        return xi * (2.0 * tf.cast(bits, tf.float32) - 1.0)
    draws = tf.random.stateless_normal(shape, stateless_seed, dtype=tf.float32)
    return xi * draws / tf.maximum(tf.norm(draws), TINY)


def chessboard_perturbation(shape, xi: float, p, square: int) -> tf.Tensor:
    """A chessboard pattern of norm exactly `xi`: a baseline for universal attacks.

    Squares of `square` x `square` pixels alternate between +a and -a, the
    same in every channel (a plain +-xi pattern that any perturbation of the
    budget can reach, e.g. kenny-co/sgd-uap-torch's chessboard baseline).
    L-inf: a = xi. L2: a is chosen so that the whole tensor has L2 norm xi.

    Args:
      shape: [H, W, C], e.g. [32, 32, 3].
      xi: the norm in [0, 1] pixel units (L2: at most sqrt of the size).
      p: 2 or np.inf (see `norm_order`).
      square: side of a square in pixels, >= 1.

    Returns:
      float32 tensor of `shape`; its top-left square is positive.
    """
    p = norm_order(p)
    xi = check_budget(xi, "xi", p, max(int(np.prod(shape)), 1))
    if int(square) != square or square < 1:
        raise UserError(f"square must be an integer >= 1, got {square}.")
    height, width, channels = (int(n) for n in shape)
    rows = np.arange(height)[:, None] // int(square)
    cols = np.arange(width)[None, :] // int(square)
    signs = np.where((rows + cols) % 2 == 0, 1.0, -1.0).astype(np.float32)
    pattern = np.repeat(signs[:, :, None], channels, axis=2)
    if p == np.inf:
        return tf.constant(xi * pattern)
    return tf.constant(xi * pattern / np.sqrt(pattern.size))
