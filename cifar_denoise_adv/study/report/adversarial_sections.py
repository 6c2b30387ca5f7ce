"""The report's sections on the adversarial study: classifier, attacks, universal."""

from __future__ import annotations

from cifar_denoise_adv.study.report.references import NOT_REPORTED
from cifar_denoise_adv.study.report.references import REFERENCE
from cifar_denoise_adv.study.report.references import universal_reference_note
from cifar_denoise_adv.study.report.text import db
from cifar_denoise_adv.study.report.text import figures
from cifar_denoise_adv.study.report.text import minutes
from cifar_denoise_adv.study.report.text import percent


def classifier_section(step: dict) -> list:
    """Section 3: the classifier's settings, accuracy and confusion matrix."""
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
            f"images, {minutes(m.get('train_seconds_total'))} training minutes.",
        ),
        (
            "table",
            ["quantity", "this study", "reference (original study)"],
            [["test accuracy", percent(m["test_accuracy"]), NOT_REPORTED]],
        ),
        ("table", ["class", "accuracy"], per_class),
        *figures(step, {"confusion_matrix.png": "confusion matrix (test set)"}),
    ]


def targeted_section(steps: dict) -> list:
    """Section 4: the targeted attacks' settings, rates, norms and examples."""
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
            blocks += figures(
                steps[name],
                {
                    f"example_{i}.png": f"{name}: original, perturbed, "
                    "perturbation (scaled), top-3 before and after"
                    for i in range(2)
                },
            )
    return blocks


def universal_section(steps: dict) -> list:
    """Section 5: universal perturbations, baselines, the sweep and figures."""
    classifier = steps.get("classifier", {}).get("metrics")
    blocks = [("h2", "5. Universal perturbation")]
    rows, notes = [], []
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
        rows.append(universal_row(m))
        notes.append(
            f"{m['method']}: on the training images "
            f"{percent(m['fooling_rate_train'])} against the reference's "
            f"{percent(REFERENCE['universal_fooling_rate'])} (also a training-set "
            f"rate): {universal_reference_note(m, classifier)}."
        )
    header = [
        "method",
        "budget",
        "images train / test",
        "fooling, unseen test images",
        "fooling, training images",
        "random signs test / train",
        "chessboard test / train",
        "beats both baselines (test)",
        "L-inf of v",
        "minutes",
    ]
    blocks.append(("table", header, rows))
    blocks.append(("list", notes))
    if "universal_sweep" in steps:
        sweep = steps["universal_sweep"]["metrics"]
        blocks.append(("p", sweep_budgets(sweep)))
        blocks.append(sweep_table(sweep))
    for name in ("universal", "universal_deepfool", "universal_sweep"):
        if name in steps:
            blocks += figures(
                steps[name],
                {
                    "perturbation.png": f"{name}: the perturbation v (scaled)",
                    "fooled_flows.png": f"{name}: where fooled test images go",
                    "examples.png": f"{name}: unseen test images with v",
                    "sweep.png": "fooling rate against xi",
                },
            )
    return blocks


def universal_row(m: dict) -> list:
    """One universal run: its rates on unseen and training images, baselines."""
    s = m["settings"]
    return [
        m["method"],
        f"{s['norm']} {s['xi_times_255']:.3g}/255",
        f"{m['images']['train']} / {m['images']['test']}",
        percent(m["fooling_rate_test"]),
        percent(m["fooling_rate_train"]),
        f"{percent(m['random_noise_fooling_rate_test'])} / "
        f"{percent(m['random_noise_fooling_rate_train'])}",
        f"{percent(m['chessboard_fooling_rate_test'])} / "
        f"{percent(m['chessboard_fooling_rate_train'])} "
        f"({m['chessboard_square']} px squares)",
        "yes" if m["beats_baselines_test"] else "NO",
        f"{m['v_linf'] * 255:.2f}/255",
        minutes(m.get("compute_seconds")),
    ]


def sweep_table(sweep: dict) -> tuple:
    """Fooling rates (train / test) per method and xi, with minutes."""
    header = [f"{sweep.get('norm', '')} xi x 255".strip()] + [
        f"{xi * 255:.3g}" for xi in sweep["xi"]
    ]
    rows = []
    names = {"random": "random signs", "chessboard": "chessboard"}
    for method in ("deepfool", "sgd", "random", "chessboard"):
        if method not in sweep:
            continue
        for split in ("train", "test"):
            name = names.get(method, method)
            rows.append(
                [f"{name}, {split}"] + [percent(r) for r in sweep[method][split]]
            )
        if "seconds" in sweep[method]:
            rows.append(
                [f"{method}, minutes"] + [minutes(t) for t in sweep[method]["seconds"]]
            )
    return ("table", header, rows)


def sweep_budgets(sweep: dict) -> str:
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
