"""The universal job: one perturbation v that fools the classifier on most images.

`run(config)` computes v with the reference DeepFool loop (Moosavi-Dezfooli
et al. 2017, Algorithm 1) or the batched signed-gradient method (Shafahi et
al. 2020), measures its fooling rate on the training images used and on the
unseen test set against random noise of the same norm, and draws it; with
`sweep_xi` it runs the sweep over several xi instead (`sweep.py`). Fooling
means: the prediction on x + v differs from the prediction on x (not from
the true label).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

METHODS = ("deepfool", "sgd")
NORMS = ("linf", "l2")
CHESSBOARD_SQUARES = (1, 2, 4, 8)
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
    sweep_xi: tuple[float, ...] = setting(
        (),
        "If given: run both methods at each of these xi and plot the fooling "
        "rate against xi.",
        unit=config_lib.LP,
        low=0,
        low_open=True,
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
    if config.method == "deepfool":
        return {
            **common,
            "algorithm": "Moosavi-Dezfooli et al. 2017, Algorithm 1: passes over "
            "the shuffled images; where x + v is not yet fooled, DeepFool on "
            "x + v gives r and v <- P_{p,xi}(v + r); stop at fooling rate "
            ">= 1 - delta or after max_passes",
            "delta": config.delta,
            "max_passes": config.max_passes,
            "overshoot": config.overshoot,
            "max_iter_deepfool": config.max_iter_deepfool,
            "keep_best_pass": config.keep_best_pass,
        }
    return {
        **common,
        "algorithm": "Shafahi et al. 2020 (universal adversarial training, "
        "attack part): signed-gradient ascent of the cross-entropy of the clean "
        "prediction on v over mini-batches, projected on the lp ball after "
        "every step",
        "step_size": config.sgd_step_size,
        "final_step_size": config.sgd_final_step_size,
        "step_schedule": "constant"
        if config.sgd_final_step_size is None
        else "half cosine from step_size to final_step_size over all steps",
        "epochs": config.sgd_epochs,
        "batch_size": config.batch_size,
    }


def compute(
    config: UniversalConfig, model_fn, images: np.ndarray, progress=None
) -> tuple[np.ndarray, dict]:
    """V [32, 32, 3] and the method's history."""
    if config.method == "deepfool":
        result = attacks.universal_perturbation(
            model_fn,
            images,
            xi=config.xi,
            p=config.p,
            delta=config.delta,
            max_passes=config.max_passes,
            overshoot=config.overshoot,
            max_iter_deepfool=config.max_iter_deepfool,
            seed=config.seed,
            progress=progress,
            batch_size=config.batch_size,
            keep_best_pass=config.keep_best_pass,
        )
    else:
        result = attacks.sgd_universal_perturbation(
            model_fn,
            images,
            xi=config.xi,
            p=config.p,
            step_size=config.sgd_step_size,
            num_epochs=config.sgd_epochs,
            final_step_size=config.sgd_final_step_size,
            batch_size=config.batch_size,
            seed=config.seed,
            progress=progress,
        )
    return np.asarray(result.perturbation), dict(result.history)


def _predictions(model_fn, images, v, batch_size):
    clean = np.asarray(attacks.predict_labels(model_fn, images, batch_size))
    perturbed = np.asarray(
        attacks.predict_labels(model_fn, np.clip(images + v, 0.0, 1.0), batch_size)
    )
    return clean, perturbed


def _examples_figure(images, labels, clean, perturbed, v, count):
    rows, captions = [], []
    order = np.argsort(clean == perturbed, kind="stable")  # fooled ones first
    names = data.CLASS_NAMES
    for i in order[:count]:
        rows.append([images[i], np.clip(images[i] + v, 0.0, 1.0)])
        captions.append(
            [
                f"{names[labels[i]]}: predicted {names[clean[i]]}",
                f"predicted {names[perturbed[i]]}",
            ]
        )
    return plots.image_grid(
        rows, captions, ["test image x", "x + v"], title="unseen test images"
    )


def _perturbation_scale(v: np.ndarray) -> float:
    return 0.5 / max(float(np.abs(v).max()), 1e-8)


def classifier_digest(classifier_dir: str) -> str | None:
    """sha256 of the classifier run's metrics.json: which classifier was attacked."""
    return outputs.file_sha256(os.path.join(classifier_dir, outputs.METRICS_FILE))


def run(config: UniversalConfig, log=lambda message: None) -> dict:
    """Computes v, measures fooling rates, writes v, figures and metrics.json.

    With `sweep_xi`, runs the sweep instead (`sweep.sweep`).

    Returns:
      The record written to metrics.json (sweep.json for a sweep).
    """
    config = config_lib.resolve(config)
    if config.sweep_xi:
        from cifar_denoise_adv.adversarial import sweep  # imports this module

        return sweep.sweep(config, log)
    return _one_perturbation(config, log)


