"""Matplotlib figures only: they take arrays and strings, and return figures.

The caller saves them (`outputs.save_figure`), so nothing here chooses paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no screen on servers; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def magnify(difference: np.ndarray, scale: float) -> np.ndarray:
    """Shows a signed difference as an image: 0.5 + scale * d, clipped to [0, 1]."""
    return np.clip(0.5 + scale * np.asarray(difference), 0.0, 1.0)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    captions: Sequence[Sequence[str]],
    column_titles: Sequence[str],
    title: str = "",
    cell_inches: float = 1.9,
):
    """A grid of images with a caption under each.

    Args:
      rows: rows of HWC float images in [0, 1] (all rows the same length).
      captions: one caption per image, same nesting as `rows`.
      column_titles: one title per column.
      title: figure title.
      cell_inches: size of one cell.

    Returns:
      A matplotlib Figure.
    """
    num_rows, num_cols = len(rows), len(column_titles)
    if num_rows == 0 or any(len(row) != num_cols for row in rows):
        raise ValueError("image_grid needs rows with one image per column title.")
    figure, axes = plt.subplots(
        num_rows,
        num_cols,
        figsize=(cell_inches * num_cols, (cell_inches + 0.35) * num_rows + 0.4),
        squeeze=False,
    )
    for r, (row, row_captions) in enumerate(zip(rows, captions, strict=True)):
        for c, (image, caption) in enumerate(zip(row, row_captions, strict=True)):
            axis = axes[r, c]
            axis.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(caption, fontsize=8)
            if r == 0:
                axis.set_title(column_titles[c], fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def histogram(
    series: dict[str, np.ndarray], xlabel: str, title: str = "", bins: int = 40
):
    """Overlaid histograms of one or more named series."""
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for name, values in series.items():
        axis.hist(np.asarray(values), bins=bins, alpha=0.55, label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("images")
    if title:
        axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    title: str = "",
    row_label: str = "true",
    column_label: str = "predicted",
):
    """A class-to-class count matrix, each row shaded by its share of the row.

    By default a confusion matrix (rows: true class, columns: predicted);
    `row_label` and `column_label` name other pairs, e.g. clean prediction
    against prediction under attack.
    """
    matrix = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(7.2, 6.2))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(
        image, ax=axis, fraction=0.046, label=f"share of the row ({row_label})"
    )
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(ticks, class_names, fontsize=8)
    axis.set_xlabel(column_label)
    axis.set_ylabel(row_label)
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            color = "white" if shares[row, col] > 0.5 else "black"
            axis.text(
                col,
                row,
                int(matrix[row, col]),
                ha="center",
                va="center",
                fontsize=7,
                color=color,
            )
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


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
        (magnify(perturbation, scale), f"perturbation x{scale:g} + 0.5"),
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
    """Fooling rate against xi: each method on train and test, and random noise."""
    xis = np.asarray(results["xi"]) * 255
    figure, axis = plt.subplots(figsize=(6.4, 4))
    styles = {"deepfool": "tab:blue", "sgd": "tab:orange", "random": "tab:gray"}
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
