"""The noise job: sigma for a target PSNR, noisy train/test sets, figures.

`run(config)` is what the `noise` app and the study call: it writes into
`config.run_dir` and returns the record it wrote to metrics.json.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import noise as noise_lib
from cifar_denoise_adv.denoising import pipelines

NOISE_SCALE = 2.5  # how much the noise panels are magnified
PSNR_DEFINITION = (
    "10 log10(1 / MSE) per image, MSE over 32x32x3; "
    "std is the population std over images"
)
WHY_SIGMAS_DIFFER = (
    "The analytic sigma gives the target PSNR for unclipped noise "
    "(E[(y-x)^2] = sigma^2). Clipping y to [0, 1] removes part of the noise "
    "at dark and bright pixels, so the clipped copy is closer to x and its "
    "PSNR is higher; a larger sigma is needed for the same mean PSNR."
)


@dataclasses.dataclass(frozen=True)
class NoiseConfig(config_lib.RunConfig):
    """The noise job's settings (the `noise` app's flags)."""

    target_psnr: float = setting(20.0, "Mean PSNR(x, y) wanted, in dB.", low=0.0)
    sigma: float = setting(
        0.1,
        "Noise std for the statistics, figure and export: "
        "y = clip(x + N(0, sigma^2), 0, 1).",
        unit=config_lib.PIXEL,
        low=0.0,
        low_open=True,
    )
    calibration_split: str = setting(
        "test", "Split the clipped sigma is fitted on.", choices=data.SPLITS
    )
    max_train_images: int = setting(
        0, "Use at most this many training images (0: all).", low=0
    )
    max_test_images: int = setting(
        0, "Use at most this many test images (0: all).", low=0
    )
    export: bool = setting(
        False, "Write the noisy train and test sets as .npz (with sigma and seed)."
    )
    num_examples: int = setting(
        6, "Rows of the example figure.", low=1, defines_result=False
    )


# The evaluation-noise seed of each split is seed + its offset, so splits
# draw apart; "validation" is the held-out training images of the training
# jobs (`--validation_images`).
NOISE_SEED_OFFSETS = {"train": 0, "test": 1, "validation": 2}


def split_seed(seed: int, split: str) -> int:
    """The evaluation-noise seed of a split: seed + NOISE_SEED_OFFSETS[split]."""
    return seed + NOISE_SEED_OFFSETS[split]


def _noise_draws(split: str, data_dir: str | None, seed: int, limit: int | None):
    """The split's images with fixed unit-noise draws, as batches, and labels."""
    dataset = data.load(split, data_dir).take(limit or -1)
    labels = np.concatenate([y for _, y in dataset.batch(4096).as_numpy_iterator()])
    pairs = pipelines.with_unit_noise(dataset, seed=split_seed(seed, split))
    return [(x, z) for x, z in pairs], labels


def _psnr_stats(batches, sigma: float, clip: bool) -> dict:
    values = np.concatenate(
        [noise_lib.noisy_psnr(x, z, sigma, clip=clip).numpy() for x, z in batches]
    )
    mean, std = noise_lib.mean_and_std(values)
    return {"mean": mean, "std": std, "min": float(values.min()), "images": len(values)}


def _examples_figure(batches, labels, sigma: float, count: int, title: str):
    images = batches[0][0].numpy()[:count]
    draws = batches[0][1].numpy()[:count]
    noisy = np.clip(images + sigma * draws, 0.0, 1.0)
    values = noise_lib.psnr(images, noisy).numpy()
    rows, captions = [], []
    for i in range(len(images)):
        rows.append(
            [images[i], noisy[i], plots.magnify(noisy[i] - images[i], NOISE_SCALE)]
        )
        name = data.CLASS_NAMES[labels[i]]
        captions.append([name, f"{name}, PSNR {values[i]:.2f} dB", "y - x"])
    columns = [
        "original x",
        f"noisy y (sigma {sigma:.4f})",
        f"noise x{NOISE_SCALE} + 0.5",
    ]
    figure = plots.image_grid(rows, captions, columns, title=title)
    return figure, np.stack([images, noisy, plots.magnify(noisy - images, NOISE_SCALE)])


def _export(config: NoiseConfig, split: str, batches, labels, log) -> str:
    run_dir, sigma, seed = config.run_dir, config.sigma, config.seed
    clean = np.concatenate([x.numpy() for x, _ in batches])
    noisy = np.concatenate(
        [np.clip(x.numpy() + sigma * z.numpy(), 0.0, 1.0) for x, z in batches]
    )
    path = os.path.join(run_dir, f"noisy_{split}.npz")
    outputs.save_npz(
        path,
        noisy=noisy.astype(np.float32),
        clean=np.round(clean * 255).astype(np.uint8),
        labels=labels,
        sigma=np.float32(sigma),
        seed=np.int64(split_seed(seed, split)),
    )
    outputs.write_json(
        path[: -len(".npz")] + ".json",
        {
            "file": os.path.basename(path),
            "images": len(noisy),
            "sigma": sigma,
            "clipped": True,
            "seed": split_seed(seed, split),
            "arrays": {
                "noisy": "float32 [N,32,32,3] in [0,1]",
                "clean": "uint8 [N,32,32,3]",
                "labels": "int64 [N]",
            },
        },
    )
    log(f"exported {path}")
    return path


