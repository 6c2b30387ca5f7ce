"""The fooling-rate sweep: both universal methods over a grid of budgets xi.

Each (method, xi) is a universal job run in a sub-folder; a finished one
with the same settings, classifier and data is reused, so an interrupted
sweep continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import os

from cifar_denoise_adv.adversarial import figures
from cifar_denoise_adv.adversarial import universal_job
from cifar_denoise_adv.adversarial.universal_job import METHODS
from cifar_denoise_adv.adversarial.universal_job import UniversalConfig
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core.errors import UserError

SWEEP_FILE = "sweep.json"

# The fooling rate the original study reports (on the images v was computed
# on): the level whose budget the sweep finds.
REFERENCE_FOOLING_RATE = 0.6517


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
    path = os.path.join(sub_dir, outputs.METRICS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        metrics = outputs.read_json(path)
        recorded = config_lib.from_values(UniversalConfig, metrics["config"])
    except (UserError, KeyError, TypeError):
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
    """The result-defining settings but the other method's, which cannot matter."""
    other = [m for m in METHODS if m != config.method][0]
    fields = config_lib.identity(config)
    return {k: v for k, v in fields.items() if k not in _METHOD_FIELDS[other]}


def sweep(
    config: UniversalConfig,
    log=lambda message: None,
    level: float = REFERENCE_FOOLING_RATE,
) -> dict:
    """Fooling rate against xi (`config.sweep_xi`) for both methods and noise.

    Resumable: a (method, xi) run whose metrics.json in `run_dir` shows the
    same settings, classifier (its metrics.json digest) and data is reused.
    Reports, per method, the xi at which the training-set rate reaches
    `level` (interpolated on the grid; None if the grid never reaches it).
    Writes sweep.json, sweep.png, flags.cfg and tb/ (the rates against xi)
    into run_dir. The classifier and the data are read and checked once,
    before anything in run_dir changes (`runs.claim`), and serve every
    (method, xi) run.

    Returns:
      The results written to sweep.json.
    """
    config = config_lib.resolve(config)
    # Each (method, xi) run checks its own settings, so the sweep's folder
    # accepts a changed grid or method settings and reuses what still matches.
    with runs.claim(config, "universal", log, same_settings=False) as held:
        inputs = universal_job.load_inputs(config, log)
        held.begin()
        return _sweep(config, inputs, level, log)


def _sweep(config: UniversalConfig, inputs: dict, level: float, log) -> dict:
    xis = sorted(config.sweep_xi)
    identity = {
        "classifier": config.classifier,
        "classifier_metrics_sha256": universal_job.classifier_digest(config.classifier),
        "data_source": outputs.data_source(config.data_dir),
    }
    results = {"xi": list(xis), "norm": config.norm, "level": level}
    every_run = []
    for method in METHODS:
        rows = [_sub_run(config, method, xi, identity, inputs, log) for xi in xis]
        every_run += rows
        train_rates = [m["fooling_rate_train"] for m in rows]
        results[method] = {
            "train": train_rates,
            "test": [m["fooling_rate_test"] for m in rows],
            "seconds": [m["compute_seconds"] for m in rows],
            "xi_reaching_level_train": budget_reaching(xis, train_rates, level),
        }
        for baseline in ("random_noise", "chessboard"):
            results[baseline.split("_")[0]] = {
                split: [m[f"{baseline}_fooling_rate_{split}"] for m in rows]
                for split in ("train", "test")
            }
    results["images"] = dict(rows[0]["images"])  # the same for every run
    # Each run's warnings, once each (a weak classifier warns in every run).
    results["warnings"] = list(
        dict.fromkeys(line for m in every_run for line in m.get("warnings", []))
    )
    results["ignored_settings"] = config_lib.ignored_notes(config)
    # Reused runs included: what the sweep cost, whichever invocation paid.
    results["compute_seconds"] = sum(sum(results[m]["seconds"]) for m in METHODS)
    _log_budgets(results, xis, level, log)
    _tensorboard(config.run_dir, results)
    outputs.save_figure(
        figures.fooling_sweep(results), os.path.join(config.run_dir, "sweep.png")
    )
    outputs.write_flagfile(config, "universal")
    outputs.write_json(os.path.join(config.run_dir, SWEEP_FILE), results)
    return results


def _sub_run(config, method: str, xi: float, identity, inputs, log) -> dict:
    """The (method, xi) run's metrics: reused if finished, else computed."""
    sub_dir = os.path.join(config.run_dir, f"{method}_xi{xi * 255:.1f}")
    # The sub-folder is the sweep's own: a run there that cannot be reused
    # (other settings, or interrupted) is replaced by a fresh one.
    sub_config = dataclasses.replace(
        config, method=method, xi=xi, sweep_xi=(), run_dir=sub_dir, overwrite=True
    )
    metrics = _finished_run(sub_dir, sub_config, identity)
    if metrics is not None:
        log(f"sweep: {method} at xi {xi * 255:.1f}/255: done before, reused")
        return metrics
    log(f"sweep: {method} at xi {xi * 255:.1f}/255")

    def sub_log(line: str) -> None:
        # A run of one method would name the other's settings as ignored;
        # the sweep runs both, so it uses them all.
        if not line.startswith("note: "):
            log(line)

    return universal_job.run_on(sub_config, inputs, sub_log)


def _tensorboard(run_dir: str, results: dict) -> None:
    """Fooling rate against xi as TensorBoard scalars: step = xi x 255, rounded."""
    for i, xi in enumerate(results["xi"]):
        scalars = {
            f"fooling_rate_vs_xi/{method}_{split}": results[method][split][i]
            for method in (*METHODS, "random", "chessboard")
            if method in results
            for split in ("train", "test")
        }
        summaries.write(
            summaries.log_dir(run_dir), scalars=scalars, step=round(xi * 255)
        )


def _log_budgets(results: dict, xis: list[float], level: float, log) -> None:
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
