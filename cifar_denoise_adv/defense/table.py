"""The accuracy table: which rows, on which images, in which order.

Every pipeline gets the clean and noisy rows on all the images. The bare
classifier is attacked white-box on all of them, and those very adversarial
images are then passed through each defense (the oblivious rows), so the
oblivious attack costs one forward pass. Each defended pipeline is then
attacked through its own gradients (adaptive, with EOT when random) on a
prefix of the images, because every step differentiates through the
denoiser too, and finally by the gradient-free Square Attack.

The attacks and their order come from `attacks.registry` (those in the
job's --attacks). Rows are computed in registry order, in rounds: a run of
consecutive gradient attacks is computed white-box, passed on obliviously,
then computed through each defense; a gradient-free attack is run on every
pipeline. So an attack added at the end of the registry adds rows without
changing the noise draws, and so the values, of the earlier ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.defense import evaluation
from cifar_denoise_adv.defense.evaluation import GRADIENT_FREE
from cifar_denoise_adv.defense.evaluation import NONE
from cifar_denoise_adv.defense.evaluation import OBLIVIOUS
from cifar_denoise_adv.defense.evaluation import WHITE_BOX
from cifar_denoise_adv.defense.evaluation import Attack


@dataclasses.dataclass
class Examples:
    """The first few images under the reference PGD, for the example figure.

    Attributes:
      images: float32 [n, 32, 32, 3], the clean images.
      labels: int [n].
      oblivious: the PGD images computed on the bare classifier.
      adaptive: the PGD images computed through the denoised pipeline.
    """

    images: np.ndarray
    labels: np.ndarray
    oblivious: np.ndarray | None = None
    adaptive: np.ndarray | None = None


def budgets(config, spec: registry.Attack) -> list[float]:
    """The budgets `spec` is run at in the table (see `registry.Attack.budget`)."""
    return {
        registry.EPSILONS: sorted(config.epsilons),
        registry.REFERENCE: [config.reference_epsilon],
        registry.TARGETED: [config.targeted_epsilon],
        registry.UNIVERSAL_XI: [config.universal_xi],
    }[spec.budget]


def rounds(config) -> list[tuple[bool, list[Attack]]]:
    """(gradient-free?, attacks) in registry order; see the module docstring."""
    found = []
    for spec in registry.ATTACKS:
        if spec.name not in config.attacks:
            continue
        attacks = [Attack(spec.name, eps) for eps in budgets(config, spec)]
        free = not spec.uses_gradients
        if found and not free and not found[-1][0]:
            found[-1][1].extend(attacks)
        else:
            found.append((free, attacks))
    return found


def attack_list(config) -> list[Attack]:
    """The gradient attacks of every threat model, in table order."""
    return [attack for free, group in rounds(config) if not free for attack in group]


def adaptive_count(config, pipeline: evaluation.Pipeline, total: int) -> int:
    """Images of the pipeline's own-gradient rows: a prefix of the `total`."""
    if pipeline.denoiser is None:
        return total
    wanted = config.eot_images if pipeline.random else config.adaptive_images
    return min(wanted or total, total)


def clamped(config, pipelines, test: int, train: int) -> list[str]:
    """One line per count larger than the images there are to use."""
    lines = []
    for flag, wanted, found, split in (
        ("num_images", config.num_images, test, "test"),
        ("universal_train_images", config.universal_train_images, train, "training"),
    ):
        if wanted > found:
            lines.append(
                f"--{flag}={wanted}: the data has only {found} {split} images; all "
                f"{found} are used"
            )
    for flag, random in (("adaptive_images", False), ("eot_images", True)):
        wanted = getattr(config, flag)
        if wanted > test and any(p.random == random and p.denoiser for p in pipelines):
            lines.append(
                f"--{flag}={wanted}: more than the {test} test images used; the "
                f"rows it counts run on all {test}"
            )
    counts = {p.name: adaptive_count(config, p, test) for p in pipelines}
    fewer = {name: n for name, n in counts.items() if n < config.square_images}
    if fewer:
        lines.append(
            f"--square_images={config.square_images}: a pipeline's gradient-free "
            "rows run on at most the images of its adaptive rows: "
            + ", ".join(f"{name} {n}" for name, n in fewer.items())
        )
    return lines


def random_targets(labels: np.ndarray, seed: int, num_classes: int = 10):
    """One target class per image, never its true class (seeded)."""
    offsets = np.random.default_rng(seed + 1).integers(1, num_classes, len(labels))
    return ((labels + offsets) % num_classes).astype(np.int64)


