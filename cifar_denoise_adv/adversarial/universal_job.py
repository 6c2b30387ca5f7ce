"""The universal job: one perturbation v that fools the classifier on most images.

`run(config)` computes v with the reference DeepFool loop (Moosavi-Dezfooli
et al. 2017, Algorithm 1) or the batched signed-gradient method (Shafahi et
al. 2020), measures its fooling rate on the training images used and on the
unseen test set against random noise of the same norm, and draws it (the
sweep over several xi is its own job, `sweep.py`). Fooling
means: the prediction on x + v differs from the prediction on x (not from
the true label).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import baselines
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.adversarial import figures
from cifar_denoise_adv.adversarial import universal_progress
from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

# The registry's universal attacks, by their --method value.
METHOD_ATTACKS = registry.options(registry.UNIVERSAL)
METHODS = tuple(sorted(METHOD_ATTACKS))
NORMS = ("linf", "l2")
FOOLING_DEFINITION = (
    "an image is fooled when the classifier's prediction on clip(x + v, 0, 1) "
    "differs from its prediction on x"
)


@dataclasses.dataclass(frozen=True)
class UniversalConfig(classifier.AttackConfig):
    """The method, the budget and the data of a universal perturbation."""

    method: str = setting(
        "sgd", "deepfool (the reference loop) or sgd.", choices=METHODS
    )
    norm: str = setting("linf", "The lp ball of the perturbation.", choices=NORMS)
    xi: float = setting(
        10 / 255, "Radius of the lp ball.", unit=config_lib.LP, low=0, low_open=True
    )
    delta: float = setting(
        0.2,
        "deepfool: stop at fooling rate 1 - delta.",
        unit=config_lib.FRACTION,
        low=0.0,
        high=1.0,
    )
    max_passes: int = setting(5, "deepfool: passes over the images.", low=1)
    overshoot: float = setting(
        0.02,
        "deepfool: overshoot (0.02: 2%).",
        unit=config_lib.FRACTION,
        low=0.0,
        high=1.0,
    )
    max_iter_deepfool: int = setting(10, "deepfool: iterations per image.", low=1)
    keep_best_pass: bool = setting(
        False,
        "deepfool: return the v of the pass that fooled most of the training "
        "images instead of the last pass's (Algorithm 1 returns the last).",
    )
    sgd_step_size: float = setting(
        0.002,
        "sgd: step on v, signed (linf) or of this L2 length (l2).",
        unit=config_lib.LP,
        low=0,
        low_open=True,
    )
    sgd_epochs: int = setting(10, "sgd: epochs over the images.", low=1)
    sgd_final_step_size: float | None = setting(
        None,
        "sgd: if set, the step decays on a half cosine from --sgd_step_size to "
        "this over all steps; unset: constant steps.",
        unit=config_lib.LP,
        low=0,
        low_open=True,
    )
    max_train_images: int = setting(
        2000, "The first N training images v is computed on (0: all).", low=0
    )
    max_test_images: int = setting(
        0, "Test images for the unseen-image rate (0: all).", low=0
    )

    def validate(self):
        final = self.sgd_final_step_size
        if final is not None and final > self.sgd_step_size:
            raise UserError(
                f"--sgd_final_step_size={final}: expected <= "
                f"--sgd_step_size={self.sgd_step_size}."
            )

    @property
    def p(self) -> float:
        """The lp norm as a number (2 or inf)."""
        return np.inf if self.norm == "linf" else 2.0


def settings(config: UniversalConfig) -> dict:
    """The algorithm and its settings as recorded in metrics.json."""
    common = {
        "norm": config.norm,
        "xi": config.xi,
        "xi_times_255": config.xi * 255,
        "seed": config.seed,
        "fooling": FOOLING_DEFINITION,
    }
    algorithm = {"algorithm": METHOD_ATTACKS[config.method].algorithm}
    if config.method == "deepfool":
        return {
            **common,
            **algorithm,
            "delta": config.delta,
            "max_passes": config.max_passes,
            "overshoot": config.overshoot,
            "max_iter_deepfool": config.max_iter_deepfool,
            "keep_best_pass": config.keep_best_pass,
        }
    return {
        **common,
        **algorithm,
        "step_size": config.sgd_step_size,
        "final_step_size": config.sgd_final_step_size,
        "step_schedule": "constant"
        if config.sgd_final_step_size is None
        else "half cosine from step_size to final_step_size over all steps",
        "epochs": config.sgd_epochs,
        "batch_size": config.batch_size,
    }


def params(config: UniversalConfig, progress=None) -> registry.Params:
    """The app's settings as the registry's attacks read them."""
    return registry.Params(
        p=config.p,
        delta=config.delta,
        max_passes=config.max_passes,
        overshoot=config.overshoot,
        max_iter_deepfool=config.max_iter_deepfool,
        keep_best_pass=config.keep_best_pass,
        step_size=config.sgd_step_size,
        num_epochs=config.sgd_epochs,
        final_step_size=config.sgd_final_step_size,
        batch_size=config.batch_size,
        seed=config.seed,
        progress=progress,
    )


def compute(
    config: UniversalConfig, model_fn, images: np.ndarray, progress=None
) -> tuple[np.ndarray, dict]:
    """V [32, 32, 3] and the method's history (the registry's attack)."""
    attack = METHOD_ATTACKS[config.method]
    result = attack.call(model_fn, images, None, config.xi, params(config, progress))
    return np.asarray(result.perturbation), dict(result.history)


def _predictions(model_fn, images, v, batch_size):
    clean = np.asarray(attacks.predict_labels(model_fn, images, batch_size))
    perturbed = np.asarray(
        attacks.predict_labels(model_fn, np.clip(images + v, 0.0, 1.0), batch_size)
    )
    return clean, perturbed


def _perturbation_scale(v: np.ndarray) -> float:
    return 0.5 / max(float(np.abs(v).max()), 1e-8)


def classifier_digest(classifier_dir: str) -> str | None:
    """sha256 of the classifier run's metrics.json: which classifier was attacked."""
    return outputs.file_sha256(os.path.join(classifier_dir, outputs.METRICS_FILE))


