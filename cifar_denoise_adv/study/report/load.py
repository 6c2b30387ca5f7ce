"""Reading the study folder: the study record, each step's metrics and figures."""

from __future__ import annotations

import os

from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.denoising import compare

STEP_FIGURES = {
    "noise": ["noise_examples.png"],
    "resnet": ["recovery_examples.png", "psnr_histogram.png"],
    "plain": ["recovery_examples.png", "psnr_histogram.png"],
    "classifier": ["confusion_matrix.png"],
    "fgsm": ["example_0.png", "example_1.png"],
    "iterative": ["example_0.png", "example_1.png"],
    "universal": ["perturbation.png", "fooled_flows.png", "examples.png"],
    "universal_deepfool": ["perturbation.png", "fooled_flows.png", "examples.png"],
    "universal_sweep": ["sweep.png"],
    "defend": ["accuracy_vs_eps.png", "examples.png"],
}


def load(study_dir: str) -> dict:
    """The study record with each step's metrics, record and figure paths.

    Returns:
      study.json's content, where each step also has "metrics" (its
      metrics.json, or sweep.json for a sweep), "record" (study_step.json),
      "figures" ({file name: path relative to study_dir}, existing files
      only), and, when both denoisers ran, "comparison" (paired statistics
      from `compare.compare_runs`, ResNet minus plain) and "budget_gaps"
      (their validation-PSNR gap at equal epochs and equal minutes).
    """
    study = outputs.read_json(os.path.join(study_dir, "study.json"))
    steps = {}
    for entry in study["steps"]:
        run_dir = os.path.join(study_dir, entry["run_dir"])
        name = "sweep.json" if entry["step"] == "universal_sweep" else "metrics.json"
        loaded = dict(entry)
        loaded["metrics"] = outputs.read_json(os.path.join(run_dir, name))
        record_path = os.path.join(run_dir, "study_step.json")
        loaded["record"] = (
            outputs.read_json(record_path) if os.path.isfile(record_path) else {}
        )
        loaded["figures"] = {
            figure: os.path.join(entry["run_dir"], figure)
            for figure in STEP_FIGURES.get(entry["step"], [])
            if os.path.isfile(os.path.join(run_dir, figure))
        }
        steps[entry["step"]] = loaded
    study["by_step"] = steps
    if "resnet" in steps and "plain" in steps:
        study["comparison"] = compare.compare_runs(
            [os.path.join(study_dir, steps[n]["run_dir"]) for n in ("plain", "resnet")]
        )
        study["budget_gaps"] = compare.budget_gaps(
            *(
                compare.validation_curve(steps[n]["metrics"])
                for n in ("resnet", "plain")
            )
        )
    return study