def describe(row: dict) -> str:
    """One log line for a row of the table."""
    attack = evaluation.ATTACK_NAMES[row["attack"]]
    if row["attack"] == "noisy":
        budget = f" sigma {row['epsilon']:.3g}"
    elif row["attack"] != "clean":
        budget = f" {row['epsilon_times_255']:.3g}/255"
    else:
        budget = ""
    success = (
        f", target reached {100 * row['targeted_success']:.1f}%"
        if "targeted_success" in row
        else ""
    )
    draws = f" x {row['draws']} draws" if row["draws"] > 1 else ""
    return (
        f"{row['pipeline']} / {row['threat_model']}: {attack}{budget}: accuracy "
        f"{100 * row['accuracy']:.1f}%{success} ({row['images']} images{draws}, "
        f"{row['seconds']:.1f} s)"
    )


def evaluate(config, pipelines, images, labels, train_images, noisy_sigma, log):
    """Every row of the table; see the module docstring for the order.

    Args:
      config: the job's `DefendConfig`.
      pipelines: the bare classifier's `Pipeline` first, then the defended ones.
      images: float32 [N, 32, 32, 3] test images.
      labels: int [N] their classes.
      train_images: the images universal perturbations are computed on.
      noisy_sigma: sigma of the noisy row.
      log: receives one line per row.

    Returns:
      (Results, Examples).
    """
    results = evaluation.Results()
    attacker = evaluation.Attacker(config, train_images)
    targets = random_targets(labels, config.seed)
    bare, defended = pipelines[0], pipelines[1:]
    reference = Attack("pgd", config.reference_epsilon)
    count = min(
        config.num_examples,
        *(adaptive_count(config, p, len(images)) for p in pipelines),
    )
    examples = Examples(images[:count], labels[:count])

    def record(pipeline, threat, attack, adversarial, seconds):
        predicted, evaluate_seconds = evaluation.timed(
            evaluation.predictions,
            pipeline,
            adversarial,
            config.eval_draws,
            config.batch_size,
        )
        row = results.add(
            pipeline.name,
            threat,
            attack,
            predicted,
            labels,
            targets,
            (seconds[0] + evaluate_seconds[0], seconds[1] + evaluate_seconds[1]),
        )
        log(describe(row))

    noisy = evaluation.noisy_images(images, noisy_sigma, config.seed)
    for pipeline in pipelines:
        record(pipeline, NONE, Attack("clean"), images, (0.0, 0.0))
        record(pipeline, NONE, Attack("noisy", noisy_sigma), noisy, (0.0, 0.0))
    context = (attacker, bare, defended, images, labels, targets, examples)
    for free, group in rounds(config):
        if free:
            _gradient_free_rows(config, group, pipelines, context, record)
        else:
            _gradient_rows(config, group, context, record, reference, count)
    results.perturbations = attacker.perturbations
    return results, examples


def _gradient_rows(config, group, context, record, reference, count) -> None:
    """White-box rows, their oblivious rows, then each defense's own rows."""
    attacker, bare, defended, images, labels, targets, examples = context
    for attack in group:
        adversarial, seconds = evaluation.timed(
            attacker.run, attack, bare.model, images, labels, targets, tag="bare"
        )
        record(bare, WHITE_BOX, attack, adversarial, seconds)
        for pipeline in defended:
            record(pipeline, OBLIVIOUS, attack, adversarial, (0.0, 0.0))
        if attack == reference:
            examples.oblivious = adversarial[:count]
    for pipeline in defended:
        n = adaptive_count(config, pipeline, len(images))
        draws = config.eot_draws if pipeline.random else 1
        for attack in group:
            # A universal perturbation costs the same whatever it is applied
            # to: apply it to every image.
            universal = registry.get(attack.name).kind == registry.UNIVERSAL
            m = len(images) if universal else n
            adversarial, seconds = evaluation.timed(
                attacker.run,
                attack,
                pipeline.model,
                images[:m],
                labels[:m],
                targets[:m],
                draws,
                tag=pipeline.name,
            )
            record(pipeline, pipeline.adaptive_threat, attack, adversarial, seconds)
            if attack == reference and not pipeline.random:
                examples.adaptive = adversarial[:count]


def _gradient_free_rows(config, group, pipelines, context, record) -> None:
    """Each gradient-free attack on every pipeline, on its adaptive prefix."""
    attacker, _, _, images, labels, targets, _ = context
    for attack in group:
        for pipeline in pipelines:
            n = min(config.square_images, adaptive_count(config, pipeline, len(images)))
            adversarial, seconds = evaluation.timed(
                attacker.run,
                attack,
                pipeline.model,
                images[:n],
                labels[:n],
                targets[:n],
            )
            record(pipeline, GRADIENT_FREE, attack, adversarial, seconds)
