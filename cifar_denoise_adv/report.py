"""The study report: report.md and a self-contained report.html.

`load(study_dir)` reads what the study's runs left (study.json, each run's
metrics.json, study_step.json and figures); `blocks(study)` turns that into
a list of document blocks (headings, paragraphs, tables, figures), and
`markdown(...)` and `html(...)` render the same blocks, so the two reports
say the same thing. The HTML embeds every figure as a base64 data URI and
its style inline: it opens offline, with no external asset.
"""

from __future__ import annotations

import base64
import html as html_lib
import os
import time

from cifar_denoise_adv import outputs

# Figures reported for the original study. Its setup, as far as this project
# records it (flags/resnet.cfg, flags/study_gpu.cfg): the reference denoiser
# is 8 residual blocks x 64 channels at full resolution trained 100 epochs,
# sigma = 0.1; full CIFAR-10 (50000 train, 10000 test images) is assumed.
REFERENCE = {
    "noisy_psnr": {"mean": 19.997, "std": 0.11, "sigma": 0.1},
    "resnet": {"mean": 28.43, "std": 1.27},
    "plain": {"mean": 28.17, "std": 1.23},
    "universal_fooling_rate": 0.6517,
}
REFERENCE_DENOISER = {"num_blocks": 8, "filters": 64, "downscale": 1, "epochs": 100}
REFERENCE_IMAGES = {"train": 50000, "test": 10000}
# Differences smaller than these count as agreement.
TOLERANCE = {"psnr_db": 0.05, "denoised_db": 0.1, "rate": 0.02}
NOT_REPORTED = "not reported"

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
}
STATUS_TEXT = {
    "ran": "ran",
    "resumed": "resumed (continued an interrupted run)",
    "skipped": "skipped: outputs exist and its flags are unchanged",
}


# --------------------------------------------------------------------------
# Reading the study folder.


def load(study_dir: str) -> dict:
    """The study record with each step's metrics, record and figure paths.

    Returns:
      study.json's content, where each step also has "metrics" (its
      metrics.json, or sweep.json for a sweep), "record" (study_step.json),
      "figures" ({file name: path relative to study_dir}, existing files
      only), and, when both denoisers ran, "comparison" (paired statistics
      from `denoise_job.compare_runs`, ResNet minus plain).
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
        from cifar_denoise_adv import denoise_job

        study["comparison"] = denoise_job.compare_runs(
            [os.path.join(study_dir, steps[n]["run_dir"]) for n in ("plain", "resnet")]
        )
    return study


# --------------------------------------------------------------------------
# Formatting.


def db(stats: dict | None) -> str:
    """'28.430 ± 1.270 dB' from {"mean", "std"}."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f} dB"


def percent(rate: float | None) -> str:
    """'65.17%' from 0.6517."""
    return "n/a" if rate is None else f"{100 * rate:.2f}%"


def _sizes(images: dict | int) -> str:
    if isinstance(images, dict):
        return " / ".join(f"{count} {split}" for split, count in images.items())
    return str(images)


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


def _agrees(ours: float, reference: float, tolerance: float, reasons: list[str]):
    if abs(ours - reference) <= tolerance:
        return f"agrees (within {tolerance:g})"
    return "; ".join(reasons) or "differs; no setting explains it"


def _data_reason(images: dict, splits=("train", "test")) -> list[str]:
    if all(images.get(s) == REFERENCE_IMAGES[s] for s in splits if s in images):
        return []
    sizes = " / ".join(f"{images[s]} {s}" for s in splits if s in images)
    return [f"data size: {sizes} images (reference: full CIFAR-10, 50000 / 10000)"]


# --------------------------------------------------------------------------
# The document, as blocks: ("h1"|"h2"|"h3"|"p", text), ("list", [items]),
# ("table", header, rows), ("figure", path relative to study_dir, caption).


