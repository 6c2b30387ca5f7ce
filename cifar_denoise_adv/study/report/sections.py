"""The report's sections as document blocks: headline, noise, denoisers, runs.

A document is a list of blocks: ("h1"|"h2"|"h3"|"p", text), ("list", items),
("table", header, rows), ("figure", path relative to study_dir, caption).
"""

from __future__ import annotations

from cifar_denoise_adv.study.report import adversarial_sections
from cifar_denoise_adv.study.report import defense_section
from cifar_denoise_adv.study.report.references import NOT_REPORTED
from cifar_denoise_adv.study.report.references import REFERENCE
from cifar_denoise_adv.study.report.references import REFERENCE_GAP_DB
from cifar_denoise_adv.study.report.references import denoiser_reference_note
from cifar_denoise_adv.study.report.references import noise_reference_note
from cifar_denoise_adv.study.report.references import reference_data
from cifar_denoise_adv.study.report.references import reference_denoiser
from cifar_denoise_adv.study.report.references import universal_reference_note
from cifar_denoise_adv.study.report.text import db
from cifar_denoise_adv.study.report.text import duration
from cifar_denoise_adv.study.report.text import figures
from cifar_denoise_adv.study.report.text import percent
from cifar_denoise_adv.study.report.text import precision
from cifar_denoise_adv.study.report.text import sizes

STATUS_TEXT = {
    "ran": "ran",
    "resumed": "resumed (continued an interrupted run)",
    "skipped": "skipped: outputs exist and its flags are unchanged",
}


def headline(steps: dict, study: dict) -> list:
    """The headline table: each question's figure beside the reference."""
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
                    noise_reference_note(m, clipped),
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
                    denoiser_reference_note(step, m),
                ]
            )
    if "comparison" in study:
        pair = study["comparison"]["pairs"][0]
        rows.append(
            [
                "ResNet - plain, paired per image",
                f"{pair['mean_difference']:+.3f} ± {pair['standard_error']:.3f} dB "
                "(s.e.)",
                f"{REFERENCE_GAP_DB:+.3f} dB (difference of the means)",
                "the reference gives means only, so no paired standard error",
            ]
        )
    classifier = steps.get("classifier", {}).get("metrics")
    if classifier:
        rows.append(
            [
                f"classifier accuracy on {classifier['images']['test']} test images "
                f"(validation {classifier['images'].get('validation', 0)}, training "
                f"{classifier['images']['train']})",
                f"{percent(classifier['test_accuracy'])} "
                f"({_optional_percent(classifier.get('validation_accuracy'))}, "
                f"{_optional_percent(classifier.get('train_accuracy'))})",
                NOT_REPORTED,
                ""
                if classifier["images"].get("validation")
                else "no validation split: this run trains on every training image, "
                "with a recipe chosen on a split (its flag file says where)",
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
                    f"universal ({m['method']}) fooling rate on "
                    f"{m['images']['test']} unseen test images (on the "
                    f"{m['images']['train']} training images v was computed on)",
                    f"{percent(m['fooling_rate_test'])} "
                    f"({percent(m['fooling_rate_train'])})",
                    f"{percent(REFERENCE['universal_fooling_rate'])} (training set)",
                    "same norm, test images: random signs "
                    f"{percent(m['random_noise_fooling_rate_test'])}, chessboard "
                    f"{percent(m['chessboard_fooling_rate_test'])}"
                    + ("" if m["beats_baselines_test"] else " (NOT beaten)")
                    + "; training images against the reference's training-set "
                    f"rate: {universal_reference_note(m, classifier)}",
                ]
            )
    if "defend" in steps:
        rows.append(defense_section.headline_row(steps["defend"]))
    header = ["quantity", "this study", "reference (original study)", "why they differ"]
    return [("h2", "Headline"), ("table", header, rows)]


def _optional_percent(rate: float | None) -> str:
    return "n/a" if rate is None else percent(rate)


def noise_section(step: dict) -> list:
    """Section 1: sigma for the target PSNR and PSNR(x, y) on both splits."""
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
                    noise_reference_note(m, mode == "clipped") if test else "",
                ]
            )
    header = ["split", "noise", "PSNR(x, y)", "min", "images", "reference", "note"]
    blocks += [
        ("h3", f"PSNR(x, y) at sigma {m['sigma_used']:g}"),
        ("table", header, rows),
        ("p", m["why_sigmas_differ"]),
    ]
    return blocks + figures(step, {"noise_examples.png": "original, noisy, noise"})


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
                duration(m.get("train_seconds_total")),
                f"{m['images']['train']} / {m['images']['test']}",
                db(psnr["noisy"]),
                db(psnr["recovered"]),
                db(psnr["gain"]),
                db(REFERENCE[name]),
                denoiser_reference_note(name, m),
            ]
        )
    return rows


def _earlier(m: dict) -> str:
    lineage = m.get("initialised_from")
    if not lineage:
        return ""
    return (
        f" Started from the weights of {lineage['run']} (--init_from: "
        f"{lineage['epochs']} earlier epochs, {duration(lineage['train_seconds'])})."
    )


