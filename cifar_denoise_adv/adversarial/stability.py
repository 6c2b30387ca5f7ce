"""How steady a classifier is under plain noise: random signs and Gaussian noise.

An attack's figure means something only beside what plain noise of the same
size does: if random signs of an L-inf budget already change most
predictions, a universal perturbation of that budget that fools most
images says little. `measure` gives, for one classifier and one set of
images, the fraction of predictions that random signs (each pixel moved by
+-eps, the sign drawn at random) change, and the accuracy under Gaussian
noise of each sigma; the classify job records it for every run
("stability" in metrics.json) and benchmarks/classifier_stability.py
compares recipes with it.

The noise is drawn from numpy with a fixed seed, so the same model and
images give the same figures in any process; noised images are clipped to
[0, 1] as the attacks' are.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

import numpy as np

# The attacks' L-inf budgets (flags/fgsm.cfg, universal.cfg: 4/255 and
# 10/255) and two Gaussian levels of the denoising study.
SIGN_BUDGETS = (4 / 255, 10 / 255)
GAUSSIAN_SIGMAS = (0.02, 0.05)


def budget_name(value: float) -> str:
    """'4/255' for a budget that is a whole number of 255ths, else '0.05'."""
    steps = value * 255
    if abs(steps - round(steps)) < 1e-6 and round(steps):
        return f"{round(steps)}/255"
    return f"{value:g}"


def random_signs(shape, eps: float, rng: np.random.Generator) -> np.ndarray:
    """float32 noise of `shape` whose entries are +eps or -eps, equally likely."""
    return (eps * (2.0 * rng.integers(0, 2, size=shape) - 1.0)).astype(np.float32)


def measure(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    sign_budgets: Sequence[float] = SIGN_BUDGETS,
    gaussian_sigmas: Sequence[float] = GAUSSIAN_SIGMAS,
    seed: int = 0,
) -> dict:
    """Clean accuracy, prediction changes under random signs, Gaussian accuracy.

    Args:
      predict: float32 images [N, H, W, C] in [0, 1] -> scores [N, K] (logits
        or probabilities; only the argmax is used).
      images: float32 [N, H, W, C] in [0, 1].
      labels: int [N] true classes.
      sign_budgets: L-inf budgets eps: each image + eps * random signs.
      gaussian_sigmas: standard deviations of additive Gaussian noise.
      seed: numpy seed of every draw (one stream per budget and sigma, so
        adding a budget leaves the others' draws unchanged).

    Returns:
      {"images": N, "accuracy": clean accuracy,
       "signs_changed": {"4/255": fraction of predictions that change, ...},
       "signs_accuracy": {"4/255": accuracy under the random signs, ...},
       "gaussian_accuracy": {"0.02": accuracy under the noise, ...}}.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4 or len(images) != len(labels) or not len(images):
        raise ValueError(
            f"need images [N, H, W, C] and N labels, N > 0; got {images.shape} "
            f"and {labels.shape}."
        )
    clean = np.asarray(predict(images)).argmax(axis=1)
    result = {
        "images": len(images),
        "accuracy": float(np.mean(clean == labels)),
        "signs_changed": {},
        "signs_accuracy": {},
        "gaussian_accuracy": {},
    }
    for index, eps in enumerate(sign_budgets):
        rng = np.random.default_rng([seed, 0, index])
        noised = np.clip(images + random_signs(images.shape, eps, rng), 0.0, 1.0)
        predicted = np.asarray(predict(noised)).argmax(axis=1)
        result["signs_changed"][budget_name(eps)] = float(np.mean(predicted != clean))
        result["signs_accuracy"][budget_name(eps)] = float(np.mean(predicted == labels))
    for index, sigma in enumerate(gaussian_sigmas):
        rng = np.random.default_rng([seed, 1, index])
        noise = rng.normal(0.0, sigma, size=images.shape).astype(np.float32)
        predicted = np.asarray(predict(np.clip(images + noise, 0.0, 1.0))).argmax(1)
        result["gaussian_accuracy"][f"{sigma:g}"] = float(np.mean(predicted == labels))
    return result


def summary(figures: dict) -> str:
    """One line: 'acc 82.8%; signs 4/255 changes 40.1%, ...; gauss 0.05 acc 11.0%'."""
    parts = [f"accuracy {100 * figures['accuracy']:.1f}%"]
    parts += [
        f"random signs {name} change {100 * value:.1f}%"
        for name, value in figures["signs_changed"].items()
    ]
    parts += [
        f"Gaussian {name} accuracy {100 * value:.1f}%"
        for name, value in figures["gaussian_accuracy"].items()
    ]
    return ", ".join(parts)


def scalars(figures: dict, prefix: str) -> dict[str, float]:
    """TensorBoard scalars {prefix/signs_changed_4_255: value, ...} of `measure`."""
    out = {f"{prefix}/accuracy": figures["accuracy"]}
    for key in ("signs_changed", "signs_accuracy", "gaussian_accuracy"):
        for name, value in figures[key].items():
            out[f"{prefix}/{key}_{name.replace('/', '_')}"] = value
    return out
