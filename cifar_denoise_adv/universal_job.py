"""The universal job: one perturbation v that fools the classifier on most images.

`run(...)` computes v with the reference DeepFool loop (Moosavi-Dezfooli et
al. 2017, Algorithm 1) or the batched signed-gradient method (Shafahi et al.
2020), measures its fooling rate on the training images used and on the
unseen test set against random noise of the same norm, and draws it.
`sweep(...)` repeats that over several xi. Fooling means: the prediction on
x + v differs from the prediction on x (not from the true label).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np

from cifar_denoise_adv import attacks
from cifar_denoise_adv import classify_job
from cifar_denoise_adv import data
from cifar_denoise_adv import outputs
from cifar_denoise_adv import plots

METHODS = ("deepfool", "sgd")
NORMS = ("linf", "l2")
FOOLING_DEFINITION = (
    "an image is fooled when the classifier's prediction on clip(x + v, 0, 1) "
    "differs from its prediction on x"
)


@dataclasses.dataclass(frozen=True)
class UniversalConfig:
    """The method, the budget and the data of a universal perturbation."""

    method: str = "sgd"
    norm: str = "linf"
    xi: float = 10 / 255  # radius of the lp ball, [0, 1] pixel units
    delta: float = 0.2  # deepfool: stop at fooling rate 1 - delta
    max_passes: int = 5  # deepfool: passes over the images
    overshoot: float = 0.02  # deepfool
    max_iter_deepfool: int = 10  # deepfool
    sgd_step_size: float = 0.002  # sgd: signed step on v, pixel units
    sgd_epochs: int = 10  # sgd: epochs over the images
    sgd_final_step_size: float | None = None  # sgd: cosine decay to it; None: constant
    train_images: int = 2000  # first N training images (0: all)
    test_images: int = 0  # test images for the unseen-image rate (0: all)
    batch_size: int = 128
    seed: int = 0
    num_examples: int = 6

    def __post_init__(self):
        if self.method not in METHODS:
            raise outputs.UserError(f"--method={self.method}: expected {METHODS}.")
        if self.norm not in NORMS:
            raise outputs.UserError(f"--norm={self.norm}: expected {NORMS}.")
        if self.xi <= 0:
            raise outputs.UserError(f"--xi={self.xi}: expected > 0.")
        final = self.sgd_final_step_size
        if final is not None and not 0 < final <= self.sgd_step_size:
            raise outputs.UserError(
                f"--sgd_final_step_size={final}: expected > 0 and <= "
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


def _classifier_digest(classifier_dir: str) -> str | None:
    return outputs.file_sha256(os.path.join(classifier_dir, "metrics.json"))


def _data_source(data_dir: str | None) -> str:
    return f"local {data_dir}" if data_dir else "tfds cifar10"


def run(
    config: UniversalConfig,
    *,
    classifier_dir: str,
    run_dir: str,
    data_dir: str | None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Computes v, measures fooling rates, writes v and figures and metrics."""
    start = time.time()
    run_dir = outputs.make_run_dir(run_dir)
    model = classify_job.load_classifier(classifier_dir)
    train_x, _ = data.load_arrays("train", data_dir, limit=config.train_images or None)
    test_x, test_y = data.load_arrays(
        "test", data_dir, limit=config.test_images or None
    )
    log(
        f"{config.method} UAP, {config.norm} xi = {config.xi * 255:.1f}/255, "
        f"{len(train_x)} training images, {len(test_x)} test images"
    )

    def progress(info: dict) -> None:
        log(
            " ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in info.items()
            )
        )

    compute_start = time.perf_counter()
    v, history = compute(config, model, train_x, progress)
    compute_seconds = time.perf_counter() - compute_start
    rates = {}
    for name, images in (("train", train_x), ("test", test_x)):
        rates[name] = float(attacks.fooling_rate(model, images, v, config.batch_size))
        noise = np.asarray(
            attacks.random_perturbation_like(v.shape, config.xi, config.p, config.seed)
        )
        rates[f"random_{name}"] = float(
            attacks.fooling_rate(model, images, noise, config.batch_size)
        )
    clean, perturbed = _predictions(model, test_x, v, config.batch_size)
    fooled = clean != perturbed
    flows = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES), np.int64)
    np.add.at(flows, (clean[fooled], perturbed[fooled]), 1)

    scale = _perturbation_scale(v)
    with outputs.atomic_path(os.path.join(run_dir, "v.npy"), suffix=".npy") as path:
        np.save(path, v.astype(np.float32))
    outputs.save_figure(
        plots.image_grid(
            [[plots.magnify(v, scale)]],
            [[f"max |v| = {np.abs(v).max() * 255:.1f}/255"]],
            [f"v x{scale:.3g} + 0.5"],
            cell_inches=3.2,
        ),
        os.path.join(run_dir, "perturbation.png"),
    )
    outputs.save_figure(
        plots.confusion_matrix(
            flows,
            data.CLASS_NAMES,
            title="fooled test images: where their predictions go",
            row_label="prediction on x",
            column_label="prediction on x + v",
        ),
        os.path.join(run_dir, "fooled_flows.png"),
    )
    outputs.save_figure(
        _examples_figure(test_x, test_y, clean, perturbed, v, config.num_examples),
        os.path.join(run_dir, "examples.png"),
    )
    metrics = {
        "job": "universal",
        "classifier": os.path.abspath(classifier_dir),
        "classifier_metrics_sha256": _classifier_digest(classifier_dir),
        "method": config.method,
        "settings": settings(config),
        "config": dataclasses.asdict(config),
        "data_source": _data_source(data_dir),
        "images": {"train": len(train_x), "test": len(test_x)},
        "fooling_definition": FOOLING_DEFINITION,
        "fooling_rate_train": rates["train"],
        "fooling_rate_test": rates["test"],
        "random_noise_fooling_rate_train": rates["random_train"],
        "random_noise_fooling_rate_test": rates["random_test"],
        "v_linf": float(np.abs(v).max()),
        "v_l2": float(np.sqrt(np.sum(v.astype(np.float64) ** 2))),
        "perturbation_figure_scale": scale,
        "fooled_flows_test": flows.tolist(),
        "history": history,
        "compute_seconds": compute_seconds,
        "seconds": time.time() - start,
        "versions": outputs.library_versions(),
        "machine": outputs.machine_description(),
    }
    outputs.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    log(
        f"fooling rate: train {100 * rates['train']:.1f}%, test "
        f"{100 * rates['test']:.1f}%, random noise of the same norm "
        f"{100 * rates['random_test']:.1f}% (test)"
    )
    return metrics