def denoiser_settings(m: dict) -> str:
    """One sentence with a denoiser run's architecture and training recipe."""
    c = m["config"]
    return (
        f"{c['arch']}: {c['num_blocks']} blocks x {c['filters']} channels at "
        f"1/{c['downscale']} resolution (pixel-unshuffle {c['downscale']}), "
        f"{m['parameters']:,} parameters; Adam, peak learning rate "
        f"{c['learning_rate']:g}, {c['warmup_epochs']:g} warm-up epochs then "
        f"cosine decay, gradient clipnorm {c['clipnorm']:g}, batch "
        f"{c['batch_size']}, {c['epochs']} epochs, augmentation "
        f"{'on' if c['augment'] else 'off'}, seed {c['seed']}, {precision(m)}; "
        "trained on fresh "
        f"noise every epoch, evaluated on {m['images']['test']} test images with "
        f"fixed noise (seed {m['test_noise_seed']}), sigma {m['sigma']:g}."
    ) + _earlier(m)


def denoiser_section(steps: dict, study: dict) -> list:
    """Section 2: ResNet against plain, settings, table, paired comparison."""
    blocks = [("h2", "2. Denoisers: ResNet against the same net without skips")]
    blocks += [
        ("p", "What was done: " + denoiser_settings(steps[n]["metrics"]))
        for n in ("resnet", "plain")
        if n in steps
    ]
    header = [
        "net",
        "model",
        "parameters",
        "epochs",
        "training time",
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
    if study.get("budget_gaps", {}).get("epochs") is not None:
        blocks.append(("p", budget_gaps_text(study["budget_gaps"])))
    if "denoisers_validation.png" in study.get("figures", {}):
        blocks.append(
            (
                "figure",
                "denoisers_validation.png",
                "validation PSNR against epochs and against training minutes",
            )
        )
    for name in ("resnet", "plain"):
        if name in steps:
            blocks += figures(
                steps[name],
                {
                    "recovery_examples.png": f"{name}: noisy, recovered, original",
                    "psnr_histogram.png": f"{name}: PSNR per test image",
                },
            )
    return blocks


def budget_gaps_text(gaps: dict) -> str:
    """The ResNet - plain validation gap at equal epochs and equal minutes."""
    return (
        "Validation PSNR, ResNet - plain (held-out training images, per epoch): "
        f"{gaps['gap_at_equal_epochs_db']:+.3f} dB after {gaps['epochs']} epochs "
        f"each, {gaps['gap_at_equal_minutes_db']:+.3f} dB after "
        f"{gaps['minutes']:.1f} training minutes each."
    )


def warnings_section(study: dict) -> list:
    """Every step's warnings (its metrics.json's "warnings"), none left out."""
    items = [
        f"{name}: {line}"
        for name, step in study["by_step"].items()
        for line in step["metrics"].get("warnings") or []
    ]
    return [("h2", "Warnings"), ("list", items)] if items else []


def details_section(study: dict) -> list:
    """Runs, their times, data, libraries and machine."""
    steps = study["by_step"]
    rows, total = [], 0.0
    for entry in study["steps"]:
        step = steps[entry["step"]]
        seconds = step["record"].get("seconds")
        # A step may have reused work of earlier invocations (the sweep's
        # runs, a resumed training run's earlier epochs): its result's own
        # compute or training seconds then exceed the step's last piece.
        for key in ("compute_seconds", "train_seconds_total"):
            computed = step["metrics"].get(key)
            if computed is not None and computed > (seconds or 0.0):
                seconds = computed
        total += seconds or 0.0
        rows.append(
            [
                entry["step"],
                entry["app"],
                entry["flagfile"],
                STATUS_TEXT.get(entry["status"], entry["status"]),
                duration(seconds),
            ]
        )
    for name in study.get("not_configured", []):
        rows.append([name, "", "", "not in this study (no flag file given)", ""])
    first = next(iter(steps.values()))["metrics"] if steps else {}
    versions = ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items())
    machine = first.get("machine", {})
    counts = [
        f"{name} {sizes(s['metrics']['images'])}"
        for name, s in steps.items()
        if "images" in s["metrics"]
    ]
    return [
        ("h2", "Runs, data and machine"),
        ("table", ["step", "app", "flag file", "this invocation", "time"], rows),
        (
            "list",
            [
                f"Data: {study.get('data_source') or 'n/a'}.",
                "Images per step: " + "; ".join(counts) + ".",
                f"Total minutes of the steps (their last runs): {total / 60:.1f}; "
                f"this invocation: {study['invocation_seconds'] / 60:.1f}.",
                f"Libraries: {versions}.",
                f"Machine: {machine.get('platform', 'n/a')}, "
                f"{machine.get('cpu_count', 'n/a')} CPUs.",
                "Reference figures: those reported for the original study; its "
                "setup as recorded in flags/resnet_reference.cfg "
                f"({reference_denoiser()}, sigma "
                f"{REFERENCE['noisy_psnr']['sigma']:g}); {reference_data()} "
                "train / test images are assumed.",
            ],
        ),
    ]


def blocks(study: dict) -> list:
    """The report as document blocks (see the comment above `headline`)."""
    steps = study["by_step"]
    document = [
        ("h1", "CIFAR-10 denoising and adversarial examples: study report"),
        ("p", f"Study folder {study['study_dir']}, finished {study['finished']}."),
    ]
    document += headline(steps, study)
    document += warnings_section(study)
    if "noise" in steps:
        document += noise_section(steps["noise"])
    if {"resnet", "plain"} & set(steps):
        document += denoiser_section(steps, study)
    if "classifier" in steps:
        document += adversarial_sections.classifier_section(steps["classifier"])
    if {"fgsm", "iterative"} & set(steps):
        document += adversarial_sections.targeted_section(steps)
    if {"universal", "universal_deepfool", "universal_sweep"} & set(steps):
        document += adversarial_sections.universal_section(steps)
    if "defend" in steps:
        document += defense_section.defense_section(steps["defend"])
    return document + details_section(study)
