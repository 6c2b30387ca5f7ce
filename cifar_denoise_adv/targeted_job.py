"""The targeted job: barely perceptible perturbations towards chosen classes.

`run(...)` is what the `targeted` app and the study call: it picks test
images and target classes, attacks a `classify` run's model with targeted
FGSM or its iterative version, and measures and shows the result.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cifar_denoise_adv import attacks
from cifar_denoise_adv import classify_job
from cifar_denoise_adv import data
from cifar_denoise_adv import noise_lib
from cifar_denoise_adv import outputs
from cifar_denoise_adv import plots

METHODS = ("fgsm", "iterative")
TARGET_MODES = ("random", "least_likely", "given")


@dataclasses.dataclass(frozen=True)
class TargetedConfig:
    """The attack and the choice of images and targets."""

    method: str = "fgsm"
    epsilon: float = 0.02  # L-inf budget, [0, 1] pixel units
    step_size: float = 0.005  # iterative only
    num_steps: int = 10  # iterative only
    random_start: bool = False  # iterative only
    indices: tuple[int, ...] = ()  # test images; empty: num_images random ones
    num_images: int = 400  # correctly classified test images, chosen at random
    target_mode: str = "random"
    targets: tuple[int, ...] = ()  # for target_mode "given": one, or one per image
    seed: int = 0
    num_figures: int = 6
    batch_size: int = 128

    def __post_init__(self):
        if self.method not in METHODS:
            raise outputs.UserError(f"--attack={self.method}: expected {METHODS}.")
        if self.target_mode not in TARGET_MODES:
            raise outputs.UserError(
                f"--target_mode={self.target_mode}: expected one of {TARGET_MODES}."
            )
        if self.target_mode == "given" and not self.targets:
            raise outputs.UserError("--target_mode=given needs --targets (class ids).")
        if any(not 0 <= t < data.NUM_CLASSES for t in self.targets):
            raise outputs.UserError(f"--targets={self.targets}: class ids are 0..9.")
        if not 0.0 < self.epsilon <= 1.0:
            raise outputs.UserError(f"--epsilon={self.epsilon}: expected (0, 1].")


def settings(config: TargetedConfig) -> dict:
    """The attack's settings as recorded in metrics.json."""
    common = {"norm": "linf", "epsilon": config.epsilon}
    if config.method == "fgsm":
        return {
            **common,
            "algorithm": "targeted FGSM, one step: "
            "x' = clip(x + eps * sign(grad_x(-CE(target, f(x)))), 0, 1)",
        }
    return {
        **common,
        "algorithm": "targeted iterative FGSM (I-FGSM/PGD): num_steps signed "
        "steps of step_size descending CE(target), each projected onto the "
        "L-inf ball of radius eps around x and onto [0, 1]",
        "step_size": config.step_size,
        "num_steps": config.num_steps,
        "random_start": config.random_start,
    }