def _noise_reference_note(metrics: dict, clipped: bool) -> str:
    stats = metrics["psnr_xy_db"]["test"]["clipped" if clipped else "unclipped"]
    reference = REFERENCE["noisy_psnr"]
    reasons = []
    if clipped:
        unclipped = metrics["psnr_xy_db"]["test"]["unclipped"]["mean"]
        reasons.append(
            "clipping: y is clipped to [0, 1], which removes noise at dark and "
            "bright pixels and raises the PSNR; the reference matches our "
            f"unclipped figure ({unclipped:.3f} dB)"
        )
    if abs(metrics["sigma_used"] - reference["sigma"]) > 1e-9:
        reasons.append(f"sigma {metrics['sigma_used']:g} (reference 0.1)")
    reasons += _data_reason(metrics["images"], ("test",))
    return _agrees(stats["mean"], reference["mean"], TOLERANCE["psnr_db"], reasons)


def _denoiser_reference_note(step: str, metrics: dict) -> str:
    config = metrics["config"]
    reasons = []
    ours = tuple(config[k] for k in REFERENCE_DENOISER)
    if ours != tuple(REFERENCE_DENOISER.values()):
        reasons.append(
            f"budget: {config['num_blocks']} blocks x {config['filters']} at "
            f"1/{config['downscale']} resolution, {config['epochs']} epochs "
            "(reference: 8 x 64 at full resolution, 100 epochs)"
        )
    reasons += _data_reason(metrics["images"])
    if abs(metrics["sigma"] - REFERENCE["noisy_psnr"]["sigma"]) > 1e-9:
        reasons.append(f"sigma {metrics['sigma']:g} (reference 0.1)")
    noisy = metrics["psnr_db"]["noisy"]["mean"]
    if abs(noisy - REFERENCE["noisy_psnr"]["mean"]) > TOLERANCE["psnr_db"]:
        reasons.append(
            f"noisy input {noisy:.3f} dB against the reference's 19.997 dB "
            "(clipped noise, see section 1)"
        )
    return _agrees(
        metrics["psnr_db"]["recovered"]["mean"],
        REFERENCE[step]["mean"],
        TOLERANCE["denoised_db"],
        reasons,
    )


def _universal_reference_note(metrics: dict, classifier: dict | None) -> str:
    settings = metrics["settings"]
    reasons = [
        f"budget: {settings['norm']} xi = {settings['xi_times_255']:.3g}/255 "
        "(the reference's xi is not recorded here; the rate grows with xi)"
    ]
    if metrics["method"] != "deepfool":
        reasons.append(
            f"method: {metrics['method']} (the reference algorithm is DeepFool-based)"
        )
    if classifier:
        reasons.append(
            "classifier: ours has "
            f"{percent(classifier['test_accuracy'])} test accuracy, trained "
            f"{classifier['epochs']} epochs on {classifier['images']['train']} images"
        )
    reasons += _data_reason(metrics["images"])
    # The reference rate is measured on the images v was computed on.
    return _agrees(
        metrics["fooling_rate_train"],
        REFERENCE["universal_fooling_rate"],
        TOLERANCE["rate"],
        reasons,
    )


