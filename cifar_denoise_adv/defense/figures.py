"""Figures of the defense: accuracy against the budget, and attacked examples."""

from __future__ import annotations

import os

import numpy as np

from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core.plots import plt
from cifar_denoise_adv.defense.evaluation import EOT
from cifar_denoise_adv.defense.evaluation import GRADIENT_FREE
from cifar_denoise_adv.defense.evaluation import NONE
from cifar_denoise_adv.defense.evaluation import OBLIVIOUS
from cifar_denoise_adv.defense.evaluation import Attack

COLOURS = {"classifier": "black", "denoised": "tab:blue", "randomised": "tab:orange"}
# Threat models told apart by line and marker (colour is the pipeline): an
# oblivious curve is dashed with hollow squares, so its legend entry differs
# from the adaptive one at a glance, not only by its dash pattern.
THREAT_STYLES = {
    OBLIVIOUS: {"linestyle": "--", "marker": "s", "markerfacecolor": "white"},
    EOT: {"linestyle": "-.", "marker": "^"},
}
THROUGH_THE_PIPELINE = {"linestyle": "-", "marker": "o"}


def curves(results, pipelines, epsilons) -> dict:
    """{(pipeline, threat): {attack: [accuracy at 0, eps_1, ...]}}.

    The point at 0 is the clean accuracy on the images of that curve, so
    every curve is on one set of images.
    """
    found = {}
    for pipeline in pipelines:
        threats = [pipeline.adaptive_threat]
        if pipeline.denoiser is not None:
            threats.insert(0, OBLIVIOUS)
        for threat in threats:
            lines = {}
            for name in ("fgsm", "pgd"):
                points = []
                for eps in epsilons:
                    pair = results.common(
                        (pipeline.name, threat, Attack(name, eps)),
                        (pipeline.name, NONE, Attack("clean")),
                    )
                    if pair is None:  # not in --attacks: no line
                        points = [np.nan] * (len(epsilons) + 1)
                        break
                    if not points:
                        points.append(float(pair[1].mean()))
                    points.append(float(pair[0].mean()))
                lines[name] = points
            found[(pipeline.name, threat)] = lines
    return found


