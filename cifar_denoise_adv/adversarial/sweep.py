"""The sweep job: both universal methods over a grid of budgets xi.

`run(config)` is what the `sweep` app and the study call. Each (method, xi)
is a universal job run in a sub-folder; a finished one with the same
settings, classifier and data is reused, so an interrupted sweep continues
where it stopped. The sweep's own settings are the universal job's, less
what each sub-run checks itself (the grid, the method and each method's
settings), plus the grid --sweep_xi.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from cifar_denoise_adv.adversarial import figures
from cifar_denoise_adv.adversarial import universal_job
from cifar_denoise_adv.adversarial.universal_job import METHODS
from cifar_denoise_adv.adversarial.universal_job import UniversalConfig
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

SWEEP_FILE = "sweep.json"

# The fooling rate the original study reports (on the images v was computed
# on): the level whose budget the sweep finds.
REFERENCE_FOOLING_RATE = 0.6517


_METHOD_FIELDS = {
    "deepfool": ("delta", "max_passes", "overshoot", "max_iter_deepfool"),
    "sgd": ("sgd_step_size", "sgd_epochs", "sgd_final_step_size"),
}
_UNIVERSAL_FIELDS = {f.name: f for f in dataclasses.fields(UniversalConfig)}


def _checked_by_each_run(name: str):
    """The universal setting `name`, left out of the sweep folder's identity.

    Every (method, xi) run records and checks it (`_finished_run`), so a
    sweep with another value reuses the runs it does not concern.
    """
    field = _UNIVERSAL_FIELDS[name]
    return dataclasses.field(
        default=field.default, metadata={**field.metadata, "defines_result": False}
    )


@dataclasses.dataclass(frozen=True)
class SweepConfig(UniversalConfig):
    """The universal job's settings for both methods, and the grid of xi."""

    method: str = _checked_by_each_run("method")
    delta: float = _checked_by_each_run("delta")
    max_passes: int = _checked_by_each_run("max_passes")
    overshoot: float = _checked_by_each_run("overshoot")
    max_iter_deepfool: int = _checked_by_each_run("max_iter_deepfool")
    keep_best_pass: bool = _checked_by_each_run("keep_best_pass")
    sgd_step_size: float = _checked_by_each_run("sgd_step_size")
    sgd_epochs: int = _checked_by_each_run("sgd_epochs")
    sgd_final_step_size: float | None = _checked_by_each_run("sgd_final_step_size")
    sweep_xi: tuple[float, ...] = setting(
        (2 / 255, 4 / 255, 6 / 255, 8 / 255, 10 / 255, 12 / 255, 16 / 255),
        "The budgets xi: both methods run at each, and the fooling rate is "
        "plotted against xi.",
        unit=config_lib.LP,
        low=0,
        low_open=True,
        defines_result=False,  # each (method, xi) run is checked on its own
    )

    def validate(self):
        super().validate()
        if not self.sweep_xi:
            raise UserError("--sweep_xi: expected at least one budget xi.")

    def ignored(self) -> dict[str, str]:
        # Both methods run, each at every budget: every method's settings
        # are used, --method and --xi are not.
        why = "the sweep runs both methods at each budget of --sweep_xi"
        return dict.fromkeys(("method", "xi"), why)

    def universal(self, method: str, xi: float, run_dir: str) -> UniversalConfig:
        """The universal job's config of the (method, xi) run."""
        values = {name: getattr(self, name) for name in _UNIVERSAL_FIELDS}
        values.update(method=method, xi=xi, run_dir=run_dir, overwrite=True)
        return UniversalConfig(**values)


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


def _defining(config: UniversalConfig) -> dict:
    """The result-defining settings but the other method's, which cannot matter."""
    other = [m for m in METHODS if m != config.method][0]
    fields = config_lib.identity(config)
    return {k: v for k, v in fields.items() if k not in _METHOD_FIELDS[other]}


def run(
    config: SweepConfig,
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
    # The grid and the method settings are not in the folder's identity
    # (each (method, xi) run checks its own), so the folder accepts a
    # changed grid or method settings and reuses what still matches.
    with runs.claim(config, "sweep", log) as held:
        inputs = universal_job.load_inputs(config, log)
        held.begin()
        return _sweep(config, inputs, level, log)


def _sweep(config: SweepConfig, inputs: dict, level: float, log) -> dict:
    xis = sorted(config.sweep_xi)
    identity = {
        "classifier": config.classifier,
        "classifier_metrics_sha256": universal_job.classifier_digest(config.classifier),
        "data_source": outputs.data_source(config.data_dir),
    }
    results = {"xi": list(xis), "norm": config.norm, "level": level}
    results["precision"] = inputs["precision"].record()
    timing = _Timing(len(xis), log)
    every_run = []
    for method in METHODS:
        rows = [
            timing.run(method, _sub_run, config, method, xi, identity, inputs, log)
            for xi in xis
        ]
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
    outputs.write_flagfile(config, "sweep")
    outputs.write_json(os.path.join(config.run_dir, SWEEP_FILE), results)
    return results


class _Timing:
    """After each (method, xi) run it computes: the minutes the others need.

    The rate is each method's mean over the runs it computed (a method not
    yet timed is counted at the other's rate, and the line says so); runs
    reused from an earlier invocation cost nothing.
    """

    def __init__(self, per_method: int, log):
        self._left = {method: per_method for method in METHODS}
        self._seconds = {method: [] for method in METHODS}
        self._log = log

    def run(self, method, sub_run, *args):
        begin = time.perf_counter()
        before = len(self._seconds[method])
        metrics = sub_run(*args)
        self._left[method] -= 1
        if metrics.pop("_computed", False):
            self._seconds[method].append(time.perf_counter() - begin)
        if len(self._seconds[method]) > before and sum(self._left.values()):
            self._log(self._line(method))
        return metrics

    def _line(self, method) -> str:
        timed = [s for seconds in self._seconds.values() for s in seconds]
        minutes, untimed = 0.0, []
        for name, left in self._left.items():
            seconds = self._seconds[name]
            if left and not seconds:
                untimed.append(name)
            minutes += left * float(np.mean(seconds or timed)) / 60
        runs_left = sum(self._left.values())
        note = f"; {', '.join(untimed)} not yet timed" if untimed else ""
        return (
            f"sweep: this {method} run took {self._seconds[method][-1]:.1f} s; about "
            f"{minutes:.1f} minutes left at this rate ({runs_left} "
            f"run{'s' if runs_left != 1 else ''}{note})"
        )


def _sub_run(config, method: str, xi: float, identity, inputs, log) -> dict:
    """The (method, xi) run's metrics: reused if finished, else computed."""
    sub_dir = os.path.join(config.run_dir, f"{method}_xi{xi * 255:.1f}")
    # The sub-folder is the sweep's own: a run there that cannot be reused
    # (other settings, or interrupted) is replaced by a fresh one.
    sub_config = config.universal(method, xi, sub_dir)
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

    return {**universal_job.run_on(sub_config, inputs, sub_log), "_computed": True}


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
