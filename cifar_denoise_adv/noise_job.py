"""The noise job: sigma for a target PSNR, noisy train/test sets, figures.

`run(...)` is what the `noise` app and the study call; it takes plain values,
writes into the run folder and returns the metrics it wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cifar_denoise_adv import data
from cifar_denoise_adv import noise_lib
from cifar_denoise_adv import outputs
from cifar_denoise_adv import plots

NOISE_SCALE = 2.5  # how much the noise panels are magnified
WHY_SIGMAS_DIFFER = (
    "The analytic sigma gives the target PSNR for unclipped noise "
    "(E[(y-x)^2] = sigma^2). Clipping y to [0, 1] removes part of the noise "
    "at dark and bright pixels, so the clipped copy is closer to x and its "
    "PSNR is higher; a larger sigma is needed for the same mean PSNR."
)


def split_seed(seed: int, split: str) -> int:
    """The evaluation-noise seed of a split (train and test draw apart)."""
    return seed + data.SPLITS.index(split)


def _noise_draws(split: str, data_dir: str | None, seed: int, limit: int | None):
    """The split's images with fixed unit-noise draws, as batches, and labels."""
    dataset = data.load(split, data_dir).take(limit or -1)
    labels = np.concatenate([y for _, y in dataset.batch(4096).as_numpy_iterator()])
    pairs = data.with_unit_noise(dataset, seed=split_seed(seed, split))
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


def _export(run_dir: str, split: str, batches, labels, sigma: float, seed: int) -> str:
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
    return path


def run(
    *,
    run_dir: str,
    data_dir: str | None,
    target_psnr: float = 20.0,
    sigma: float = 0.1,
    seed: int = 0,
    calibration_split: str = "test",
    max_images: dict[str, int] | None = None,
    num_examples: int = 6,
    export: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Calibrates sigma, measures PSNR(x, y) on both splits, writes outputs.

    Args:
      run_dir: output folder (created).
      data_dir: local CIFAR-10 copy, or None for TFDS.
      target_psnr: the mean PSNR(x, y) wanted, in dB.
      sigma: the noise std for the PSNR statistics, the figure and the export.
      seed: evaluation noise seed (train uses seed + 1, test seed).
      calibration_split: the split whose images the clipped sigma is fitted on.
      max_images: {split: at most this many images (0: all)}; None: all.
      num_examples: rows of the example figure.
      export: write the noisy splits as .npz files with sigma and seed.
      log: receives one line per step (the app prints them).

    Returns:
      The metrics written to run_dir/metrics.json.
    """
    start = time.time()
    run_dir = outputs.make_run_dir(run_dir)
    draws = {}
    labels = {}
    for split in data.SPLITS:
        draws[split], labels[split] = _noise_draws(
            split, data_dir, seed, (max_images or {}).get(split, 0)
        )
        count, noise_seed = len(labels[split]), split_seed(seed, split)
        log(f"{split}: {count} images, noise seed {noise_seed}")

    analytic = noise_lib.analytic_sigma(target_psnr)
    calibrated = noise_lib.calibrate_sigma(
        noise_lib.mean_noisy_psnr_fn(draws[calibration_split], clip=True), target_psnr
    )
    used = sigma
    log(f"analytic sigma (no clipping): {analytic:.5f}")
    log(f"calibrated sigma (clipped, {calibration_split} set): {calibrated:.5f}")
    log(WHY_SIGMAS_DIFFER)

    psnr_xy = {}
    for split in data.SPLITS:
        psnr_xy[split] = {
            "clipped": _psnr_stats(draws[split], used, clip=True),
            "unclipped": _psnr_stats(draws[split], used, clip=False),
        }
        for mode, stats in psnr_xy[split].items():
            log(
                f"PSNR(x, y) {split} {mode} at sigma {used:.4f}: "
                f"{stats['mean']:.3f} +- {stats['std']:.3f} dB"
            )
    check = _psnr_stats(draws[calibration_split], calibrated, clip=True)

    title = f"CIFAR-10 {'local' if data_dir else 'TFDS'} test set, sigma {used:.4f}"
    figure, grid = _examples_figure(
        draws["test"], labels["test"], used, num_examples, title
    )
    outputs.save_figure(figure, os.path.join(run_dir, "noise_examples.png"))
    _log_tensorboard(run_dir, grid, analytic, calibrated, used)

    exported = {}
    if export:
        for split in data.SPLITS:
            exported[split] = _export(
                run_dir, split, draws[split], labels[split], used, seed
            )
            log(f"exported {exported[split]}")

    metrics = {
        "job": "noise",
        "data_source": f"local {data_dir}" if data_dir else "tfds cifar10",
        "images": {split: len(labels[split]) for split in data.SPLITS},
        "target_psnr_db": target_psnr,
        "sigma_analytic": analytic,
        "sigma_calibrated_clipped": calibrated,
        "calibration_split": calibration_split,
        "calibrated_check_psnr_db": check,
        "sigma_used": used,
        "why_sigmas_differ": WHY_SIGMAS_DIFFER,
        "noise_seed": {split: split_seed(seed, split) for split in data.SPLITS},
        "psnr_xy_db": psnr_xy,
        "psnr_definition": (
            "10 log10(1 / MSE) per image, MSE over 32x32x3; "
            "std is the population std over images"
        ),
        "exported": exported,
        "seconds": time.time() - start,
        "versions": outputs.library_versions(),
        "machine": outputs.machine_description(),
    }
    outputs.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    return metrics


def _log_tensorboard(run_dir, grid, analytic, calibrated, used) -> None:
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tb"))
    with writer.as_default(step=0):
        tf.summary.scalar("sigma/analytic", analytic)
        tf.summary.scalar("sigma/calibrated_clipped", calibrated)
        tf.summary.scalar("sigma/used", used)
        # One image per column: original | noisy | noise, examples stacked.
        columns = [np.concatenate(list(panel), axis=0) for panel in grid]
        tf.summary.image(
            "examples/original_noisy_noise", np.stack(columns), max_outputs=3
        )
    writer.close()