def accuracy_vs_epsilon(results, pipelines, epsilons, square=None):
    """Two panels (FGSM, PGD): accuracy against the L-inf budget, per threat model.

    Solid lines with circles: attacks through the pipeline's own gradients
    (white-box on the bare classifier, adaptive on a defense); dash-dot with
    triangles: adaptive+EOT; dashed with hollow squares: oblivious (marker
    and line both differ, so the legend tells them apart). Crosses: the
    gradient-free Square Attack at its budget.
    """
    epsilons = sorted(epsilons)
    positions = np.arange(len(epsilons) + 1)
    labels = ["clean"] + [f"{eps * 255:.3g}" for eps in epsilons]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    found = curves(results, pipelines, epsilons)
    for axis, name in zip(axes, ("fgsm", "pgd"), strict=True):
        for (pipeline, threat), lines in found.items():
            axis.plot(
                positions,
                100 * np.asarray(lines[name]),
                markersize=5,
                color=COLOURS.get(pipeline, "tab:green"),
                label=f"{pipeline}, {threat}",
                **THREAT_STYLES.get(threat, THROUGH_THE_PIPELINE),
            )
        axis.set_xticks(positions, labels)
        axis.set_xlabel("L-inf budget eps x 255")
        axis.set_title(f"untargeted {name.upper()}", fontsize=10)
        axis.grid(alpha=0.3)
        axis.set_ylim(-2, 102)
    for pipeline, eps, accuracy in square or []:
        axes[1].plot(
            1 + epsilons.index(eps),
            100 * accuracy,
            "x",
            markersize=9,
            color=COLOURS.get(pipeline, "tab:green"),
            label=f"{pipeline}, gradient-free (Square)",
        )
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=7, loc="upper right", handlelength=4)
    figure.suptitle(
        "accuracy against the budget: solid, circles = attacks through the "
        "pipeline; dash-dot, triangles = adaptive+EOT; dashed, hollow squares = "
        "oblivious",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def _name(label) -> str:
    return data.CLASS_NAMES[int(label)]


def examples(examples, classify, denoise, defended, epsilon: float):
    """Rows: image, its adversarial versions, what the denoiser makes of them.

    Args:
      examples: `table.Examples` with both adversarial versions.
      classify: images -> predicted classes, the bare classifier.
      denoise: images -> denoised images in [0, 1].
      defended: images -> predicted classes, the denoised pipeline.
      epsilon: the PGD budget shown.
    """
    x = examples.images
    oblivious, adaptive = examples.oblivious, examples.adaptive
    denoised = {k: denoise(v) for k, v in (("x", x), ("o", oblivious), ("a", adaptive))}
    bare = {k: classify(v) for k, v in (("x", x), ("o", oblivious), ("a", adaptive))}
    guarded = {k: defended(v) for k, v in (("x", x), ("o", oblivious), ("a", adaptive))}
    rows, captions = [], []
    for i, label in enumerate(examples.labels):
        rows.append(
            [
                x[i],
                denoised["x"][i],
                oblivious[i],
                denoised["o"][i],
                adaptive[i],
                denoised["a"][i],
            ]
        )
        captions.append(
            [
                f"true {_name(label)}\nclassifier: {_name(bare['x'][i])}",
                f"defended: {_name(guarded['x'][i])}",
                f"classifier: {_name(bare['o'][i])}",
                f"defended: {_name(guarded['o'][i])}",
                f"classifier: {_name(bare['a'][i])}",
                f"defended: {_name(guarded['a'][i])}",
            ]
        )
    titles = [
        "image x",
        "denoised x",
        "x' oblivious",
        "denoised x' obl.",
        "x' adaptive",
        "denoised x' adapt.",
    ]
    return plots.image_grid(
        rows,
        captions,
        titles,
        title=f"PGD at eps {epsilon * 255:.3g}/255: computed on the classifier "
        "(oblivious) or through denoiser and classifier (adaptive)",
    )


def write_all(config, results, pipelines, shown) -> None:
    """The defend job's figures and TensorBoard curves and images.

    accuracy_vs_eps.png and examples.png in `config.run_dir`, and under tb/
    the accuracy per attack, pipeline and threat model against eps (step =
    eps x 255) and an image | oblivious | denoised | adaptive | denoised grid.
    """
    run_dir = config.run_dir
    eps = config.reference_epsilon
    square = []
    for p in pipelines:
        row = results.find(p.name, GRADIENT_FREE, Attack("square", eps))
        if row is None:  # not in --attacks
            continue
        square.append(
            (p.name, min(config.epsilons, key=lambda e: abs(e - eps)), row["accuracy"])
        )
    outputs.save_figure(
        accuracy_vs_epsilon(results, pipelines, config.epsilons, square),
        os.path.join(run_dir, "accuracy_vs_eps.png"),
    )
    classifier, denoised = pipelines[0].model, pipelines[1]

    def predict(model):
        return lambda x: np.asarray(model.predict(x, verbose=0)).argmax(1)

    def denoise(x):
        return np.clip(denoised.denoiser.predict(x, verbose=0), 0.0, 1.0)

    outputs.save_figure(
        examples(shown, predict(classifier), denoise, predict(denoised.model), eps),
        os.path.join(run_dir, "examples.png"),
    )
    found = curves(results, pipelines, sorted(config.epsilons))
    steps = [0] + [round(e * 255) for e in sorted(config.epsilons)]
    for (name, threat), lines in found.items():
        for attack, points in lines.items():
            for step, accuracy in zip(steps, points, strict=True):
                summaries.write(
                    summaries.log_dir(run_dir),
                    scalars={f"accuracy/{attack}/{name}/{threat}": accuracy},
                    step=step,
                )
    summaries.write(
        summaries.log_dir(run_dir),
        images={
            "image_oblivious_denoised_adaptive_denoised": summaries.side_by_side(
                shown.images,
                shown.oblivious,
                denoise(shown.oblivious),
                shown.adaptive,
                denoise(shown.adaptive),
            )
        },
    )
