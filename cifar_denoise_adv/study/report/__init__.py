"""The study report: report.md and a self-contained report.html.

`load.load(study_dir)` reads what the study's runs left (study.json, each
run's metrics.json, study_step.json and figures); `sections.blocks(study)`
turns that into document blocks (headings, paragraphs, tables, figures),
and `render.markdown` and `render.html` render the same blocks, so the two
reports say the same thing.
"""

from __future__ import annotations

import os
import time

from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.denoising import compare
from cifar_denoise_adv.study.report import load
from cifar_denoise_adv.study.report import render
from cifar_denoise_adv.study.report import sections

CURVES_FIGURE = "denoisers_validation.png"


def write(study_dir: str) -> dict:
    """Writes study_dir/report.md and report.html; returns their paths."""
    study = load.load(study_dir)
    _write_derived_figures(study, study_dir)
    document = sections.blocks(study)
    paths = {
        "md": os.path.join(study_dir, "report.md"),
        "html": os.path.join(study_dir, "report.html"),
    }
    outputs.write_text(paths["md"], render.markdown(document))
    title = f"Study report ({time.strftime('%Y-%m-%d')})"
    outputs.write_text(paths["html"], render.html(document, study_dir, title))
    return paths


def _write_derived_figures(study: dict, study_dir: str) -> None:
    """Figures built from several steps: the denoisers' validation curves."""
    steps = study["by_step"]
    if "resnet" in steps and "plain" in steps:
        figure = compare.curves_figure(
            {name: steps[name]["metrics"] for name in ("resnet", "plain")}
        )
        if figure is not None:
            outputs.save_figure(figure, os.path.join(study_dir, CURVES_FIGURE))
            study["figures"] = {CURVES_FIGURE: CURVES_FIGURE}
