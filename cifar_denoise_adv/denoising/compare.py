"""Two or more finished denoising runs side by side, paired per image.

`run(config)` is the `compare` app's job: it prints the table and, with a
run_dir, writes comparison.md, comparison.json and validation_curves.png
(validation PSNR against epochs and against training minutes) there.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import noise
from cifar_denoise_adv.denoising.denoise_job import PSNR_FILE

CURVES_FILE = "validation_curves.png"
_METRICS_EXPECTED = f"the {outputs.METRICS_FILE} a denoise run writes"


@dataclasses.dataclass(frozen=True)
class CompareConfig(config_lib.Config):
    """The runs to compare (the `compare` app's flags)."""

    runs: tuple[str, ...] = setting(
        (), "Run folders of the denoise app, the first the baseline."
    )
    run_dir: str = setting(
        "",
        "If given: write comparison.md and comparison.json here.",
        path=True,
        defines_result=False,
    )


def run(config: CompareConfig, log=lambda message: None) -> dict:
    """Compares the runs, logs the table, writes it when run_dir is given."""
    comparison = compare_runs(list(config.runs))
    table = comparison_markdown(comparison)
    log(table)
    if config.run_dir:
        folder = outputs.make_run_dir(config.run_dir)
        outputs.write_text(os.path.join(folder, "comparison.md"), table)
        outputs.write_json(os.path.join(folder, "comparison.json"), comparison)
        figure = curves_figure(
            {
                os.path.basename(os.path.normpath(run)): outputs.read_json(
                    os.path.join(run, outputs.METRICS_FILE), _METRICS_EXPECTED
                )
                for run in config.runs
            }
        )
        if figure is not None:
            outputs.save_figure(figure, os.path.join(folder, CURVES_FILE))
    return comparison


def compare_runs(run_dirs: list[str]) -> dict:
    """Mean, std and paired per-image differences of finished denoising runs.

    The first run is the baseline each other run is paired with (for
    example ResNet vs plain). The runs must have evaluated the same test
    images under the same noise (sigma and seed).

    Returns:
      {"runs": [...], "pairs": [...]} with, per pair, the mean paired
      difference (other - first) and its standard error.
    """
    if len(run_dirs) < 2:
        raise UserError("--runs: give at least two run folders to compare.")
    loaded = []
    for run_dir in run_dirs:
        metrics_path = os.path.join(run_dir, "metrics.json")
        psnr_path = os.path.join(run_dir, PSNR_FILE)
        for path in (metrics_path, psnr_path):
            if not os.path.isfile(path):
                raise UserError(
                    f"{path}: missing; expected a finished run of the denoise app."
                )
        metrics = outputs.read_json(metrics_path, _METRICS_EXPECTED)
        loaded.append((run_dir, metrics, read_recovered_psnr(psnr_path)))
    base_dir, base_metrics, base_psnr = loaded[0]
    rows, pairs = [], []
    for run_dir, metrics, values in loaded:
        key = ("sigma", "test_noise_seed")
        if tuple(metrics.get(k) for k in key) != tuple(
            base_metrics.get(k) for k in key
        ):
            raise UserError(
                f"{run_dir}: evaluated with sigma/seed "
                f"{[metrics.get(k) for k in key]}, but {base_dir} with "
                f"{[base_metrics.get(k) for k in key]}; a paired comparison needs "
                "the same noisy test images."
            )
        if len(values) != len(base_psnr):
            raise UserError(
                f"{run_dir}: {len(values)} test images, {base_dir}: {len(base_psnr)}."
            )
        mean, std = noise.mean_and_std(values)
        rows.append(
            {
                "run": run_dir,
                "model": metrics.get("model"),
                "parameters": metrics.get("parameters"),
                "epochs": metrics.get("epochs"),
                "train_minutes": metrics.get("train_seconds_total", 0.0) / 60,
                "mean": mean,
                "std": std,
                "images": len(values),
            }
        )
    for run_dir, _, values in loaded[1:]:
        difference = values - base_psnr
        mean, std = noise.mean_and_std(difference)
        pairs.append(
            {
                "run": run_dir,
                "baseline": base_dir,
                "mean_difference": mean,
                "standard_error": float(
                    difference.std(ddof=1) / math.sqrt(len(difference))
                ),
                "fraction_better": float(np.mean(difference > 0)),
            }
        )
    return {"runs": rows, "pairs": pairs}


def read_recovered_psnr(path: str) -> np.ndarray:
    """The per-image recovered PSNR of a run's psnr_per_image.npz, float64 [N].

    Raises:
      UserError: naming the file, when it is not a valid .npz
        (`outputs.load_npz`) with a 1-D numeric `recovered` array.
    """
    expected = f"the {PSNR_FILE} a denoise run writes"
    arrays = outputs.load_npz(path, expected)
    if "recovered" not in arrays:
        raise UserError(f"{path}: no array 'recovered'; expected {expected}.")
    values = arrays["recovered"]
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
        raise UserError(
            f"{path}: 'recovered' has shape {values.shape} and dtype {values.dtype}; "
            f"expected {expected} (one PSNR per test image)."
        )
    return values.astype(np.float64)


def comparison_markdown(comparison: dict) -> str:
    """The comparison as a markdown table."""
    lines = [
        "| run | model | params | epochs | train min | PSNR mean | PSNR std | images |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in comparison["runs"]:
        lines.append(
            f"| {row['run']} | {row['model']} | {row['parameters']:,} | "
            f"{row['epochs']} | {row['train_minutes']:.1f} | {row['mean']:.3f} | "
            f"{row['std']:.3f} | {row['images']} |"
        )
    lines += [
        "",
        "| run - baseline | paired mean difference (dB) | s.e. | share better |",
    ]
    lines.append("| --- | --- | --- | --- |")
    for pair in comparison["pairs"]:
        lines.append(
            f"| {pair['run']} - {pair['baseline']} | {pair['mean_difference']:+.3f} | "
            f"{pair['standard_error']:.3f} | {100 * pair['fraction_better']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def validation_curve(metrics: dict) -> dict:
    """A denoise run's validation PSNR per epoch and its cumulative minutes.

    Returns:
      {"epochs", "minutes", "values"} lists of equal length (empty when the
      run recorded no per-epoch validation).
    """
    values = metrics.get("history", {}).get("val_psnr", [])
    seconds = metrics.get("epoch_train_seconds", [])[-len(values) :] if values else []
    if len(seconds) != len(values):
        return {"epochs": [], "minutes": [], "values": []}
    first = metrics["epochs"] - len(values) + 1
    return {
        "epochs": list(range(first, metrics["epochs"] + 1)),
        "minutes": list(np.cumsum(seconds) / 60.0),
        "values": list(values),
    }


def budget_gaps(first: dict, second: dict) -> dict:
    """Validation-PSNR gap (first - second) at equal epochs and equal minutes.

    Args:
      first: a `validation_curve` result (e.g. the ResNet's).
      second: another (e.g. the plain net's).

    Returns:
      {"epochs": e, "gap_at_equal_epochs_db": ..., "minutes": t,
       "gap_at_equal_minutes_db": ...}: e is the last epoch both reached, t
      the shorter run's training minutes (the longer run's curve is
      interpolated there); None where a curve is empty.
    """
    if not first["values"] or not second["values"]:
        return {
            "epochs": None,
            "gap_at_equal_epochs_db": None,
            "minutes": None,
            "gap_at_equal_minutes_db": None,
        }
    epochs = min(first["epochs"][-1], second["epochs"][-1])

    def at_epoch(curve):
        return curve["values"][curve["epochs"].index(epochs)]

    minutes = min(first["minutes"][-1], second["minutes"][-1])

    def at_minutes(curve):
        return float(np.interp(minutes, curve["minutes"], curve["values"]))

    return {
        "epochs": epochs,
        "gap_at_equal_epochs_db": at_epoch(first) - at_epoch(second),
        "minutes": minutes,
        "gap_at_equal_minutes_db": at_minutes(first) - at_minutes(second),
    }


def curves_figure(metrics_by_name: dict[str, dict]):
    """Validation PSNR per epoch and per training minute, one line per run.

    Args:
      metrics_by_name: {label: a denoise run's metrics.json content}.

    Returns:
      A matplotlib figure, or None when no run recorded validation curves.
    """
    curves = {
        name: validation_curve(metrics) for name, metrics in metrics_by_name.items()
    }
    curves = {name: curve for name, curve in curves.items() if curve["values"]}
    if not curves:
        return None
    counts = {m.get("images", {}).get("validation") for m in metrics_by_name.values()}
    return plots.learning_curves(
        curves,
        "validation PSNR (dB)",
        title=f"denoisers on {'/'.join(str(c) for c in counts)} held-out training "
        "images (validation), noise fixed",
    )