def _headline(steps: dict, study: dict) -> list:
    rows = []
    if "noise" in steps:
        m = steps["noise"]["metrics"]
        n = m["images"]["test"]
        ref = db(REFERENCE["noisy_psnr"])
        for mode, clipped in (("clipped", True), ("unclipped", False)):
            rows.append(
                [
                    f"noisy PSNR(x, y), sigma {m['sigma_used']:g}, {mode}, "
                    f"{n} test images",
                    db(m["psnr_xy_db"]["test"][mode]),
                    ref,
                    _noise_reference_note(m, clipped),
                ]
            )
    for step, label in (("resnet", "ResNet"), ("plain", "plain")):
        if step in steps:
            m = steps[step]["metrics"]
            rows.append(
                [
                    f"{label} denoiser: recovered PSNR, {m['images']['test']} "
                    "test images",
                    db(m["psnr_db"]["recovered"]),
                    db(REFERENCE[step]),
                    _denoiser_reference_note(step, m),
                ]
            )
    if "comparison" in study:
        pair = study["comparison"]["pairs"][0]
        rows.append(
            [
                "ResNet - plain, paired per image",
                f"{pair['mean_difference']:+.3f} ± {pair['standard_error']:.3f} dB "
                "(s.e.)",
                "+0.260 dB (difference of the means)",
                "the reference gives means only, so no paired standard error",
            ]
        )
    classifier = steps.get("classifier", {}).get("metrics")
    if classifier:
        rows.append(
            [
                f"classifier test accuracy, {classifier['images']['test']} images",
                percent(classifier["test_accuracy"]),
                NOT_REPORTED,
                "",
            ]
        )
    for step in ("fgsm", "iterative"):
        if step in steps:
            m = steps[step]["metrics"]
            rows.append(
                [
                    f"targeted {m['method']} success, eps "
                    f"{m['settings']['epsilon']:g}, {m['images']} images",
                    percent(m["targeted_success_rate"]),
                    NOT_REPORTED,
                    "",
                ]
            )
    for step in ("universal", "universal_deepfool"):
        if step in steps:
            m = steps[step]["metrics"]
            rows.append(
                [
                    f"universal ({m['method']}) fooling rate on the "
                    f"{m['images']['train']} training images v was computed on "
                    f"(on {m['images']['test']} unseen test images)",
                    f"{percent(m['fooling_rate_train'])} "
                    f"({percent(m['fooling_rate_test'])})",
                    f"{percent(REFERENCE['universal_fooling_rate'])} (training set)",
                    _universal_reference_note(m, classifier),
                ]
            )
    header = ["quantity", "this study", "reference (original study)", "why they differ"]
    return [("h2", "Headline"), ("table", header, rows)]


def _figures(step: dict, captions: dict) -> list:
    return [
        ("figure", path, captions.get(name, name))
        for name, path in step["figures"].items()
    ]


def _noise_section(step: dict) -> list:
    m = step["metrics"]
    seeds = m["noise_seed"]
    blocks = [
        ("h2", "1. Noise level and sigma calibration"),
        (
            "p",
            "What was done: y = clip(x + N(0, sigma^2), 0, 1) per pixel and "
            f"channel, sigma in [0, 1] pixel units; PSNR = {m['psnr_definition']}. "
            f"Analytic sigma for a {m['target_psnr_db']:g} dB target: "
            "10^(-PSNR/20) (exact without clipping). Clipped sigma: bisection on "
            f"the {m['calibration_split']} set with the noise draws held fixed. "
            f"Data: {m['data_source']}, {m['images']['train']} train and "
            f"{m['images']['test']} test images; noise seeds train "
            f"{seeds['train']}, test {seeds['test']}.",
        ),
        (
            "table",
            ["sigma", "value", "PSNR(x, y) on the calibration set"],
            [
                ["analytic (no clipping)", f"{m['sigma_analytic']:.5f}", ""],
                [
                    f"calibrated (clipped, {m['calibration_split']} set)",
                    f"{m['sigma_calibrated_clipped']:.5f}",
                    db(m["calibrated_check_psnr_db"]),
                ],
                ["used for the noisy sets", f"{m['sigma_used']:.5f}", ""],
            ],
        ),
    ]
    rows = []
    for split in ("test", "train"):
        for mode in ("clipped", "unclipped"):
            stats = m["psnr_xy_db"][split][mode]
            test = split == "test"
            rows.append(
                [
                    split,
                    mode,
                    db(stats),
                    f"{stats['min']:.3f}",
                    str(stats["images"]),
                    db(REFERENCE["noisy_psnr"]) if test else "",
                    _noise_reference_note(m, mode == "clipped") if test else "",
                ]
            )
    header = ["split", "noise", "PSNR(x, y)", "min", "images", "reference", "note"]
    blocks += [
        ("h3", f"PSNR(x, y) at sigma {m['sigma_used']:g}"),
        ("table", header, rows),
        ("p", m["why_sigmas_differ"]),
    ]
    return blocks + _figures(step, {"noise_examples.png": "original, noisy, noise"})