@runs.guarded("universal")
def _one_perturbation(config: UniversalConfig, log) -> dict:
    start = time.time()
    model = classifier.load_classifier(config.classifier, log)
    data_dir = config.data_dir or None
    train_x, _ = data.load_arrays("train", data_dir, config.max_train_images or None)
    test_x, test_y = data.load_arrays("test", data_dir, config.max_test_images or None)
    log(
        f"{config.method} UAP, {config.norm} xi = {config.xi * 255:.1f}/255, "
        f"{len(train_x)} training images, {len(test_x)} test images"
    )
    compute_start = time.perf_counter()
    v, history = compute(config, model, train_x, _progress_logger(log))
    compute_seconds = time.perf_counter() - compute_start
    rates = _rates(config, model, v, {"train": train_x, "test": test_x})
    clean, perturbed = _predictions(model, test_x, v, config.batch_size)
    flows = fooled_flows(clean, perturbed)
    _figures(config, v, flows, test_x, test_y, clean, perturbed)
    record = outputs.write_record(
        config,
        "universal",
        {
            "classifier": config.classifier,
            "classifier_metrics_sha256": classifier_digest(config.classifier),
            "method": config.method,
            "settings": settings(config),
            "images": {"train": len(train_x), "test": len(test_x)},
            "fooling_definition": FOOLING_DEFINITION,
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
    log(_rates_line(rates))
    return record


def _rates_line(rates: dict) -> str:
    line = (
        f"fooling rate on unseen test images {100 * rates['fooling_rate_test']:.1f}% "
        f"(training images {100 * rates['fooling_rate_train']:.1f}%); same norm: "
        f"random signs {100 * rates['random_noise_fooling_rate_test']:.1f}%, "
        f"chessboard ({rates['chessboard_square']} px) "
        f"{100 * rates['chessboard_fooling_rate_test']:.1f}% (test)"
    )
    if not rates["beats_baselines_test"]:
        line += "; v does NOT beat both baselines on the test images"
    return line


def _progress_logger(log):
    def progress(info: dict) -> None:
        log(
            " ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in info.items()
            )
        )

    return progress


def _rates(config: UniversalConfig, model, v, images_by_split: dict) -> dict:
    """Fooling rates of v and of two baselines of the same norm, per split.

    The baselines are what any perturbation of the budget reaches for free:
    random signs (`random_perturbation_like`) and a chessboard pattern
    (`chessboard_perturbation`), whose square size is the one of
    CHESSBOARD_SQUARES that fools most of the training images (chosen on
    the images v is computed on, like v itself).
    """
    shape, rate = v.shape, attacks.fooling_rate
    noise = attacks.random_perturbation_like(shape, config.xi, config.p, config.seed)
    boards = {
        square: attacks.chessboard_perturbation(shape, config.xi, config.p, square)
        for square in CHESSBOARD_SQUARES
    }
    train = images_by_split["train"]
    by_square = {s: rate(model, train, b, config.batch_size) for s, b in boards.items()}
    square = max(by_square, key=lambda s: (by_square[s], -s))
    rates = {}
    for name, pattern in (
        ("", v),
        ("random_noise_", noise),
        ("chessboard_", boards[square]),
    ):
        for split, images in images_by_split.items():
            rates[f"{name}fooling_rate_{split}"] = rate(
                model, images, pattern, config.batch_size
            )
    rates["chessboard_square"] = square
    rates["chessboard_fooling_rate_train_by_square"] = by_square
    baselines = max(
        rates["random_noise_fooling_rate_test"], rates["chessboard_fooling_rate_test"]
    )
    rates["beats_baselines_test"] = rates["fooling_rate_test"] > baselines
    return rates


def fooled_flows(clean: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """[10, 10] counts of fooled images: row = clean prediction, column = new one.

    Its sum is the number of fooled images and its diagonal is zero.
    """
    fooled = clean != perturbed
    flows = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES), np.int64)
    np.add.at(flows, (clean[fooled], perturbed[fooled]), 1)
    return flows


def _figures(config, v, flows, test_x, test_y, clean, perturbed) -> None:
    scale = _perturbation_scale(v)
    with outputs.atomic_path(
        os.path.join(config.run_dir, "v.npy"), suffix=".npy"
    ) as path:
        np.save(path, v.astype(np.float32))
    outputs.save_figure(
        plots.image_grid(
            [[plots.magnify(v, scale)]],
            [[f"max |v| = {np.abs(v).max() * 255:.1f}/255"]],
            [f"v x{scale:.3g} + 0.5"],
            cell_inches=3.2,
        ),
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
        _examples_figure(test_x, test_y, clean, perturbed, v, config.num_examples),
        os.path.join(config.run_dir, "examples.png"),
    )