def run(config: UniversalConfig, log=lambda message: None) -> dict:
    """Computes v, measures fooling rates, writes v, figures, tb/, metrics.json.

    The classifier and the data are read and checked before anything in
    run_dir changes (`runs.claim`).

    Returns:
      The record written to metrics.json.
    """
    start = time.time()
    config = config_lib.resolve(config)
    with runs.claim(config, "universal", log) as held:
        inputs = load_inputs(config, log)
        held.begin()
        return _one_perturbation(config, inputs, start, log)


def run_on(config: UniversalConfig, inputs: dict, log) -> dict:
    """`run` on a classifier and data loaded already (`load_inputs`: the sweep's)."""
    start = time.time()
    with runs.claim(config, "universal", log) as held:
        held.begin()
        return _one_perturbation(config, inputs, start, log)


def load_inputs(config: UniversalConfig, log) -> dict:
    """The attacked classifier and the images, read and checked.

    Returns:
      {"model", "tta", "precision", "train_x", "train_y", "test_x", "test_y"}.

    Raises:
      UserError: one line, for a --classifier that is not a CIFAR-10
        classifier or data that cannot be read.
    """
    model, tta, used = classifier.load_attacked(config, log)
    data_dir = config.data_dir or None
    train_x, train_y = data.load_arrays(
        "train", data_dir, config.max_train_images or None
    )
    test_x, test_y = data.load_arrays("test", data_dir, config.max_test_images or None)
    counts = {"max_train_images": len(train_x), "max_test_images": len(test_x)}
    config_lib.log_clamped(config, counts, log)
    return {
        "model": model,
        "tta": tta,
        "precision": used,
        "train_x": train_x,
        "train_y": train_y,
        "test_x": test_x,
        "test_y": test_y,
    }


