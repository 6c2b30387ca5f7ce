"""The denoise job: train a ResNet or plain denoiser, evaluate, export.

`run(...)` is what the `denoise` app and the study call. `compare_runs(...)`
puts two or more finished runs side by side with paired per-image statistics.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable

import keras
import numpy as np

from cifar_denoise_adv import data
from cifar_denoise_adv import models
from cifar_denoise_adv import noise_job
from cifar_denoise_adv import noise_lib
from cifar_denoise_adv import outputs
from cifar_denoise_adv import plots
from cifar_denoise_adv import training

PSNR_FILE = "psnr_per_image.npz"


@dataclasses.dataclass(frozen=True)
class DenoiseConfig:
    """Everything that defines a denoising run (the app's flags, as values)."""

    arch: str = "resnet"  # "resnet" or "plain"
    num_blocks: int = 8
    filters: int = 64
    downscale: int = 1
    sigma: float = 0.1
    epochs: int = 16
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_epochs: float = 0.5
    clipnorm: float = 1.0  # global gradient-norm clipping; 0: none
    init_from: str = ""  # a finished run whose weights start this one
    augment: bool = True
    seed: int = 0
    strategy: str = "default"
    max_train_images: int = 0  # 0: all
    max_test_images: int = 0
    num_examples: int = 6
    jit_compile: bool = False

    def __post_init__(self):
        if self.arch not in ("resnet", "plain"):
            raise outputs.UserError(f"--arch={self.arch}: expected resnet or plain.")


def _build(config: DenoiseConfig, steps_per_epoch: int) -> keras.Model:
    model = models.build_denoiser(
        num_blocks=config.num_blocks,
        filters=config.filters,
        use_skips=config.arch == "resnet",
        downscale=config.downscale,
    )
    schedule = training.warmup_cosine(
        config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            schedule, global_clipnorm=config.clipnorm or None
        ),
        loss="mse",
        metrics=[training.psnr],
        jit_compile=config.jit_compile,
    )
    return model