def _denoiser_rows(steps: dict) -> list:
    rows = []
    for name in ("resnet", "plain"):
        if name not in steps:
            continue
        m = steps[name]["metrics"]
        psnr = m["psnr_db"]
        rows.append(
            [
                name,
                m["model"],
                f"{m['parameters']:,}",
                str(m["epochs"])
                + (
                    f" (+{m['initialised_from']['epochs']} earlier)"
                    if m.get("initialised_from")
                    else ""
                ),
                _minutes(m.get("train_seconds_total")),
                f"{m['images']['train']} / {m['images']['test']}",
                db(psnr["noisy"]),
                db(psnr["recovered"]),
                db(psnr["gain"]),
                db(REFERENCE[name]),
                _denoiser_reference_note(name, m),
            ]
        )
    return rows


def _earlier(m: dict) -> str:
    lineage = m.get("initialised_from")
    if not lineage:
        return ""
    return (
        f" Started from the weights of {lineage['run']} (--init_from: "
        f"{lineage['epochs']} earlier epochs, {_minutes(lineage['train_seconds'])} "
        "min)."
    )


def _denoiser_settings(m: dict) -> str:
    c = m["config"]
    return (
        f"{c['arch']}: {c['num_blocks']} blocks x {c['filters']} channels at "
        f"1/{c['downscale']} resolution (pixel-unshuffle {c['downscale']}), "
        f"{m['parameters']:,} parameters; Adam, peak learning rate "
        f"{c['learning_rate']:g}, {c['warmup_epochs']:g} warm-up epochs then "
        f"cosine decay, gradient clipnorm {c['clipnorm']:g}, batch "
        f"{c['batch_size']}, {c['epochs']} epochs, augmentation "
        f"{'on' if c['augment'] else 'off'}, seed {c['seed']}; trained on fresh "
        f"noise every epoch, evaluated on {m['images']['test']} test images with "
        f"fixed noise (seed {m['test_noise_seed']}), sigma {m['sigma']:g}."
    ) + _earlier(m)


def _denoiser_section(steps: dict, study: dict) -> list:
    blocks = [("h2", "2. Denoisers: ResNet against the same net without skips")]
    blocks += [
        ("p", "What was done: " + _denoiser_settings(steps[n]["metrics"]))
        for n in ("resnet", "plain")
        if n in steps
    ]
    header = [
        "net",
        "model",
        "parameters",
        "epochs",
        "train min",
        "images train / test",
        "noisy PSNR",
        "recovered PSNR",
        "gain",
        "reference",
        "note",
    ]
    blocks.append(("table", header, _denoiser_rows(steps)))
    if "comparison" in study:
        pair = study["comparison"]["pairs"][0]
        blocks.append(
            (
                "p",
                "Paired comparison on the same noisy test images (ResNet - "
                f"plain, per image): {pair['mean_difference']:+.3f} dB, standard "
                f"error {pair['standard_error']:.3f} dB; ResNet better on "
                f"{percent(pair['fraction_better'])} of the images.",
            )
        )
    for name in ("resnet", "plain"):
        if name in steps:
            blocks += _figures(
                steps[name],
                {
                    "recovery_examples.png": f"{name}: noisy, recovered, original",
                    "psnr_histogram.png": f"{name}: PSNR per test image",
                },
            )
    return blocks