def run(config: NoiseConfig, log=lambda message: None) -> dict:
    """Calibrates sigma, measures PSNR(x, y) on both splits, writes outputs.

    Evaluation noise is fixed per split: train draws with `seed`, test with
    `seed + 1` (`split_seed`). The data is read and sigma calibrated (a
    --target_psnr no sigma reaches is refused) before anything in run_dir
    changes (`runs.claim`). Writes metrics.json, noise_examples.png, tb/
    and, with `export`, noisy_train.npz and noisy_test.npz.

    Returns:
      The record written to metrics.json.
    """
    start = time.time()
    config = config_lib.resolve(config)
    with runs.claim(config, "noise", log) as held:
        draws, labels = _all_draws(config, log)
        sigmas = _sigmas(config, draws[config.calibration_split], log)
        held.begin()
        return _measure_and_write(config, draws, labels, sigmas, start, log)


def _all_draws(config: NoiseConfig, log) -> tuple[dict, dict]:
    """({split: noise draws}, {split: labels}) of both splits."""
    limits = {"train": config.max_train_images, "test": config.max_test_images}
    draws, labels = {}, {}
    for split in data.SPLITS:
        draws[split], labels[split] = _noise_draws(
            split, config.data_dir or None, config.seed, limits[split]
        )
        log(
            f"{split}: {len(labels[split])} images, noise seed "
            f"{split_seed(config.seed, split)}"
        )
    for line in _clamped(config, labels):
        log(f"warning: {line}")
    return draws, labels


def _measure_and_write(config, draws, labels, sigmas, start, log) -> dict:
    """PSNR(x, y) of both splits, the figures, the exports and the record."""
    psnr_xy = {
        split: {
            mode: _psnr_stats(draws[split], config.sigma, clip=mode == "clipped")
            for mode in ("clipped", "unclipped")
        }
        for split in data.SPLITS
    }
    _log_psnr(psnr_xy, config.sigma, log)
    _figures(config, draws["test"], labels["test"], sigmas)
    exported = {
        split: _export(config, split, draws[split], labels[split], log)
        for split in data.SPLITS
        if config.export
    }
    return outputs.write_record(
        config,
        "noise",
        {
            "images": {split: len(labels[split]) for split in data.SPLITS},
            "target_psnr_db": config.target_psnr,
            **sigmas,
            "calibration_split": config.calibration_split,
            "sigma_used": config.sigma,
            "why_sigmas_differ": WHY_SIGMAS_DIFFER,
            "noise_seed": {s: split_seed(config.seed, s) for s in data.SPLITS},
            "psnr_xy_db": psnr_xy,
            "psnr_definition": PSNR_DEFINITION,
            "exported": exported,
            "warnings": _clamped(config, labels),
        },
        start,
    )


def _clamped(config: NoiseConfig, labels: dict) -> list[str]:
    """A line per --max_*_images larger than its split (logged when loaded)."""
    lines = (
        config_lib.clamped(
            f"max_{split}_images",
            getattr(config, f"max_{split}_images"),
            len(labels[split]),
            split,
        )
        for split in data.SPLITS
    )
    return [line for line in lines if line]


def _sigmas(config: NoiseConfig, calibration_draws, log) -> dict:
    """Analytic and clipped-calibrated sigma, and the calibration's check."""
    analytic = noise_lib.analytic_sigma(config.target_psnr)
    try:
        calibrated = noise_lib.calibrate_sigma(
            noise_lib.mean_noisy_psnr_fn(calibration_draws, clip=True),
            config.target_psnr,
        )
    except ValueError as error:
        raise UserError(f"--target_psnr={config.target_psnr:g}: {error}") from None
    log(f"analytic sigma (no clipping): {analytic:.5f}")
    log(f"calibrated sigma (clipped, {config.calibration_split} set): {calibrated:.5f}")
    log(WHY_SIGMAS_DIFFER)
    return {
        "sigma_analytic": analytic,
        "sigma_calibrated_clipped": calibrated,
        "calibrated_check_psnr_db": _psnr_stats(calibration_draws, calibrated, True),
    }


def _log_psnr(psnr_xy: dict, sigma: float, log) -> None:
    for split, by_mode in psnr_xy.items():
        for mode, stats in by_mode.items():
            log(
                f"PSNR(x, y) {split} {mode} at sigma {sigma:.4f}: "
                f"{stats['mean']:.3f} +- {stats['std']:.3f} dB"
            )


def _figures(config: NoiseConfig, test_draws, test_labels, sigmas: dict) -> None:
    source = "local" if config.data_dir else "TFDS"
    title = f"CIFAR-10 {source} test set, sigma {config.sigma:.4f}"
    figure, grid = _examples_figure(
        test_draws, test_labels, config.sigma, config.num_examples, title
    )
    outputs.save_figure(figure, os.path.join(config.run_dir, "noise_examples.png"))
    # One image per column: original | noisy | noise, the examples stacked.
    columns = np.stack([np.concatenate(list(panel), axis=0) for panel in grid])
    summaries.write(
        summaries.log_dir(config.run_dir),
        images={"examples/original_noisy_noise": columns},
        scalars={
            "sigma/analytic": sigmas["sigma_analytic"],
            "sigma/calibrated_clipped": sigmas["sigma_calibrated_clipped"],
            "sigma/used": config.sigma,
        },
    )