def _predict(model: keras.Model, noisy: np.ndarray, batch_size: int = 256):
    start = time.perf_counter()
    recovered = model.predict(noisy, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    return np.clip(recovered, 0.0, 1.0), len(noisy) / seconds


def _recovery_figure(noisy, recovered, clean, labels, psnr_noisy, psnr_out, count):
    rows, captions = [], []
    for i in range(min(count, len(noisy))):
        rows.append([noisy[i], recovered[i], clean[i]])
        captions.append(
            [
                f"{psnr_noisy[i]:.2f} dB",
                f"{psnr_out[i]:.2f} dB (+{psnr_out[i] - psnr_noisy[i]:.2f})",
                data.CLASS_NAMES[labels[i]],
            ]
        )
    return plots.image_grid(
        rows, captions, ["noisy", "recovered", "original"], title="PSNR vs original"
    )


def run(
    config: DenoiseConfig,
    *,
    run_dir: str,
    data_dir: str | None,
    log: Callable[[str], None] = lambda message: None,
    verbose="auto",
) -> dict:
    """Trains (or resumes) a denoiser, evaluates it on the whole test set.

    Evaluation noise is fixed: the same clipped noise as the `noise` app
    draws for the test set with the same seed. Writes into run_dir:
    metrics.json, recovery_examples.png, psnr_histogram.png,
    psnr_per_image.npz, model.keras, saved_model/, tb/ and backup/.

    Returns:
      The metrics written to metrics.json.
    """
    start = time.time()
    setup = training.start_run(config, run_dir, data_dir, log)
    run_dir, strategy, done = setup.run_dir, setup.strategy, setup.done
    train_images, test_images = setup.train_set, setup.test_set
    num_train, steps_per_epoch = setup.num_train, setup.steps_per_epoch

    test_seed = noise_job.split_seed(config.seed, "test")
    # A resumed run must not replay the noise of its first epochs.
    train_seed = config.seed + 1000 * done
    train = data.noisy_pairs(
        train_images,
        sigma=config.sigma,
        batch_size=config.batch_size,
        seed=train_seed,
        training=True,
        augment=config.augment,
    )
    validation = data.noisy_pairs(
        test_images, sigma=config.sigma, batch_size=256, seed=test_seed, training=False
    )
    batches = list(validation.as_numpy_iterator())
    noisy = np.concatenate([batch[0] for batch in batches])
    clean = np.concatenate([batch[1] for batch in batches])
    labels = np.concatenate([y for _, y in test_images.batch(4096).as_numpy_iterator()])

    with strategy.scope():
        model = _build(config, steps_per_epoch)
        if config.init_from and not done:  # a resumed run has its own weights
            _load_weights_from(model, config.init_from)
            log(f"weights from {config.init_from}; a new schedule starts")
    log(
        f"{model.name}: {model.count_params():,} parameters, {num_train} train "
        f"images, {steps_per_epoch} steps/epoch, {config.epochs} epochs"
    )
    grids = training.ImageGrids(
        os.path.join(run_dir, "tb", "images"),
        noisy[:4],
        clean[:4],
        "noisy_recovered_clean",
    )
    fit = training.fit_resumable(
        model,
        train,
        validation,
        epochs=config.epochs,
        run_dir=run_dir,
        callbacks=[grids],
        verbose=verbose,
    )
    training.save_keras(model, os.path.join(run_dir, training.KERAS_FILE))
    export_dir = os.path.join(run_dir, training.SAVED_MODEL_DIR)
    training.export_saved_model(model, export_dir)
    export_error = training.saved_model_difference(model, export_dir, noisy[:8])
    if export_error > 1e-4:
        raise RuntimeError(
            f"the SavedModel in {export_dir} differs from the Keras model by "
            f"{export_error:g} on the same inputs."
        )

    recovered, inference_rate = _predict(model, noisy)
    psnr_noisy = noise_lib.psnr(clean, noisy).numpy()
    psnr_out = noise_lib.psnr(clean, recovered).numpy()
    gain = psnr_out - psnr_noisy
    outputs.save_npz(
        os.path.join(run_dir, PSNR_FILE),
        recovered=psnr_out,
        noisy=psnr_noisy,
        index=np.arange(len(psnr_out)),
    )
    outputs.save_figure(
        _recovery_figure(
            noisy, recovered, clean, labels, psnr_noisy, psnr_out, config.num_examples
        ),
        os.path.join(run_dir, "recovery_examples.png"),
    )
    outputs.save_figure(
        plots.histogram(
            {"noisy input": psnr_noisy, f"{config.arch} output": psnr_out},
            "PSNR vs original (dB)",
            title=f"{len(psnr_out)} test images, sigma {config.sigma}",
        ),
        os.path.join(run_dir, "psnr_histogram.png"),
    )

    train_seconds = float(sum(fit["train_seconds"]))
    epochs_now = config.epochs - fit["resumed_from_epoch"]
    previous = _previous_metrics(run_dir)
    total_train_seconds = train_seconds + (
        previous.get("train_seconds_total", 0.0) if fit["resumed_from_epoch"] else 0.0
    )
    stats = {
        name: dict(zip(("mean", "std"), noise_lib.mean_and_std(values), strict=True))
        for name, values in (
            ("recovered", psnr_out),
            ("noisy", psnr_noisy),
            ("gain", gain),
        )
    }
    metrics = {
        "job": "denoise",
        "config": dataclasses.asdict(config),
        "model": model.name,
        "parameters": model.count_params(),
        "data_source": f"local {data_dir}" if data_dir else "tfds cifar10",
        "images": {"train": num_train, "test": len(psnr_out)},
        "sigma": config.sigma,
        "noise": "y = clip(x + N(0, sigma^2), 0, 1); test noise fixed by seed",
        "test_noise_seed": test_seed,
        "epochs": config.epochs,
        "resumed_from_epoch": fit["resumed_from_epoch"],
        "initialised_from": _lineage(config.init_from),
        "psnr_db": stats,
        "history": fit["history"],
        "train_seconds_this_run": train_seconds,
        "train_seconds_total": total_train_seconds,
        "train_images_per_s": (
            num_train * epochs_now / train_seconds if train_seconds else None
        ),
        "inference_images_per_s": inference_rate,
        "saved_model_max_abs_difference": export_error,
        "seconds": time.time() - start,
        "versions": outputs.library_versions(),
        "machine": outputs.machine_description(),
    }
    outputs.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    log(
        f"recovered PSNR {stats['recovered']['mean']:.3f} +- "
        f"{stats['recovered']['std']:.3f} dB (noisy {stats['noisy']['mean']:.3f} +- "
        f"{stats['noisy']['std']:.3f}) over {len(psnr_out)} test images"
    )
    return metrics


def _load_weights_from(model: keras.Model, run_dir: str) -> None:
    """Copies the weights of another run's model.keras (same architecture)."""
    path = os.path.join(run_dir, training.KERAS_FILE)
    if not os.path.isfile(path):
        raise outputs.UserError(
            f"--init_from={run_dir}: no {training.KERAS_FILE}; expected a finished "
            "run of the denoise app."
        )
    source = keras.models.load_model(path, compile=False)
    try:
        model.set_weights(source.get_weights())
    except ValueError as error:
        raise outputs.UserError(
            f"--init_from={run_dir}: its model does not match this architecture "
            f"({error})."
        ) from None


def _lineage(init_from: str) -> dict | None:
    """What an --init_from run brought: its epochs and training time."""
    if not init_from:
        return None
    source = _previous_metrics(init_from)
    return {
        "run": os.path.abspath(init_from),
        "epochs": source.get("epochs", 0)
        + ((source.get("initialised_from") or {}).get("epochs", 0)),
        "train_seconds": source.get("train_seconds_total", 0.0)
        + ((source.get("initialised_from") or {}).get("train_seconds", 0.0)),
    }


def _previous_metrics(run_dir: str) -> dict:
    path = os.path.join(run_dir, "metrics.json")
    return outputs.read_json(path) if os.path.exists(path) else {}


# --------------------------------------------------------------------------
# Comparing runs.


def compare_runs(run_dirs: list[str]) -> dict:
    """Mean, std and paired per-image differences of finished denoising runs.

    The first run is the baseline each other run is paired with (for
    example ResNet vs plain). The runs must have evaluated the same test
    images under the same noise (sigma and seed).

    Returns:
      {"runs": [...], "pairs": [...]} with, per pair, the mean paired
      difference (other - first) and its standard error.
    """
    if len(run_dirs) < 2:
        raise outputs.UserError("--runs: give at least two run folders to compare.")
    loaded = []
    for run_dir in run_dirs:
        metrics_path = os.path.join(run_dir, "metrics.json")
        psnr_path = os.path.join(run_dir, PSNR_FILE)
        for path in (metrics_path, psnr_path):
            if not os.path.isfile(path):
                raise outputs.UserError(
                    f"{path}: missing; expected a finished run of the denoise app."
                )
        metrics = outputs.read_json(metrics_path)
        loaded.append((run_dir, metrics, np.load(psnr_path)["recovered"]))
    base_dir, base_metrics, base_psnr = loaded[0]
    rows, pairs = [], []
    for run_dir, metrics, values in loaded:
        key = ("sigma", "test_noise_seed")
        if tuple(metrics.get(k) for k in key) != tuple(
            base_metrics.get(k) for k in key
        ):
            raise outputs.UserError(
                f"{run_dir}: evaluated with sigma/seed "
                f"{[metrics.get(k) for k in key]}, but {base_dir} with "
                f"{[base_metrics.get(k) for k in key]}; a paired comparison needs "
                "the same noisy test images."
            )
        if len(values) != len(base_psnr):
            raise outputs.UserError(
                f"{run_dir}: {len(values)} test images, {base_dir}: {len(base_psnr)}."
            )
        mean, std = noise_lib.mean_and_std(values)
        rows.append(
            {
                "run": run_dir,
                "model": metrics.get("model"),
                "parameters": metrics.get("parameters"),
                "epochs": metrics.get("epochs"),
                "train_minutes": metrics.get("train_seconds_total", 0.0) / 60,
                "mean": mean,
                "std": std,
                "images": len(values),
            }
        )
    for run_dir, _, values in loaded[1:]:
        difference = values - base_psnr
        mean, std = noise_lib.mean_and_std(difference)
        pairs.append(
            {
                "run": run_dir,
                "baseline": base_dir,
                "mean_difference": mean,
                "standard_error": float(
                    difference.std(ddof=1) / math.sqrt(len(difference))
                ),
                "fraction_better": float(np.mean(difference > 0)),
            }
        )
    return {"runs": rows, "pairs": pairs}


def comparison_markdown(comparison: dict) -> str:
    """The comparison as a markdown table."""
    lines = [
        "| run | model | params | epochs | train min | PSNR mean | PSNR std | images |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in comparison["runs"]:
        lines.append(
            f"| {row['run']} | {row['model']} | {row['parameters']:,} | "
            f"{row['epochs']} | {row['train_minutes']:.1f} | {row['mean']:.3f} | "
            f"{row['std']:.3f} | {row['images']} |"
        )
    lines += [
        "",
        "| run - baseline | paired mean difference (dB) | s.e. | share better |",
    ]
    lines.append("| --- | --- | --- | --- |")
    for pair in comparison["pairs"]:
        lines.append(
            f"| {pair['run']} - {pair['baseline']} | {pair['mean_difference']:+.3f} | "
            f"{pair['standard_error']:.3f} | {100 * pair['fraction_better']:.1f}% |"
        )
    return "\n".join(lines) + "\n"
