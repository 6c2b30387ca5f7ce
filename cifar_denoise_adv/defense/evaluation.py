"""Attacking the classifier and the defended pipelines, one threat model at a time.

Every row of the accuracy table is one (pipeline, threat model, attack,
budget) on a prefix of the same test images, kept per image so that any two
rows can be compared on the images they share (`Results.common`).

Threat models (`THREAT_MODELS`): the bare classifier is attacked white-box;
a defended pipeline is attacked *obliviously* (the classifier's own
adversarial images, passed through the defense), *adaptively* (gradients
through the whole pipeline), with *EOT* when the pipeline is random
(gradients averaged over noise draws), and *gradient-free* (random search on
its outputs only).
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.denoising import noise

NONE = "none"
WHITE_BOX = "white-box"
OBLIVIOUS = "oblivious"
ADAPTIVE = "adaptive"
EOT = "adaptive+EOT"
GRADIENT_FREE = "gradient-free"
THREAT_MODELS = {
    NONE: "no attack: clean images, or Gaussian noise at the denoiser's sigma",
    WHITE_BOX: "the bare classifier attacked with its own gradients",
    OBLIVIOUS: "the attacks computed on the bare classifier, then passed through "
    "the defense: an attacker who does not know the denoiser is there",
    ADAPTIVE: "the attacks computed through the whole pipeline with its real "
    "gradients (one GradientTape over denoiser and classifier)",
    EOT: "as adaptive, on the randomised pipeline: each step's gradient is the "
    "mean over several noise draws (expectation over transformation, Athalye et "
    "al. 2018); accuracy is averaged over draws",
    GRADIENT_FREE: "Square Attack (random search, Andriushchenko et al. 2020) "
    "querying the pipeline's outputs only: it does not need gradients, so it "
    "finds what broken or masked gradients hide",
}
# The rows' names in log lines and metrics.json: the two without an
# attack, then every registered attack (`attacks.registry`).
ATTACK_NAMES = {
    "clean": "clean images",
    "noisy": "Gaussian noise (not an attack)",
    **{attack.name: attack.description for attack in registry.ATTACKS},
}


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A model under evaluation.

    Attributes:
      name: "classifier" (bare), "denoised" or "randomised".
      model: images [B, 32, 32, 3] in [0, 1] -> logits; draws fresh noise at
        every call when `random`.
      random: whether calls differ (noise before the denoiser).
      denoiser: the denoiser inside (None for the bare classifier).
    """

    name: str
    model: keras.Model
    random: bool = False
    denoiser: keras.Model | None = None

    @property
    def adaptive_threat(self) -> str:
        """The label of attacks computed through this pipeline's gradients."""
        if self.denoiser is None:
            return WHITE_BOX
        return EOT if self.random else ADAPTIVE


@dataclasses.dataclass(frozen=True)
class Attack:
    """One attack at one budget (epsilon; sigma for the noisy row)."""

    name: str
    epsilon: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.name}@{self.epsilon * 255:.4g}"


def predictions(pipeline: Pipeline, images, draws: int, batch_size: int):
    """Int [draws, N]: the pipeline's predictions, one row per noise draw."""
    count = draws if pipeline.random else 1
    return np.stack(
        [
            np.asarray(attacks.predict_labels(pipeline.model, images, batch_size))
            for _ in range(count)
        ]
    )


class Results:
    """The rows of the table, and each row's per-image outcomes."""

    def __init__(self):
        self.rows: list[dict] = []
        self.per_image: dict[str, np.ndarray] = {}
        self.perturbations: dict[str, np.ndarray] = {}  # universal v per tag

    @staticmethod
    def key(pipeline: str, threat: str, attack: Attack, what: str = "correct"):
        return f"{pipeline}|{threat}|{attack.key}|{what}"

    def add(self, pipeline, threat, attack, predicted, labels, targets, seconds):
        """Records one row from predictions [draws, n] on the first n images.

        `seconds` is (wall-clock, CPU) of the row's attack and evaluation.
        """
        labels = labels[: predicted.shape[1]]
        correct = np.mean(predicted == labels, axis=0)
        row = {
            "pipeline": pipeline,
            "threat_model": threat,
            "attack": attack.name,
            "epsilon": attack.epsilon,
            "epsilon_times_255": attack.epsilon * 255,
            "images": int(predicted.shape[1]),
            "draws": int(predicted.shape[0]),
            "accuracy": float(np.mean(correct)),
            "seconds": seconds[0],
            "cpu_seconds": seconds[1],
        }
        self.per_image[self.key(pipeline, threat, attack)] = correct
        if is_targeted(attack.name):
            success = np.mean(predicted == targets[: predicted.shape[1]], axis=0)
            row["targeted_success"] = float(np.mean(success))
            self.per_image[self.key(pipeline, threat, attack, "success")] = success
        self.rows.append(row)
        return row

    def find(self, pipeline: str, threat: str, attack: Attack) -> dict | None:
        """The row of (pipeline, threat, attack), or None."""
        for row in self.rows:
            if (row["pipeline"], row["threat_model"], row["attack"]) == (
                pipeline,
                threat,
                attack.name,
            ) and np.isclose(row["epsilon"], attack.epsilon):
                return row
        return None

    def common(self, first: tuple, second: tuple, what: str = "correct"):
        """Two rows' per-image outcomes on the images both have (a prefix).

        Args:
          first: (pipeline, threat, Attack) of one row.
          second: (pipeline, threat, Attack) of the other.
          what: "correct" (accuracy) or "success" (targeted success).

        Returns:
          (values of first, values of second), float arrays of equal length,
          or None when either row is missing.
        """
        a = self.per_image.get(self.key(*first, what))
        b = self.per_image.get(self.key(*second, what))
        if a is None or b is None:
            return None
        n = min(len(a), len(b))
        return a[:n], b[:n]


