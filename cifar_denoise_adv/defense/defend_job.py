"""The defend job: the trained denoiser in front of the classifier, attacked.

`run(config)` is what the `defend` app and the study call. It builds
defended(x) = classifier(clip(denoiser(x), 0, 1)) from a `classify` run and a
`denoise` run (and, unless --norandomised, the randomised version with
Gaussian noise first), exports it, fills the accuracy table under each threat model
(`table.evaluate`), runs the sanity checks (`checks`), and writes the run
folder.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from cifar_denoise_adv.adversarial import classifier as classifier_lib
from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.adversarial.targeted_job import TargetedConfig
from cifar_denoise_adv.adversarial.universal_job import UniversalConfig
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.defense import checks
from cifar_denoise_adv.defense import evaluation
from cifar_denoise_adv.defense import figures
from cifar_denoise_adv.defense import loading
from cifar_denoise_adv.defense import pipeline as pipeline_lib
from cifar_denoise_adv.defense import table

PIXEL = config_lib.PIXEL
PER_IMAGE_FILE = "per_image.npz"


@dataclasses.dataclass(frozen=True)
class DefendConfig(config_lib.RunConfig):
    """The two runs, the images, and every attack's budget (the app's flags)."""

    classifier: str = setting(
        "", "Run folder of a classify run (or its model.keras).", path=True
    )
    denoiser: str = setting(
        "", "Run folder of a denoise run (or its model.keras).", path=True
    )
    num_images: int = setting(
        500, "The first N test images; every row is on them or a prefix.", low=1
    )
    adaptive_images: int = setting(
        0, "Adaptive rows of the denoised pipeline: the first N (0: all).", low=0
    )
    eot_images: int = setting(
        0, "Adaptive+EOT rows of the randomised pipeline: the first N (0: all).", low=0
    )
    attacks: tuple[str, ...] = setting(
        registry.defense_table_default(),
        "The attacks of the table (attacks.registry): "
        + "; ".join(f"{a.name}: {a.description}" for a in registry.ATTACKS)
        + ". pgd is required (the checks, the examples and the report use it).",
        choices=registry.NAMES,
    )
    epsilons: tuple[float, ...] = setting(
        (2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255),
        "L-inf budgets of the untargeted FGSM and PGD.",
        unit=PIXEL,
        low=0,
        low_open=True,
    )
    reference_epsilon: float = setting(
        8 / 255,
        "Budget of the gradient-free check and the examples (one of --epsilons).",
        unit=PIXEL,
        low=0,
        low_open=True,
    )
    pgd_steps: int = setting(20, "PGD steps (random start).", low=1)
    pgd_step_factor: float = setting(
        2.5,
        "PGD step size = factor x eps / steps (Madry et al.).",
        low=0,
        low_open=True,
    )
    randomised: bool = setting(
        True, "Also evaluate the randomised defense: Gaussian noise, then denoiser."
    )
    randomised_sigma: float | None = setting(
        None,
        "Noise sigma of the randomised defense; unset: the denoiser's sigma.",
        unit=PIXEL,
        low=0,
        low_open=True,
    )
    noisy_sigma: float | None = setting(
        None,
        "Sigma of the noisy-images row; unset: the denoiser's sigma.",
        unit=PIXEL,
        low=0,
        low_open=True,
    )
    eot_draws: int = setting(
        8, "Adaptive+EOT: noise draws whose gradients each step averages.", low=1
    )
    eval_draws: int = setting(
        8, "Randomised pipeline: noise draws each accuracy is averaged over.", low=1
    )
    # The targeted and universal rows run the targeted and universal apps'
    # attacks: their settings (help, range, unit, default) are those apps';
    # where defend's default differs, it is named (flags/universal.cfg's
    # recipe, and smaller sgd batches for the few training images used).
    targeted_epsilon: float = config_lib.derived(
        TargetedConfig, "epsilon", "Targeted rows"
    )
    targeted_steps: int = config_lib.derived(
        TargetedConfig, "num_steps", "Targeted rows"
    )
    targeted_step_size: float = config_lib.derived(
        TargetedConfig, "step_size", "Targeted rows"
    )
    universal_xi: float = config_lib.derived(
        UniversalConfig, "xi", "Universal row, L-inf", unit=PIXEL
    )
    universal_train_images: int = config_lib.derived(
        UniversalConfig,
        "max_train_images",
        "Universal row",
        help="Universal row: v is computed on the first N training images.",
        low=1,
    )
    universal_epochs: int = config_lib.derived(
        UniversalConfig, "sgd_epochs", "Universal row"
    )
    universal_batch_size: int = config_lib.derived(
        UniversalConfig, "batch_size", "Universal row", default=32
    )
    universal_step_size: float = config_lib.derived(
        UniversalConfig, "sgd_step_size", "Universal row", default=0.004, unit=PIXEL
    )
    universal_final_step_size: float | None = config_lib.derived(
        UniversalConfig,
        "sgd_final_step_size",
        "Universal row",
        default=0.0002,
        unit=PIXEL,
    )
    square_queries: int = setting(
        300, "Gradient-free check: Square Attack queries per image.", low=1
    )
    square_images: int = setting(
        100, "Gradient-free check: the first N images of the adaptive rows.", low=1
    )
    classifier_tta: int | None = classifier_lib.classifier_tta_setting()
    precision: str = setting(
        "auto",
        "Compute precision of the classifier and the denoiser (gradients are "
        "taken in float32 on the float32 input either way). auto (the "
        "default): each at the precision it was trained at where this machine "
        "computes it natively, else float32; float32, mixed_bfloat16 or "
        "mixed_float16 re-create both under that Keras policy; one this "
        "machine would only emulate is refused.",
        choices=loading.PRECISIONS,
    )
    batch_size: int = setting(100, "Images per attack batch.", low=1)
    num_examples: int = setting(
        6, "Rows of the example figure.", low=1, defines_result=False
    )

    def validate(self):
        if "pgd" not in self.attacks:
            raise UserError(
                f"--attacks={','.join(self.attacks)}: expected pgd among them (the "
                "sanity checks, the examples and the report compare with PGD)."
            )
        if not any(np.isclose(self.reference_epsilon, e) for e in self.epsilons):
            raise UserError(
                f"--reference_epsilon={self.reference_epsilon:g}: expected one of "
                "--epsilons (the gradient-free check is compared with PGD there)."
            )
        final = self.universal_final_step_size
        if final is not None and final > self.universal_step_size:
            raise UserError(
                f"--universal_final_step_size={final:g}: expected <= "
                f"--universal_step_size={self.universal_step_size:g}."
            )

    def ignored(self) -> dict[str, str]:
        if self.randomised:
            return {}
        why = "--norandomised leaves the randomised defense out"
        names = ("randomised_sigma", "eot_images", "eot_draws", "eval_draws")
        return {name: why for name in names}


def _sigmas(config: DefendConfig) -> dict:
    """The noisy row's and the randomised defense's sigma (0: none)."""
    trained = loading.denoiser_sigma(config.denoiser)
    found = {}
    for name, given in (
        ("noisy", config.noisy_sigma),
        ("randomised", config.randomised_sigma),
    ):
        if name == "randomised" and not config.randomised:
            found[name] = 0.0
        elif given is not None:
            found[name] = given
        elif trained is None:
            raise UserError(
                f"--{name}_sigma: not given, and --denoiser={config.denoiser} has "
                "no metrics.json with the sigma it was trained at; give it."
            )
        else:
            found[name] = trained
    return found


def _pipelines(config, classifier, denoiser, sigmas) -> list[evaluation.Pipeline]:
    found = [evaluation.Pipeline("classifier", classifier)]
    found.append(
        evaluation.Pipeline(
            "denoised",
            pipeline_lib.build_defended(denoiser, classifier),
            False,
            denoiser,
        )
    )
    if sigmas["randomised"] > 0:
        model = pipeline_lib.build_defended(
            denoiser, classifier, sigmas["randomised"], seed=config.seed
        )
        found.append(evaluation.Pipeline("randomised", model, True, denoiser))
    return found


def run(config: DefendConfig, log=lambda message: None) -> dict:
    """Evaluates the defense; writes the table, checks, figures and the models.

    The two runs, the sigmas and the data are read and checked before
    anything in run_dir changes (`runs.claim`). Writes into run_dir:
    metrics.json, flags.cfg, accuracy_vs_eps.png, examples.png,
    per_image.npz, tb/, model.keras and saved_model/ (the denoised
    pipeline), and randomised.keras and randomised_saved_model/ when the
    randomised defense is on.

    Returns:
      The record written to metrics.json.
    """
    start = time.time()
    config = config_lib.resolve(config)
    with runs.claim(config, "defend", log) as held:
        keras.utils.set_random_seed(config.seed)
        classifier, tta = classifier_lib.with_tta_level(
            loading.load_checked(config.classifier, "classifier", log),
            config.classifier_tta,
        )
        denoiser = loading.load_checked(config.denoiser, "denoiser")
        (classifier, denoiser), used = loading.in_precision(
            config.precision, (classifier, denoiser), log
        )
        sigmas = _sigmas(config)
        data_dir = config.data_dir or None
        images, labels = data.load_arrays("test", data_dir, config.num_images)
        train_images, _ = data.load_arrays(
            "train", data_dir, config.universal_train_images
        )
        pipelines = _pipelines(config, classifier, denoiser, sigmas)
        held.begin()
        return _evaluate(
            config,
            pipelines,
            (images, labels, train_images),
            sigmas,
            {**tta, "precision": used},
            start,
            log,
        )


def _evaluate(config, pipelines, arrays, sigmas, tta, start, log) -> dict:
    """Exports the pipelines, attacks them, checks, draws and records."""
    images, labels, train_images = arrays
    tta = dict(tta)
    used = tta.pop("precision")
    log(
        f"defend: {len(images)} test images, pipelines "
        f"{', '.join(p.name for p in pipelines)}; noisy sigma {sigmas['noisy']:g}; "
        f"classifier test-time augmentation level {tta['used']} (exported: "
        f"{tta['exported']})"
    )
    clamped = table.clamped(config, pipelines, len(images), len(train_images))
    for line in clamped:
        log(f"warning: {line}")
    exported = _export(config, pipelines, images[:8])
    (results, examples), (evaluate_seconds, cpu_seconds) = evaluation.timed(
        table.evaluate,
        config,
        pipelines,
        images,
        labels,
        train_images,
        sigmas["noisy"],
        log,
    )
    sanity = checks.run_all(results, pipelines, config)
    clean = results.find("classifier", evaluation.NONE, evaluation.Attack("clean"))
    weak = classifier_lib.weak_classifier_warnings(
        {"test images": (clean["accuracy"], clean["images"])}
    )
    figures.write_all(config, results, pipelines, examples)
    _write_per_image(config, results)
    record = outputs.write_record(
        config,
        "defend",
        {
            "classifier": config.classifier,
            "classifier_metrics_sha256": loading.run_digest(config.classifier),
            "classifier_tta": tta,
            "precision": used,
            "denoiser": config.denoiser,
            "denoiser_metrics_sha256": loading.run_digest(config.denoiser),
            "pipelines": {p.name: _describe(p, sigmas, tta) for p in pipelines},
            "images": {"test": len(images), "universal_train": len(train_images)},
            "row_images": "each row's 'images' are the first N of the test images",
            "noisy_sigma": sigmas["noisy"],
            "randomised_sigma": sigmas["randomised"] or None,
            "threat_models": evaluation.THREAT_MODELS,
            "attacks": {
                name: evaluation.ATTACK_NAMES[name]
                for name in ("clean", "noisy", *config.attacks)
            },
            "rows": results.rows,
            "checks": sanity,
            "trustworthy": checks.trustworthy(sanity),
            "warnings": [f"WARNING: {line}." for line in clamped + weak]
            + checks.warnings(sanity),
            "exported": exported,
            "compute_seconds": evaluate_seconds,
            "compute_cpu_seconds": cpu_seconds,
        },
        start,
    )
    for line in record["warnings"]:
        log(line)
    if record["trustworthy"]:
        log(f"all {len(sanity)} sanity checks passed")
    log(
        f"defend: {evaluate_seconds / 60:.1f} minutes of attacks and evaluation "
        f"({cpu_seconds / 60:.1f} CPU minutes)"
    )
    return record


def _describe(pipeline: evaluation.Pipeline, sigmas: dict, tta: dict) -> str:
    if pipeline.denoiser is None:
        views = {0: "no test-time augmentation"}.get(
            tta["used"], f"test-time augmentation level {tta['used']}"
        )
        exported = (
            "" if tta["used"] == tta["exported"] else f"; exported: {tta['exported']}"
        )
        return f"the bare classifier ({views}{exported}), logits = classifier(x)"
    if pipeline.random:
        return (
            f"classifier(clip(denoiser(clip(x + N(0, {sigmas['randomised']:g}^2), "
            "0, 1)), 0, 1)), fresh noise at every call"
        )
    return "classifier(clip(denoiser(x), 0, 1))"


def _export(config, pipelines, sample) -> dict:
    names = {"denoised": ("model.keras", "saved_model")}
    names["randomised"] = ("randomised.keras", "randomised_saved_model")
    exported = {}
    for p in pipelines[1:]:
        keras_name, folder = names[p.name]
        exported[p.name] = pipeline_lib.export(
            p.model,
            os.path.join(config.run_dir, keras_name),
            os.path.join(config.run_dir, folder),
            sample,
        )
    return exported


def _write_per_image(config, results) -> None:
    arrays = {key: value for key, value in results.per_image.items()}
    arrays.update({f"universal_v|{k}": v for k, v in results.perturbations.items()})
    outputs.save_npz(os.path.join(config.run_dir, PER_IMAGE_FILE), **arrays)
