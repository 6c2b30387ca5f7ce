"""The figures reported for the original study, and how ours compare.

Every sentence that quotes a reference figure is built from the constants
here, so each number is typed once.
"""

from __future__ import annotations

from cifar_denoise_adv.adversarial.sweep import REFERENCE_FOOLING_RATE
from cifar_denoise_adv.study.report.text import percent

# Figures reported for the original study. Its setup, as far as this project
# records it (flags/resnet_reference.cfg, flags/study_gpu.cfg): the reference
# denoiser is 8 residual blocks x 64 channels at full resolution trained 100
# epochs, sigma = 0.1; full CIFAR-10 (50000 train, 10000 test images) is
# assumed.
REFERENCE = {
    "noisy_psnr": {"mean": 19.997, "std": 0.11, "sigma": 0.1},
    "resnet": {"mean": 28.43, "std": 1.27},
    "plain": {"mean": 28.17, "std": 1.23},
    "universal_fooling_rate": REFERENCE_FOOLING_RATE,
}
REFERENCE_DENOISER = {"num_blocks": 8, "filters": 64, "downscale": 1, "epochs": 100}
REFERENCE_IMAGES = {"train": 50000, "test": 10000}
# Differences smaller than these count as agreement.
TOLERANCE = {"psnr_db": 0.05, "denoised_db": 0.1, "rate": 0.02}
# The reference reports means only: its ResNet - plain gap is their difference.
REFERENCE_GAP_DB = REFERENCE["resnet"]["mean"] - REFERENCE["plain"]["mean"]


def reference_data() -> str:
    """'full CIFAR-10, 50000 / 10000' from REFERENCE_IMAGES."""
    return f"full CIFAR-10, {REFERENCE_IMAGES['train']} / {REFERENCE_IMAGES['test']}"


def reference_denoiser() -> str:
    """'8 x 64 at full resolution, 100 epochs' from REFERENCE_DENOISER."""
    r = REFERENCE_DENOISER
    resolution = "full" if r["downscale"] == 1 else f"1/{r['downscale']}"
    return (
        f"{r['num_blocks']} x {r['filters']} at {resolution} resolution, "
        f"{r['epochs']} epochs"
    )


NOT_REPORTED = "not reported"


def agrees(ours: float, reference: float, tolerance: float, reasons: list[str]):
    """'agrees' within `tolerance`, else the reasons the figures differ."""
    if abs(ours - reference) <= tolerance:
        return f"agrees (within {tolerance:g})"
    return "; ".join(reasons) or "differs; no setting explains it"


def data_reason(images: dict, splits=("train", "test")) -> list[str]:
    """The data-size reason, when our image counts differ from the reference's."""
    if all(images.get(s) == REFERENCE_IMAGES[s] for s in splits if s in images):
        return []
    sizes = " / ".join(f"{images[s]} {s}" for s in splits if s in images)
    return [f"data size: {sizes} images (reference: {reference_data()})"]


# --------------------------------------------------------------------------
# The document, as blocks: ("h1"|"h2"|"h3"|"p", text), ("list", [items]),
# ("table", header, rows), ("figure", path relative to study_dir, caption).


def noise_reference_note(metrics: dict, clipped: bool) -> str:
    """How the noisy test PSNR compares with the reference's, and why."""
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
    reasons += data_reason(metrics["images"], ("test",))
    return agrees(stats["mean"], reference["mean"], TOLERANCE["psnr_db"], reasons)


def denoiser_reference_note(step: str, metrics: dict) -> str:
    """How a denoiser's recovered PSNR compares with the reference's, and why."""
    config = metrics["config"]
    reasons = []
    ours = tuple(config[k] for k in REFERENCE_DENOISER)
    if ours != tuple(REFERENCE_DENOISER.values()):
        reasons.append(
            f"budget: {config['num_blocks']} blocks x {config['filters']} at "
            f"1/{config['downscale']} resolution, {config['epochs']} epochs "
            f"(reference: {reference_denoiser()})"
        )
    reasons += data_reason(metrics["images"])
    if abs(metrics["sigma"] - REFERENCE["noisy_psnr"]["sigma"]) > 1e-9:
        reasons.append(f"sigma {metrics['sigma']:g} (reference 0.1)")
    noisy = metrics["psnr_db"]["noisy"]["mean"]
    if abs(noisy - REFERENCE["noisy_psnr"]["mean"]) > TOLERANCE["psnr_db"]:
        reasons.append(
            f"noisy input {noisy:.3f} dB against the reference's "
            f"{REFERENCE['noisy_psnr']['mean']:.3f} dB "
            "(clipped noise, see section 1)"
        )
    return agrees(
        metrics["psnr_db"]["recovered"]["mean"],
        REFERENCE[step]["mean"],
        TOLERANCE["denoised_db"],
        reasons,
    )


def universal_reference_note(metrics: dict, classifier: dict | None) -> str:
    """How a universal fooling rate compares with the reference's, and why."""
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
        attacked = ""
        tta = metrics.get("classifier_tta") or {}
        if tta.get("used") == 0 and tta.get("exported", 0) > 0:
            attacked = (
                " (the attacked network, without its test-time augmentation: "
                f"{percent(classifier.get('test_accuracy_without_tta'))})"
            )
        reasons.append(
            "classifier: ours has "
            f"{percent(classifier['test_accuracy'])} test accuracy{attacked}, "
            f"trained {classifier['epochs']} epochs on "
            f"{classifier['images']['train']} images"
        )
    reasons += data_reason(metrics["images"])
    # The reference rate is measured on the images v was computed on.
    return agrees(
        metrics["fooling_rate_train"],
        REFERENCE["universal_fooling_rate"],
        TOLERANCE["rate"],
        reasons,
    )
