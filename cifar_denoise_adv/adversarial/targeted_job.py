"""The targeted job: barely perceptible perturbations towards chosen classes.

`run(config)` is what the `targeted` app and the study call: it picks test
images and target classes, attacks a `classify` run's model with targeted
FGSM or its iterative version, and measures and shows the result.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.adversarial import figures
from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import metrics
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

# The registry's targeted per-image attacks, by their --attack value.
ATTACKS = registry.options(registry.PER_IMAGE, targeted=True)
# The settings of this app an attack may read (`registry.Params` fields).
STEP_SETTINGS = ("step_size", "num_steps", "random_start")
TARGET_MODES = ("random", "least_likely", "given")


@dataclasses.dataclass(frozen=True)
class TargetedConfig(classifier.AttackConfig):
    """The attack and the choice of images and targets (the app's flags)."""

    attack: str = setting(
        "fgsm",
        "The targeted attack: "
        + "; ".join(f"{key}: {spec.description}" for key, spec in ATTACKS.items())
        + ".",
        choices=tuple(ATTACKS),
    )
    epsilon: float = setting(
        0.02, "L-inf budget.", unit=config_lib.PIXEL, low=0.0, low_open=True
    )
    step_size: float = setting(
        0.005, "Iterative: step size.", unit=config_lib.PIXEL, low=0.0, low_open=True
    )
    num_steps: int = setting(
        10, "Iterative: steps; apgd_dlr: iterations (gradients per image).", low=1
    )
    random_start: bool = setting(
        False, "Iterative: start at a random point of the ball."
    )
    indices: tuple[int, ...] = setting(
        (), "Test image indices to attack (default: random correct ones).", low=0
    )
    num_images: int = setting(
        400, "Random correctly classified test images to attack.", low=1
    )
    target_mode: str = setting(
        "random", "How targets are chosen.", choices=TARGET_MODES
    )
    targets: tuple[int, ...] = setting(
        (),
        "With --target_mode=given: one class id, or one per image.",
        low=0,
        high=data.NUM_CLASSES - 1,
    )

    def validate(self):
        if self.target_mode == "given" and not self.targets:
            raise UserError("--target_mode=given needs --targets (class ids).")
        # Targets that would silently be replaced by others: refused.
        if self.targets and self.target_mode != "given":
            raise UserError(
                f"--targets: used only with --target_mode=given, not "
                f"--target_mode={self.target_mode}; add --target_mode=given or "
                "drop --targets."
            )

    def ignored(self) -> dict[str, str]:
        found = super().ignored()  # the "Iterative:" settings under --attack=fgsm
        if self.indices:
            found["num_images"] = "--indices names the images to attack"
        return found


def settings(config: TargetedConfig) -> dict:
    """The attack's settings as recorded in metrics.json."""
    spec = ATTACKS[config.attack]
    return {
        "norm": spec.norm,
        "epsilon": config.epsilon,
        "algorithm": spec.algorithm,
        **{name: getattr(config, name) for name in STEP_SETTINGS if name in spec.reads},
    }


def choose_images(
    config: TargetedConfig, predicted: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Test indices to attack: the given ones, or random correct ones."""
    if config.indices:
        indices = np.asarray(config.indices)
        bad = indices[(indices < 0) | (indices >= len(labels))]
        if bad.size:
            raise UserError(
                f"--indices: {bad.tolist()} outside the {len(labels)} test images."
            )
        return indices
    correct = np.flatnonzero(predicted == labels)
    if not correct.size:
        raise UserError("the classifier gets no test image right.")
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
            raise UserError(
                f"--targets: {targets.size} classes for {len(labels)} images; give "
                "one for all, or one per image."
            )
    elif config.target_mode == "least_likely":
        # The least likely class other than the true one (a misclassified
        # image's least likely class can be its own).
        masked = np.array(logits, np.float64)
        masked[np.arange(len(labels)), labels] = np.inf
        targets = masked.argmin(axis=1)
    else:
        rng = np.random.default_rng(config.seed + 1)
        offsets = rng.integers(1, data.NUM_CLASSES, size=len(labels))
        targets = (labels + offsets) % data.NUM_CLASSES
    if np.any(targets == labels):
        raise UserError("a target equals the image's true class; choose other targets.")
    return targets.astype(np.int64)


def attack(config: TargetedConfig, model_fn, images, targets) -> np.ndarray:
    """The configured attack (`registry`), in batches."""
    spec = ATTACKS[config.attack]
    adversarial = []
    for start in range(0, len(images), config.batch_size):
        x = tf.constant(images[start : start + config.batch_size])
        t = tf.constant(targets[start : start + config.batch_size])
        params = registry.Params(
            step_size=config.step_size,
            num_steps=config.num_steps,
            random_start=config.random_start,
            seed=config.seed + start,
        )
        adversarial.append(
            np.asarray(spec.call(model_fn, x, t, config.epsilon, params))
        )
    return np.concatenate(adversarial)


def _summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    mean, std = metrics.mean_and_std(finite) if finite.size else (None, None)
    return {
        "mean": mean,
        "std": std,
        "median": float(np.median(values)),
        "max": float(np.max(values)),
    }


def run(config: TargetedConfig, log=lambda message: None) -> dict:
    """Attacks the chosen test images; writes figures, tb/ and metrics.json.

    The classifier, the data, the images and the targets are read and
    checked before anything in run_dir changes (`runs.claim`). tb/ holds
    the rates and the mean PSNR as scalars and the examples as original |
    perturbed | perturbation grids; a line (and metrics.json's "warnings")
    says when the classifier is right on fewer than half of the images.

    Returns:
      The record written to metrics.json.
    """
    start = time.time()
    config = config_lib.resolve(config)
    with runs.claim(config, "targeted", log) as held:
        model, tta, used = classifier.load_attacked(config, log)
        chosen = _choose(config, model, log)
        held.begin()
        return _attack_and_record(config, model, (tta, used), chosen, start, log)


def _choose(config: TargetedConfig, model, log) -> dict:
    """The test images to attack, their targets, and the clean accuracy."""
    all_images, all_labels = data.load_arrays("test", config.data_dir or None)
    all_logits = model.predict(all_images, batch_size=256, verbose=0)
    indices = choose_images(config, all_logits.argmax(1), all_labels)
    images, labels, logits = (
        all_images[indices],
        all_labels[indices],
        all_logits[indices],
    )
    targets = choose_targets(config, logits, labels)
    log(f"{config.attack}: {len(indices)} test images, eps {config.epsilon}")
    accuracy = {
        "chosen": float(np.mean(logits.argmax(1) == labels)),
        "all_test": float(np.mean(all_logits.argmax(1) == all_labels)),
    }
    warnings = _clamped(config, len(indices), len(all_labels))
    warnings += classifier.weak_classifier_warnings(
        {
            "test images attacked": (accuracy["chosen"], len(labels)),
            "test images": (accuracy["all_test"], len(all_labels)),
        }
    )
    for warning in warnings:
        log(f"warning: {warning}")
    return {
        "indices": indices,
        "images": images,
        "labels": labels,
        "logits": logits,
        "targets": targets,
        "accuracy": accuracy,
        "warnings": warnings,
    }


def _clamped(config: TargetedConfig, chosen: int, available: int) -> list[str]:
    """The line that says why fewer than --num_images images are attacked."""
    if config.indices or chosen >= config.num_images:
        return []
    return [
        f"--num_images={config.num_images}: only {chosen} of the {available} test "
        "images are classified correctly (the only ones a targeted attack is "
        f"measured on), so {chosen} are attacked"
    ]


def _attack_and_record(config, model, loaded, chosen, start, log) -> dict:
    """Runs the attack, then writes tb/, the figures and the record."""
    tta, used = loaded  # the classifier's TTA levels and precision
    indices, images, labels = chosen["indices"], chosen["images"], chosen["labels"]
    targets, accuracy = chosen["targets"], chosen["accuracy"]
    attack_start = time.perf_counter()
    adversarial = attack(config, model, images, targets)
    attack_seconds = time.perf_counter() - attack_start
    logits_after = model.predict(adversarial, batch_size=256, verbose=0)
    measured = _measure(images, adversarial, labels, targets, logits_after)
    rates = ("targeted_success_rate", "untargeted_misclassification_rate")
    summaries.write(
        summaries.log_dir(config.run_dir),
        scalars={
            **{name: measured[name] for name in rates},
            "mean_psnr_perturbed_vs_original_db": measured[
                "psnr_perturbed_vs_original_db"
            ]["mean"],
        },
    )
    _figures(
        config,
        indices,
        images,
        adversarial,
        labels,
        targets,
        chosen["logits"],
        logits_after,
    )
    record = outputs.write_record(
        config,
        "targeted",
        {
            "classifier": config.classifier,
            "classifier_tta": tta,
            "precision": used.record(),
            "method": config.attack,
            "settings": settings(config),
            "images": len(indices),
            "images_chosen": (
                "given indices" if config.indices else "random correctly classified"
            ),
            "clean_accuracy_on_chosen": accuracy["chosen"],
            "clean_accuracy_all_test": accuracy["all_test"],
            "warnings": chosen["warnings"],
            **measured,
            "perturbation_figure_scale": _scale(config),
            "attack_seconds": attack_seconds,
            "attack_images_per_s": len(indices) / attack_seconds,
            "indices": indices.tolist(),
            "targets": targets.tolist(),
            "predicted_after": logits_after.argmax(1).tolist(),
        },
        start,
    )
    log(
        f"targeted success {100 * record['targeted_success_rate']:.1f}%, "
        f"misclassified {100 * record['untargeted_misclassification_rate']:.1f}%, "
        f"mean L2 {record['l2_norm']['mean']:.3f}, "
        f"PSNR {record['psnr_perturbed_vs_original_db']['mean']:.1f} dB"
    )
    return record


def _scale(config: TargetedConfig) -> float:
    """The perturbation figures' magnification: eps maps to the range's edge."""
    return 0.5 / config.epsilon


def _measure(images, adversarial, labels, targets, logits_after) -> dict:
    predicted = logits_after.argmax(1)
    perturbation = adversarial - images
    return {
        "targeted_success_rate": attacks.targeted_success_rate(predicted, targets),
        "untargeted_misclassification_rate": attacks.misclassification_rate(
            predicted, labels
        ),
        "linf_norm": _summary(np.asarray(attacks.linf_norm(perturbation))),
        "l2_norm": _summary(np.asarray(attacks.l2_norm(perturbation))),
        "psnr_perturbed_vs_original_db": _summary(
            metrics.psnr(images, adversarial).numpy()
        ),
    }


def _figures(config, indices, images, adversarial, labels, targets, logits, after):
    names = data.CLASS_NAMES
    probabilities = tf.nn.softmax(logits).numpy()
    probabilities_after = tf.nn.softmax(after).numpy()
    psnr = metrics.psnr(images, adversarial).numpy()
    count = min(config.num_examples, len(indices))
    for i in range(count):
        figure = figures.adversarial_example(
            images[i],
            adversarial[i],
            probabilities[i],
            probabilities_after[i],
            names,
            int(labels[i]),
            int(targets[i]),
            _scale(config),
            title=(
                f"test image {indices[i]}: {names[labels[i]]} -> target "
                f"{names[targets[i]]}; {config.attack}, eps {config.epsilon:g}; now "
                f"{names[after[i].argmax()]}; PSNR {psnr[i]:.1f} dB"
            ),
        )
        outputs.save_figure(figure, os.path.join(config.run_dir, f"example_{i}.png"))
    perturbation = plots.magnify(adversarial[:count] - images[:count], _scale(config))
    summaries.write(
        summaries.log_dir(config.run_dir),
        images={
            "original_perturbed_perturbation": summaries.side_by_side(
                images[:count], adversarial[:count], perturbation
            )
        },
    )