REFERENCE_FOOLING_RATE = 0.6517  # Moosavi-Dezfooli et al. 2017's figure


def budget_reaching(xis: list[float], rates: list[float], level: float) -> float | None:
    """The smallest xi at which the fooling rate reaches `level`.

    Linear interpolation between the two grid points around the first
    crossing (xis ascending); the first xi if it is already reached there;
    None if no xi of the grid reaches it.
    """
    for i, rate in enumerate(rates):
        if rate >= level:
            if i == 0:
                return float(xis[0])
            x0, x1, r0 = xis[i - 1], xis[i], rates[i - 1]
            return float(x0 + (level - r0) * (x1 - x0) / (rate - r0))
    return None


def _finished_run(sub_dir: str, config: UniversalConfig, identity: dict) -> dict | None:
    """A sub-run's metrics if it finished with this config, classifier and data."""
    path = os.path.join(sub_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    try:
        metrics = outputs.read_json(path)
        recorded = UniversalConfig(**metrics["config"])
    except (outputs.UserError, KeyError, TypeError):
        return None
    expected = outputs.normalized({"config": _defining(config), **identity})
    found = outputs.normalized(
        {
            "config": _defining(recorded),
            **{k: metrics.get(k) for k in identity},
        }
    )
    return metrics if found == expected else None


_METHOD_FIELDS = {
    "deepfool": ("delta", "max_passes", "overshoot", "max_iter_deepfool"),
    "sgd": ("sgd_step_size", "sgd_epochs", "sgd_final_step_size"),
}


def _defining(config: UniversalConfig) -> dict:
    """The config without the other method's settings, which cannot matter."""
    other = [m for m in METHODS if m != config.method][0]
    fields = dataclasses.asdict(config)
    return {k: v for k, v in fields.items() if k not in _METHOD_FIELDS[other]}


def sweep(
    config: UniversalConfig,
    xis: list[float],
    *,
    classifier_dir: str,
    run_dir: str,
    data_dir: str | None,
    log: Callable[[str], None] = lambda message: None,
    level: float = REFERENCE_FOOLING_RATE,
) -> dict:
    """Fooling rate against xi for both methods and the random baseline.

    Resumable: a (method, xi) run whose metrics.json in `run_dir` shows the
    same config, classifier (its metrics.json digest) and data is reused.
    Reports, per method, the xi at which the training-set rate reaches
    `level` (interpolated on the grid; None if the grid never reaches it).
    """
    xis = sorted(xis)
    run_dir = outputs.make_run_dir(run_dir)
    identity = {
        "classifier": os.path.abspath(classifier_dir),
        "classifier_metrics_sha256": _classifier_digest(classifier_dir),
        "data_source": _data_source(data_dir),
    }
    results = {"xi": list(xis), "norm": config.norm, "level": level}
    for method in METHODS:
        rows = []
        for xi in xis:
            sub_config = dataclasses.replace(config, method=method, xi=xi)
            sub_dir = os.path.join(run_dir, f"{method}_xi{xi * 255:.1f}")
            metrics = _finished_run(sub_dir, sub_config, identity)
            if metrics is not None:
                log(f"sweep: {method} at xi {xi * 255:.1f}/255: done before, reused")
            else:
                log(f"sweep: {method} at xi {xi * 255:.1f}/255")
                metrics = run(
                    sub_config,
                    classifier_dir=classifier_dir,
                    run_dir=sub_dir,
                    data_dir=data_dir,
                    log=log,
                )
            rows.append(metrics)
        train_rates = [m["fooling_rate_train"] for m in rows]
        results[method] = {
            "train": train_rates,
            "test": [m["fooling_rate_test"] for m in rows],
            "seconds": [m["compute_seconds"] for m in rows],
            "xi_reaching_level_train": budget_reaching(xis, train_rates, level),
        }
        results["random"] = {
            "train": [m["random_noise_fooling_rate_train"] for m in rows],
            "test": [m["random_noise_fooling_rate_test"] for m in rows],
        }
    results["images"] = dict(rows[0]["images"])  # the same for every run
    # Reused runs included: what the sweep cost, whichever invocation paid.
    results["compute_seconds"] = sum(sum(results[m]["seconds"]) for m in METHODS)
    for method in METHODS:
        xi = results[method]["xi_reaching_level_train"]
        if xi is None:
            log(
                f"sweep: {method} does not reach {100 * level:.2f}% of the training "
                f"images at any xi of the grid (largest {max(xis) * 255:.3g}/255)"
            )
        else:
            log(
                f"sweep: {method} reaches {100 * level:.2f}% of the training images "
                f"at xi = {xi * 255:.2f}/255"
            )
    outputs.save_figure(
        plots.fooling_sweep(results), os.path.join(run_dir, "sweep.png")
    )
    outputs.write_json(os.path.join(run_dir, "sweep.json"), results)
    return results