def _classifier_section(step: dict) -> list:
    m = step["metrics"]
    c = m["config"]
    per_class = [
        [name, percent(rate)] for name, rate in m["per_class_accuracy"].items()
    ]
    return [
        ("h2", "3. Classifier"),
        (
            "p",
            f"What was done: {m['model']} (width {c['width']}, "
            f"{m['parameters']:,} parameters, logits output), SGD Nesterov "
            f"momentum {c['momentum']:g}, weight decay {c['weight_decay']:g}, "
            f"peak learning rate {c['learning_rate']:g} with {c['warmup_epochs']:g} "
            f"warm-up epochs then cosine decay, batch {c['batch_size']}, "
            f"{c['epochs']} epochs, crop+flip augmentation "
            f"{'on' if c['augment'] else 'off'}, seed {c['seed']}; "
            f"{m['images']['train']} train images, {m['images']['test']} test "
            f"images, {_minutes(m.get('train_seconds_total'))} training minutes.",
        ),
        (
            "table",
            ["quantity", "this study", "reference (original study)"],
            [["test accuracy", percent(m["test_accuracy"]), NOT_REPORTED]],
        ),
        ("table", ["class", "accuracy"], per_class),
        *_figures(step, {"confusion_matrix.png": "confusion matrix (test set)"}),
    ]


def _targeted_section(steps: dict) -> list:
    blocks = [("h2", "4. Targeted attacks")]
    rows = []
    for name in ("fgsm", "iterative"):
        if name not in steps:
            continue
        m = steps[name]["metrics"]
        s = m["settings"]
        extra = (
            f", {s['num_steps']} steps of {s['step_size']:g}"
            f"{', random start' if s.get('random_start') else ''}"
            if m["method"] == "iterative"
            else ""
        )
        blocks.append(
            (
                "p",
                f"{m['method']}: {s['algorithm']}. Budget L-inf eps "
                f"{s['epsilon']:g}{extra}; {m['images']} {m['images_chosen']} "
                f"test images, targets {m['config']['target_mode']}, seed "
                f"{m['config']['seed']}.",
            )
        )
        rows.append(
            [
                m["method"],
                f"{s['epsilon']:g}",
                str(m["images"]),
                percent(m["targeted_success_rate"]),
                percent(m["untargeted_misclassification_rate"]),
                f"{m['linf_norm']['max']:.4f}",
                f"{m['l2_norm']['mean']:.4f}",
                db(m["psnr_perturbed_vs_original_db"]),
                NOT_REPORTED,
            ]
        )
    header = [
        "attack",
        "eps",
        "images",
        "targeted success",
        "misclassified",
        "max L-inf",
        "mean L2",
        "PSNR perturbed vs original",
        "reference",
    ]
    blocks.append(("table", header, rows))
    for name in ("fgsm", "iterative"):
        if name in steps:
            blocks += _figures(
                steps[name],
                {
                    f"example_{i}.png": f"{name}: original, perturbed, "
                    "perturbation (scaled), top-3 before and after"
                    for i in range(2)
                },
            )
    return blocks


def _universal_section(steps: dict) -> list:
    classifier = steps.get("classifier", {}).get("metrics")
    blocks = [("h2", "5. Universal perturbation")]
    rows = []
    for name in ("universal", "universal_deepfool"):
        if name not in steps:
            continue
        m = steps[name]["metrics"]
        s = m["settings"]
        details = ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in s.items()
            if k not in ("algorithm", "norm", "xi", "xi_times_255", "fooling")
        )
        blocks.append(
            (
                "p",
                f"{name} ({m['method']}): {s['algorithm']}. {s['norm']} ball of "
                f"radius xi = {s['xi_times_255']:.3g}/255; {details}; computed on "
                f"{m['images']['train']} training images, rate also on "
                f"{m['images']['test']} unseen test images. Fooling: {s['fooling']}.",
            )
        )
        rows.append(
            [
                m["method"],
                f"{s['norm']} {s['xi_times_255']:.3g}/255",
                f"{m['images']['train']} / {m['images']['test']}",
                percent(m["fooling_rate_train"]),
                percent(m["fooling_rate_test"]),
                f"{percent(m['random_noise_fooling_rate_train'])} / "
                f"{percent(m['random_noise_fooling_rate_test'])}",
                f"{m['v_linf'] * 255:.2f}/255",
                f"{m['v_l2']:.4f}",
                _minutes(m.get("compute_seconds")),
                f"{percent(REFERENCE['universal_fooling_rate'])} (training set)",
                _universal_reference_note(m, classifier),
            ]
        )
    header = [
        "method",
        "budget",
        "images train / test",
        "fooling train",
        "fooling test",
        "random noise train / test",
        "L-inf of v",
        "L2 of v",
        "minutes",
        "reference",
        "note",
    ]
    blocks.append(("table", header, rows))
    if "universal_sweep" in steps:
        sweep = steps["universal_sweep"]["metrics"]
        blocks.append(("p", _sweep_budgets(sweep)))
        blocks.append(_sweep_table(sweep))
    for name in ("universal", "universal_deepfool", "universal_sweep"):
        if name in steps:
            blocks += _figures(
                steps[name],
                {
                    "perturbation.png": f"{name}: the perturbation v (scaled)",
                    "fooled_flows.png": f"{name}: where fooled test images go",
                    "examples.png": f"{name}: unseen test images with v",
                    "sweep.png": "fooling rate against xi",
                },
            )
    return blocks