def choose_images(
    config: TargetedConfig, predicted: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Test indices to attack: the given ones, or random correct ones."""
    if config.indices:
        indices = np.asarray(config.indices)
        bad = indices[(indices < 0) | (indices >= len(labels))]
        if bad.size:
            raise outputs.UserError(
                f"--indices: {bad.tolist()} outside the {len(labels)} test images."
            )
        return indices
    correct = np.flatnonzero(predicted == labels)
    if not correct.size:
        raise outputs.UserError("the classifier gets no test image right.")
    rng = np.random.default_rng(config.seed)
    count = min(config.num_images, correct.size)
    return np.sort(rng.choice(correct, size=count, replace=False))


def choose_targets(
    config: TargetedConfig, logits: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """One target class per image, never the true class."""
    if config.target_mode == "given":
        targets = np.asarray(config.targets)
        if targets.size == 1:
            targets = np.full(len(labels), targets[0])
        if targets.size != len(labels):
            raise outputs.UserError(
                f"--targets: {targets.size} classes for {len(labels)} images; give "
                "one for all, or one per image."
            )
    elif config.target_mode == "least_likely":
        targets = logits.argmin(axis=1)
    else:
        rng = np.random.default_rng(config.seed + 1)
        offsets = rng.integers(1, data.NUM_CLASSES, size=len(labels))
        targets = (labels + offsets) % data.NUM_CLASSES
    if np.any(targets == labels):
        raise outputs.UserError(
            "a target equals the image's true class; choose other targets."
        )
    return targets.astype(np.int64)


def attack(config: TargetedConfig, model_fn, images, targets) -> np.ndarray:
    """The configured attack, in batches."""
    adversarial = []
    for start in range(0, len(images), config.batch_size):
        x = tf.constant(images[start : start + config.batch_size])
        t = tf.constant(targets[start : start + config.batch_size])
        if config.method == "fgsm":
            x_adv = attacks.targeted_fgsm(model_fn, x, t, config.epsilon)
        else:
            x_adv = attacks.targeted_iterative(
                model_fn,
                x,
                t,
                config.epsilon,
                step_size=config.step_size,
                num_steps=config.num_steps,
                random_start=config.random_start,
                seed=config.seed + start,
            )
        adversarial.append(np.asarray(x_adv))
    return np.concatenate(adversarial)


def _summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    mean, std = noise_lib.mean_and_std(finite) if finite.size else (None, None)
    return {
        "mean": mean,
        "std": std,
        "median": float(np.median(values)),
        "max": float(np.max(values)),
    }


def run(
    config: TargetedConfig,
    *,
    classifier_dir: str,
    run_dir: str,
    data_dir: str | None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Attacks the chosen test images; writes figures and metrics.json."""
    start = time.time()
    run_dir = outputs.make_run_dir(run_dir)
    model = classify_job.load_classifier(classifier_dir)
    all_images, all_labels = data.load_arrays("test", data_dir)
    all_logits = model.predict(all_images, batch_size=256, verbose=0)
    indices = choose_images(config, all_logits.argmax(1), all_labels)
    images, labels = all_images[indices], all_labels[indices]
    logits = all_logits[indices]
    targets = choose_targets(config, logits, labels)
    log(f"{config.method}: {len(indices)} test images, eps {config.epsilon}")

    attack_start = time.perf_counter()
    adversarial = attack(config, model, images, targets)
    attack_seconds = time.perf_counter() - attack_start
    logits_after = model.predict(adversarial, batch_size=256, verbose=0)
    predicted_after = logits_after.argmax(1)
    perturbation = adversarial - images
    linf = np.asarray(attacks.linf_norm(perturbation))
    l2 = np.asarray(attacks.l2_norm(perturbation))
    psnr = noise_lib.psnr(images, adversarial).numpy()

    probabilities = tf.nn.softmax(logits).numpy()
    probabilities_after = tf.nn.softmax(logits_after).numpy()
    scale = 0.5 / max(config.epsilon, 1e-6)  # eps maps to the edge of the range
    for i in range(min(config.num_figures, len(indices))):
        figure = plots.adversarial_example(
            images[i],
            adversarial[i],
            probabilities[i],
            probabilities_after[i],
            data.CLASS_NAMES,
            int(labels[i]),
            int(targets[i]),
            scale,
            title=(
                f"test image {indices[i]}: {data.CLASS_NAMES[labels[i]]} -> target "
                f"{data.CLASS_NAMES[targets[i]]}; {config.method}, eps "
                f"{config.epsilon:g}; now {data.CLASS_NAMES[predicted_after[i]]}; "
                f"PSNR {psnr[i]:.1f} dB"
            ),
        )
        outputs.save_figure(figure, os.path.join(run_dir, f"example_{i}.png"))
    _log_tensorboard(run_dir, images, adversarial, scale, config.num_figures)

    metrics = {
        "job": "targeted",
        "classifier": os.path.abspath(classifier_dir),
        "method": config.method,
        "settings": settings(config),
        "config": dataclasses.asdict(config),
        "data_source": f"local {data_dir}" if data_dir else "tfds cifar10",
        "images": len(indices),
        "images_chosen": (
            "given indices" if config.indices else "random correctly classified"
        ),
        "clean_accuracy_on_chosen": float(np.mean(logits.argmax(1) == labels)),
        "targeted_success_rate": float(
            attacks.targeted_success_rate(predicted_after, targets)
        ),
        "untargeted_misclassification_rate": float(
            attacks.misclassification_rate(predicted_after, labels)
        ),
        "linf_norm": _summary(linf),
        "l2_norm": _summary(l2),
        "psnr_perturbed_vs_original_db": _summary(psnr),
        "perturbation_figure_scale": scale,
        "attack_seconds": attack_seconds,
        "attack_images_per_s": len(indices) / attack_seconds,
        "indices": indices.tolist(),
        "targets": targets.tolist(),
        "predicted_after": predicted_after.tolist(),
        "seconds": time.time() - start,
        "versions": outputs.library_versions(),
        "machine": outputs.machine_description(),
    }
    outputs.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    log(
        f"targeted success {100 * metrics['targeted_success_rate']:.1f}%, "
        f"misclassified {100 * metrics['untargeted_misclassification_rate']:.1f}%, "
        f"mean L2 {metrics['l2_norm']['mean']:.3f}, "
        f"PSNR {metrics['psnr_perturbed_vs_original_db']['mean']:.1f} dB"
    )
    return metrics


def _log_tensorboard(run_dir, images, adversarial, scale, count) -> None:
    count = max(1, min(count, len(images)))
    grids = np.concatenate(
        [
            images[:count],
            adversarial[:count],
            plots.magnify(adversarial[:count] - images[:count], scale),
        ],
        axis=2,
    )
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tb"))
    with writer.as_default(step=0):
        tf.summary.image("original_perturbed_perturbation", grids, max_outputs=count)
    writer.close()