def _one_perturbation(config: UniversalConfig, inputs: dict, start, log) -> dict:
    model, tta = inputs["model"], inputs["tta"]
    train_x, train_y = inputs["train_x"], inputs["train_y"]
    test_x, test_y = inputs["test_x"], inputs["test_y"]
    log(
        f"{config.method} UAP, {config.norm} xi = {config.xi * 255:.1f}/255, "
        f"{len(train_x)} training images, {len(test_x)} test images"
    )
    tb = summaries.log_dir(config.run_dir)
    compute_start = time.perf_counter()
    v, history = compute(
        config, model, train_x, universal_progress.lines(log, tb, config)
    )
    compute_seconds = time.perf_counter() - compute_start
    rates = baselines.fooling_rates(
        config, model, v, {"train": train_x, "test": test_x}
    )
    clean, perturbed = _predictions(model, test_x, v, config.batch_size)
    accuracy, warnings = _clean_accuracy(config, model, train_x, train_y, test_y, clean)
    for warning in warnings:
        log(f"warning: {warning}")
    flows = baselines.fooled_flows(clean, perturbed)
    _figures(config, v, flows, test_x, test_y, clean, perturbed)
    _tensorboard(tb, config, v, rates, history["passes"], test_x, clean, perturbed)
    record = outputs.write_record(
        config,
        "universal",
        {
            "classifier": config.classifier,
            "classifier_tta": tta,
            "precision": inputs["precision"].record(),
            "classifier_metrics_sha256": classifier_digest(config.classifier),
            "method": config.method,
            "settings": settings(config),
            "images": {"train": len(train_x), "test": len(test_x)},
            "fooling_definition": FOOLING_DEFINITION,
            "clean_accuracy": accuracy,
            "warnings": warnings,
            **rates,
            "v_linf": float(np.abs(v).max()),
            "v_l2": float(np.sqrt(np.sum(v.astype(np.float64) ** 2))),
            "perturbation_figure_scale": _perturbation_scale(v),
            "fooled_flows_test": flows.tolist(),
            "history": history,
            "compute_seconds": compute_seconds,
        },
        start,
    )
    log(baselines.rates_line(rates))
    return record


def _clean_accuracy(config, model, train_x, train_y, test_y, clean_test):
    """Clean accuracy on the images used, and warnings when it is below 50%."""
    clean_train = np.asarray(attacks.predict_labels(model, train_x, config.batch_size))
    accuracy = {
        "train": float(np.mean(clean_train == train_y)),
        "test": float(np.mean(clean_test == test_y)),
    }
    warnings = classifier.weak_classifier_warnings(
        {
            "training images v is computed on": (accuracy["train"], len(train_y)),
            "test images": (accuracy["test"], len(test_y)),
        }
    )
    return accuracy, warnings


def _tensorboard(tb, config, v, rates, passes, test_x, clean, perturbed) -> None:
    """The rates, v (scaled as in perturbation.png) and fooled examples."""
    shown = figures.fooled_first(clean, perturbed, config.num_examples)
    summaries.write(
        tb,
        scalars={
            f"final/{name}": rate
            for name, rate in rates.items()
            if "fooling_rate" in name and isinstance(rate, float)
        },
        images={
            "perturbation_v_scaled": plots.magnify(v, _perturbation_scale(v))[None],
            "fooled_test_images_first/x_and_x_plus_v": summaries.side_by_side(
                test_x[shown], np.clip(test_x[shown] + v, 0.0, 1.0)
            ),
        },
        step=passes,
    )


def _figures(config, v, flows, test_x, test_y, clean, perturbed) -> None:
    scale = _perturbation_scale(v)
    with outputs.atomic_path(
        os.path.join(config.run_dir, "v.npy"), suffix=".npy"
    ) as path:
        np.save(path, v.astype(np.float32))
    outputs.save_figure(
        figures.universal_perturbation(v, scale),
        os.path.join(config.run_dir, "perturbation.png"),
    )
    outputs.save_figure(
        plots.confusion_matrix(
            flows,
            data.CLASS_NAMES,
            title="fooled test images: where their predictions go",
            row_label="prediction on x",
            column_label="prediction on x + v",
        ),
        os.path.join(config.run_dir, "fooled_flows.png"),
    )
    outputs.save_figure(
        figures.universal_examples(
            test_x, test_y, clean, perturbed, v, config.num_examples, data.CLASS_NAMES
        ),
        os.path.join(config.run_dir, "examples.png"),
    )
