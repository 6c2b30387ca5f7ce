"""Figures of the adversarial study: an attacked image, v, the fooling-rate sweep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.patches import Patch

from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core.plots import plt

TARGET_COLOR = "tab:red"
TRUE_COLOR = "tab:blue"
OTHER_COLOR = "tab:gray"


def _class_bars(axis, probabilities, class_names, true_label, target_label, when):
    """The top 3 classes' probabilities, and the target's and true class's.

    Sorted by probability, the most likely on top; the target in red, the
    true class in blue (the legend says so).
    """
    shown = [int(c) for c in np.argsort(probabilities)[::-1][:3]]
    added = []
    for label, name in ((target_label, "target"), (true_label, "true class")):
        if label is not None and label not in shown:
            shown.append(int(label))
            added.append(name)
    shown.sort(key=lambda c: -probabilities[c])
    colors = [
        TARGET_COLOR
        if c == target_label
        else TRUE_COLOR
        if c == true_label
        else OTHER_COLOR
        for c in shown
    ]
    rows = range(len(shown))
    axis.barh(rows, probabilities[shown][::-1], color=colors[::-1])
    axis.set_yticks(rows, [class_names[c] for c in shown][::-1], fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("probability", fontsize=8)
    axis.tick_params(axis="x", labelsize=7)
    for row, c in enumerate(shown[::-1]):
        axis.text(
            min(probabilities[c] + 0.02, 0.75),
            row,
            f"{probabilities[c]:.2f}",
            va="center",
            fontsize=7,
        )
    axis.set_title(" + ".join([f"{when}: top 3", *added]), fontsize=9)


def _legend(axis, class_names, true_label, target_label):
    handles = [Patch(color=TRUE_COLOR, label=f"true class ({class_names[true_label]})")]
    if target_label is not None:
        name = class_names[target_label]
        handles.insert(0, Patch(color=TARGET_COLOR, label=f"target ({name})"))
    handles.append(Patch(color=OTHER_COLOR, label="other classes"))
    axis.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=7,
        frameon=False,
    )


def perturbation_legend(axis, scale: float) -> None:
    """The scale of an RGB perturbation drawn as 0.5 + scale * d (`plots.magnify`).

    Each channel is magnified alike, so the panel is an RGB image, not a
    grey scale: a text under it gives the scale (mid-grey is 0; a channel at
    its darkest or brightest is -+0.5 / scale), where a grey colour bar would
    suggest one value per pixel.
    """
    limit = 0.5 / scale * 255
    axis.set_xlabel(
        f"each channel x{scale:.3g}: mid-grey 0,\nblack/white -/+{limit:.3g}/255",
        fontsize=7,
    )


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
    """Image, perturbed image, perturbation (x scale) and the class probabilities.

    The bar charts show the top 3 classes before and after, and always the
    target's and the true class's probability; the target is red, the true
    class blue, the others grey, as the legend says. The perturbation is
    drawn in RGB, its scale in 1/255 pixel units written under it.
    """
    figure, axes = plt.subplots(
        1, 5, figsize=(14.5, 2.9), gridspec_kw={"width_ratios": [1, 1, 1, 1.25, 1.25]}
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
    perturbation_legend(axes[2], scale)
    for axis, probabilities, when in (
        (axes[3], probabilities_before, "before"),
        (axes[4], probabilities_after, "after"),
    ):
        _class_bars(axis, probabilities, class_names, true_label, target_label, when)
    _legend(axes[4], class_names, true_label, target_label)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def universal_perturbation(v: np.ndarray, scale: float):
    """The universal perturbation v: in RGB (0.5 + scale * v), and per channel.

    The RGB panel shows the pattern as it is added; the R, G and B panels
    show each channel's values on one diverging colour scale, whose colour
    bar (in 1/255 pixel units) holds for exactly those three panels.
    """
    v = np.asarray(v)
    figure, axes = plt.subplots(1, 4, figsize=(11.5, 3.2))
    axes[0].imshow(plots.magnify(v, scale), interpolation="nearest")
    axes[0].set_title(
        f"v in RGB (max |v| = {np.abs(v).max() * 255:.1f}/255)", fontsize=9
    )
    perturbation_legend(axes[0], scale)
    limit = 0.5 / scale * 255
    for channel, (axis, name) in enumerate(zip(axes[1:], "RGB", strict=True)):
        shown = axis.imshow(
            v[..., channel] * 255,
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
            interpolation="nearest",
        )
        axis.set_title(f"channel {name}", fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.colorbar(
        shown, ax=list(axes[1:]), fraction=0.02, pad=0.02, label="v (x 1/255)"
    )
    return figure


def fooled_first(clean: np.ndarray, perturbed: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` example images, the fooled ones (label changed) first."""
    return np.argsort(clean == perturbed, kind="stable")[:count]


def universal_examples(images, labels, clean, perturbed, v, count, class_names):
    """Test images x and x + v, fooled ones first; the title says which are.

    Args:
      images: float32 [N, H, W, C] in [0, 1].
      labels: int [N] true classes.
      clean: int [N] predictions on x.
      perturbed: int [N] predictions on clip(x + v, 0, 1).
      v: float32 [H, W, C], the universal perturbation.
      count: rows (at most N).
      class_names: a name per class.
    """
    rows, captions = [], []
    shown = fooled_first(clean, perturbed, count)
    for i in shown:
        rows.append([images[i], np.clip(images[i] + v, 0.0, 1.0)])
        captions.append(
            [
                f"{class_names[labels[i]]}: predicted {class_names[clean[i]]}",
                f"predicted {class_names[perturbed[i]]}",
            ]
        )
    fooled = int(np.sum(clean[shown] != perturbed[shown]))
    total = f"{int(np.sum(clean != perturbed))} of {len(clean)} fooled"
    if fooled == len(shown):
        title = f"fooled test images ({total})"
    elif fooled:
        title = f"test images ({total}): the {fooled} fooled ones first"
    else:
        title = f"test images: none fooled ({total})"
    return plots.image_grid(rows, captions, ["test image x", "x + v"], title=title)


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