def _sweep_table(sweep: dict) -> tuple:
    """Fooling rates (train / test) per method and xi, with minutes."""
    header = [f"{sweep.get('norm', '')} xi x 255".strip()] + [
        f"{xi * 255:.3g}" for xi in sweep["xi"]
    ]
    rows = []
    for method in ("deepfool", "sgd", "random"):
        if method not in sweep:
            continue
        for split in ("train", "test"):
            name = "random noise" if method == "random" else method
            rows.append(
                [f"{name}, {split}"] + [percent(r) for r in sweep[method][split]]
            )
        if "seconds" in sweep[method]:
            rows.append(
                [f"{method}, minutes"] + [_minutes(t) for t in sweep[method]["seconds"]]
            )
    return ("table", header, rows)


def _sweep_budgets(sweep: dict) -> str:
    """Where each method's training-set rate reaches the sweep's level."""
    level = sweep.get("level", REFERENCE["universal_fooling_rate"])
    found = []
    for method in ("deepfool", "sgd"):
        if method not in sweep:
            continue
        xi = sweep[method].get("xi_reaching_level_train")
        found.append(
            f"{method} at xi = {xi * 255:.2f}/255"
            if xi is not None
            else f"{method} not within xi <= {max(sweep['xi']) * 255:.3g}/255"
        )
    images = sweep.get("images")
    where = (
        f" (v computed on {images['train']} training images; rates also on "
        f"{images['test']} test images)"
        if images
        else ""
    )
    return (
        f"Sweep{where}: budget at which the fooling rate on the training images "
        f"reaches {percent(level)} (linear interpolation between grid points): "
        + "; ".join(found)
        + "."
    )


def _details_section(study: dict) -> list:
    steps = study["by_step"]
    rows, total = [], 0.0
    for entry in study["steps"]:
        step = steps[entry["step"]]
        seconds = step["record"].get("seconds")
        # A step may have reused work of earlier invocations (the sweep's
        # runs): its result's own compute_seconds then exceeds the step's.
        computed = step["metrics"].get("compute_seconds")
        if computed is not None and computed > (seconds or 0.0):
            seconds = computed
        total += seconds or 0.0
        rows.append(
            [
                entry["step"],
                entry["app"],
                entry["flagfile"],
                STATUS_TEXT.get(entry["status"], entry["status"]),
                _minutes(seconds),
            ]
        )
    for name in study.get("not_configured", []):
        rows.append([name, "", "", "not in this study (no flag file given)", ""])
    first = next(iter(steps.values()))["metrics"] if steps else {}
    versions = ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items())
    machine = first.get("machine", {})
    sizes = [
        f"{name} {_sizes(s['metrics']['images'])}"
        for name, s in steps.items()
        if "images" in s["metrics"]
    ]
    return [
        ("h2", "Runs, data and machine"),
        ("table", ["step", "app", "flag file", "this invocation", "minutes"], rows),
        (
            "list",
            [
                f"Data: {study.get('data_source') or 'n/a'}.",
                "Images per step: " + "; ".join(sizes) + ".",
                f"Total minutes of the steps (their last runs): {total / 60:.1f}; "
                f"this invocation: {study['invocation_seconds'] / 60:.1f}.",
                f"Libraries: {versions}.",
                f"Machine: {machine.get('platform', 'n/a')}, "
                f"{machine.get('cpu_count', 'n/a')} CPUs.",
                "Reference figures: those reported for the original study; its "
                "setup as recorded in flags/resnet.cfg (8 x 64 at full "
                "resolution, 100 epochs, sigma 0.1); full CIFAR-10 (50000 train, "
                "10000 test images) is assumed.",
            ],
        ),
    ]


