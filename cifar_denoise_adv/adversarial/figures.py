"""Figures of the adversarial study: an attacked image, the fooling-rate sweep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core.plots import plt


def _top3_bars(axis, probabilities, class_names, highlight, title):
    top = np.argsort(probabilities)[::-1][:3]
    colors = ["tab:red" if c == highlight else "tab:gray" for c in top]
    axis.barh(range(3), probabilities[top][::-1], color=colors[::-1])
    axis.set_yticks(range(3), [class_names[c] for c in top][::-1], fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("probability", fontsize=8)
    axis.tick_params(axis="x", labelsize=7)
    for rank, c in enumerate(top[::-1]):
        axis.text(
            min(probabilities[c] + 0.02, 0.75),
            rank,
            f"{probabilities[c]:.2f}",
            va="center",
            fontsize=7,
        )
    axis.set_title(title, fontsize=9)


def adversarial_example(
    original: np.ndarray,
    adversarial: np.ndarray,
    probabilities_before: np.ndarray,
    probabilities_after: np.ndarray,
    class_names: Sequence[str],
    true_label: int,
    target_label: int | None,
    scale: float,
    title: str = "",
):
    """Image, perturbed image, perturbation (x scale) and top-3 outputs.

    The target class (or, untargeted, the true class) is drawn in red.
    """
    figure, axes = plt.subplots(
        1, 5, figsize=(13, 2.9), gridspec_kw={"width_ratios": [1, 1, 1, 1.25, 1.25]}
    )
    perturbation = adversarial - original
    panels = [
        (original, f"original: {class_names[true_label]}"),
        (adversarial, "perturbed"),
        (plots.magnify(perturbation, scale), f"perturbation x{scale:g} + 0.5"),
    ]
    for axis, (image, label) in zip(axes[:3], panels, strict=True):
        axis.imshow(np.clip(image, 0, 1), interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(label, fontsize=9)
    highlight = target_label if target_label is not None else true_label
    _top3_bars(axes[3], probabilities_before, class_names, highlight, "before (top 3)")
    _top3_bars(axes[4], probabilities_after, class_names, highlight, "after (top 3)")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def fooling_sweep(results: dict):
    """Fooling rate against xi: each method and both baselines, train and test."""
    xis = np.asarray(results["xi"]) * 255
    figure, axis = plt.subplots(figsize=(6.4, 4))
    styles = {
        "deepfool": "tab:blue",
        "sgd": "tab:orange",
        "random": "tab:gray",
        "chessboard": "tab:green",
    }
    for method, color in styles.items():
        if method not in results:
            continue
        for split, line in (("train", "-"), ("test", "--")):
            axis.plot(
                xis,
                100 * np.asarray(results[method][split]),
                line,
                marker="o",
                color=color,
                label=f"{method} ({split})",
                markersize=4,
            )
    if "level" in results:
        axis.axhline(
            100 * results["level"],
            color="black",
            linestyle=":",
            linewidth=0.8,
            label=f"{100 * results['level']:.2f}% (reference rate)",
        )
    axis.set_xlabel(f"xi x 255 ({results.get('norm', 'linf')} radius)")
    axis.set_ylabel("fooling rate (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("universal perturbation: fooling rate vs budget", fontsize=10)
    figure.tight_layout()
    return figure
