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


def learning_curves(
    runs: dict[str, dict[str, Sequence[float]]], ylabel: str, title: str = ""
):
    """One metric per run against epochs (left) and training minutes (right).

    Args:
      runs: {run name: {"epochs": [...], "minutes": [...], "values": [...]}},
        the three lists of equal length (minutes cumulative).
      ylabel: what the values are, with their unit.
      title: figure title.
    """
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for name, run in runs.items():
        for axis, x in zip(axes, ("epochs", "minutes"), strict=True):
            axis.plot(run[x], run["values"], marker="o", markersize=3, label=name)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training minutes (cumulative)")
    axes[0].set_ylabel(ylabel)
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