def blocks(study: dict) -> list:
    """The report as document blocks (see the comment above `_headline`)."""
    steps = study["by_step"]
    document = [
        ("h1", "CIFAR-10 denoising and adversarial examples: study report"),
        ("p", f"Study folder {study['study_dir']}, finished {study['finished']}."),
    ]
    document += _headline(steps, study)
    if "noise" in steps:
        document += _noise_section(steps["noise"])
    if {"resnet", "plain"} & set(steps):
        document += _denoiser_section(steps, study)
    if "classifier" in steps:
        document += _classifier_section(steps["classifier"])
    if {"fgsm", "iterative"} & set(steps):
        document += _targeted_section(steps)
    if {"universal", "universal_deepfool", "universal_sweep"} & set(steps):
        document += _universal_section(steps)
    return document + _details_section(study)


# --------------------------------------------------------------------------
# Rendering.


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(document: list) -> str:
    """The blocks as Markdown; figures link to the PNGs beside report.md."""
    lines = []
    for block in document:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, header, rows = block
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + " --- |" * len(header))
            lines += [
                "| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows
            ]
            lines.append("")
        elif kind == "figure":
            _, path, caption = block
            lines += [f"![{caption}]({path.replace(os.sep, '/')})", "", f"*{caption}*"]
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  margin: 0; color: #1b1b1b; background: #fff; line-height: 1.45; }
main { max-width: 74rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.5rem; vertical-align: top;
  text-align: left; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #fafafa; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #555; }
.missing { color: #a00; }
td.number { white-space: nowrap; }
"""


def _data_uri(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        encoded = base64.b64encode(f.read()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def _html_cell(value) -> str:
    text = str(value)
    # Short numeric cells ("28.430 ± 1.270 dB", "65.17%") stay on one line.
    number = len(text) <= 24 and any(c.isdigit() for c in text)
    opening = '<td class="number">' if number else "<td>"
    return f"{opening}{html_lib.escape(text)}</td>"


def html(document: list, study_dir: str, title: str = "Study report") -> str:
    """The blocks as one self-contained HTML page (figures as data URIs)."""
    escape = html_lib.escape
    parts = []
    for block in document:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{escape(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{escape(block[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{escape(item)}</li>" for item in block[1])
            parts.append(f"<ul>{items}</ul>")
        elif kind == "table":
            _, header, rows = block
            head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows
            )
            parts.append(
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
        elif kind == "figure":
            _, path, caption = block
            uri = _data_uri(os.path.join(study_dir, path))
            if uri is None:
                parts.append(f'<p class="missing">figure missing: {escape(path)}</p>')
                continue
            parts.append(
                f'<figure><img src="{uri}" alt="{escape(caption)}">'
                f"<figcaption>{escape(caption)} ({escape(path)})</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )


def write(study_dir: str) -> dict:
    """Writes study_dir/report.md and report.html; returns their paths."""
    study = load(study_dir)
    document = blocks(study)
    paths = {
        "md": os.path.join(study_dir, "report.md"),
        "html": os.path.join(study_dir, "report.html"),
    }
    outputs.write_text(paths["md"], markdown(document))
    title = f"Study report ({time.strftime('%Y-%m-%d')})"
    outputs.write_text(paths["html"], html(document, study_dir, title))
    return paths