class Attacker:
    """Runs an `Attack` against a model, in batches, with the job's settings.

    Args:
      settings: the job's config (a `DefendConfig`): budgets, steps, draws,
        batch size, seed.
      train_images: float32 [M, 32, 32, 3], the images universal
        perturbations are computed on.
    """

    def __init__(self, settings, train_images: np.ndarray):
        self.settings = settings
        self.train_images = train_images
        self.perturbations: dict[str, np.ndarray] = {}

    def run(self, attack, model, images, labels, targets, num_draws=1, tag=""):
        """Adversarial images for `attack` against `model` (float32 [n, ...])."""
        s = self.settings
        spec = registry.get(attack.name)
        if spec.kind == registry.UNIVERSAL:
            params = self.params(spec, attack.epsilon, num_draws, s.seed)
            result = spec.call(model, self.train_images, None, attack.epsilon, params)
            v = np.asarray(result.perturbation)
            # per_image.npz keeps the sgd perturbation's key of earlier runs.
            self.perturbations[
                tag if spec.name == "universal" else f"{tag}|{spec.name}"
            ] = v
            return np.clip(images + v, 0.0, 1.0)
        # A targeted attack is given the targets, an untargeted one the labels.
        goals = targets if spec.targeted else labels
        pieces = []
        for start in range(0, len(images), s.batch_size):
            part = slice(start, start + s.batch_size)
            params = self.params(spec, attack.epsilon, num_draws, s.seed + start)
            pieces.append(
                np.asarray(
                    spec.call(model, images[part], goals[part], attack.epsilon, params)
                )
            )
        return np.concatenate(pieces)

    def params(self, spec, epsilon: float, num_draws: int, seed: int):
        """The job's numbers for `spec` at `epsilon` (by its budget)."""
        s = self.settings
        if spec.budget == registry.TARGETED:
            return registry.Params(
                step_size=s.targeted_step_size,
                num_steps=s.targeted_steps,
                seed=seed,
                num_draws=num_draws,
            )
        if spec.budget == registry.UNIVERSAL_XI:
            return registry.Params(
                p=np.inf,
                step_size=s.universal_step_size,
                final_step_size=s.universal_final_step_size,
                num_epochs=s.universal_epochs,
                batch_size=s.universal_batch_size,
                seed=seed,
                num_draws=num_draws,
            )
        # Untargeted per-image attacks share PGD's gradients per image.
        return registry.Params(
            step_size=s.pgd_step_factor * epsilon / s.pgd_steps,
            num_steps=s.pgd_steps,
            seed=seed,
            num_draws=num_draws,
            num_queries=s.square_queries,
        )


def is_targeted(name: str) -> bool:
    """Whether the row `name` is a targeted attack (its rows record success)."""
    return name in registry.BY_NAME and registry.BY_NAME[name].targeted


def noisy_images(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """clip(x + N(0, sigma^2), 0, 1), the denoiser's noise, fixed by `seed`."""
    seed = tf.constant([seed, 2], tf.int64)
    return np.asarray(noise.add_gaussian_noise(images, sigma, seed))


def timed(function, *args, **kwargs):
    """(function's result, (wall-clock seconds, CPU seconds of this process)).

    CPU seconds count every thread's work, so they barely change when other
    jobs share the machine; wall-clock seconds do.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, (time.perf_counter() - wall, time.process_time() - cpu)
