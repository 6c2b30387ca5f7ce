"""The denoise job: train a ResNet or plain denoiser, evaluate, export.

`run(config)` is what the `denoise` app and the study call. It trains on
noise added on the fly (fresh every epoch), evaluates the recovery PSNR on
every test image under fixed noise, and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import keras_files
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import plots
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core import schedules
from cifar_denoise_adv.core import summaries
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core import workers
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models
from cifar_denoise_adv.denoising import noise
from cifar_denoise_adv.denoising import noise_job
from cifar_denoise_adv.denoising import pipelines

PSNR_FILE = "psnr_per_image.npz"
EVALUATED_ON = {
    "history (val_*), TensorBoard validation, image grids": (
        "the validation images, held out of the training images"
    ),
    "psnr_db, psnr_per_image.npz, figures": "the test images, once, at the end",
}
ARCHS = ("resnet", "plain")


@dataclasses.dataclass(frozen=True)
class DenoiseConfig(training.TrainingConfig):
    """Everything that defines a denoising run (the `denoise` app's flags)."""

    arch: str = setting(
        "resnet", "ResNet, or the same net without skips.", choices=ARCHS
    )
    num_blocks: int = setting(8, "Residual blocks.", low=0)
    filters: int = setting(64, "Channels in the blocks.", low=1)
    downscale: int = setting(
        1, "Pixel-unshuffle factor: the blocks run at 1/downscale resolution.", low=1
    )
    sigma: float = setting(
        0.1,
        "Noise std: y = clip(x + N(0, sigma^2), 0, 1).",
        unit=config_lib.PIXEL,
        low=0.0,
        low_open=True,
    )
    clipnorm: float = setting(
        1.0, "Global gradient-norm clipping in Adam (0: none).", low=0.0
    )
    init_from: str = setting(
        "",
        "Run folder of a finished denoise run (same architecture) whose weights "
        "start this run, with a new schedule: how the longer recipe chains runs.",
        path=True,
    )


@dataclasses.dataclass(frozen=True)
class _FixedNoise:
    """Evaluation images under fixed noise: in memory and as a pipeline."""

    noisy: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    batches: object  # the same (noisy, clean) pairs as a tf.data pipeline


def run(config: DenoiseConfig, log=lambda message: None, verbose="auto") -> dict:
    """Trains (or resumes) a denoiser and evaluates it on the whole test set.

    The per-epoch validation (history `val_*`, TensorBoard, image grids) is
    on --validation_images held-out training images; the test images are
    evaluated once, at the end, for the reported PSNR. Evaluation noise is
    fixed: the test set gets the same clipped noise as the `noise` job draws
    for it with the same seed. The data and --init_from are read and checked
    before anything in run_dir changes (`runs.claim`). Writes into run_dir:
    metrics.json, flags.cfg, recovery_examples.png, psnr_histogram.png,
    psnr_per_image.npz, model.keras, saved_model/, tb/ and backup/.

    Returns:
      The record written to metrics.json.

    Raises:
      UserError: one line, for a folder that holds another run, unreadable
        data, or an --init_from run that is missing or of another
        architecture.
    """
    start = time.time()
    config = config_lib.resolve(config)
    # A non-chief worker of --strategy=multi_worker writes a temporary folder.
    with (
        workers.worker_config(config) as config,
        runs.claim(config, "denoise", log) as held,
    ):
        setup = training.start_run(config, log)
        initial = _initial_weights(config.init_from)
        with (
            precision.precision_scope(setup.precision.precision),
            setup.strategy.scope(),
        ):
            model = _build(config, setup.steps_per_epoch)
        _check_initial_weights(model, initial, config.init_from)
        held.begin()
        setup = training.resume(setup, config, log)
        if initial is not None and not setup.done:  # a resumed run has its own
            model.set_weights(initial)
            log(f"weights from {config.init_from}; a new schedule starts")
        return _train(config, setup, model, start, log, verbose)


def _train(config, setup: training.RunStart, model, start: float, log, verbose):
    """Trains, exports, evaluates and writes the run folder (after `begin`)."""
    train, validation, test = _pipelines(config, setup)
    log(
        f"{model.name}: {model.count_params():,} parameters, {setup.num_train} "
        f"train images, {setup.steps_per_epoch} steps/epoch, {config.epochs} epochs"
    )
    fit = training.fit_resumable(
        model,
        train,
        validation and validation.batches,
        epochs=config.epochs,
        run_dir=config.run_dir,
        callbacks=_image_grids(config, validation),
        verbose=verbose,
        log=log,
    )
    export_error = training.finish_training(
        model, config.run_dir, test.noisy[:8], names=("noisy", "denoised")
    )
    evaluation = _evaluate(model, test)
    _figures(config, test, evaluation)
    record = outputs.write_record(
        config,
        "denoise",
        {
            "model": model.name,
            "precision": setup.precision.record(),
            "parameters": model.count_params(),
            "images": setup.image_counts(len(test.noisy)),
            "evaluated_on": EVALUATED_ON,
            "sigma": config.sigma,
            "noise": "y = clip(x + N(0, sigma^2), 0, 1); test noise fixed by seed",
            "test_noise_seed": noise_job.split_seed(config.seed, "test"),
            "validation_noise_seed": noise_job.split_seed(config.seed, "validation"),
            "epochs": config.epochs,
            "resumed_from_epoch": fit["resumed_from_epoch"],
            "initialised_from": _lineage(config.init_from),
            "psnr_db": evaluation["stats"],
            "history": fit["history"],
            **training.training_time(fit, config, setup.num_train),
            "inference_images_per_s": evaluation["images_per_s"],
            "saved_model_max_abs_difference": export_error,
        },
        start,
    )
    log(_summary_line(evaluation["stats"], len(test.noisy)))
    return record


def _image_grids(config: DenoiseConfig, validation: _FixedNoise | None) -> list:
    """Noisy | recovered | clean of 4 validation images in TensorBoard per epoch."""
    if validation is None:
        return []
    return [
        summaries.ImageGrids(
            summaries.log_dir(config.run_dir, "images"),
            validation.noisy[:4],
            validation.clean[:4],
            "validation/noisy_recovered_clean",
            transform=lambda x: np.clip(x, 0.0, 1.0),
        )
    ]


def _summary_line(stats: dict, count: int) -> str:
    return (
        f"recovered PSNR {stats['recovered']['mean']:.3f} +- "
        f"{stats['recovered']['std']:.3f} dB (noisy {stats['noisy']['mean']:.3f} +- "
        f"{stats['noisy']['std']:.3f}) over {count} test images"
    )


def _pipelines(config: DenoiseConfig, setup: training.RunStart):
    """The training pipeline, and the validation and test sets under fixed noise."""
    train = pipelines.noisy_pairs(
        setup.train_set,
        sigma=config.sigma,
        batch_size=config.batch_size,
        # A resumed run must not replay the noise of its first epochs.
        seed=config.seed + 1000 * setup.done,
        training=True,
        augment=config.augment,
    )
    validation = None
    if setup.validation_set is not None:
        validation = _fixed_noise(config, setup.validation_set, "validation")
    return train, validation, _fixed_noise(config, setup.test_set, "test")


def _fixed_noise(config: DenoiseConfig, images, split: str) -> _FixedNoise:
    batches = pipelines.noisy_pairs(
        images,
        sigma=config.sigma,
        batch_size=256,
        seed=noise_job.split_seed(config.seed, split),
        training=False,
    )
    pairs = list(batches.as_numpy_iterator())
    labels = [y for _, y in images.batch(4096).as_numpy_iterator()]
    return _FixedNoise(
        noisy=np.concatenate([pair[0] for pair in pairs]),
        clean=np.concatenate([pair[1] for pair in pairs]),
        labels=np.concatenate(labels),
        batches=batches,
    )


def _build(config: DenoiseConfig, steps_per_epoch: int):
    model = models.build_denoiser(
        num_blocks=config.num_blocks,
        filters=config.filters,
        use_skips=config.arch == "resnet",
        downscale=config.downscale,
    )
    schedule = schedules.warmup_cosine(
        config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            schedule, global_clipnorm=config.clipnorm or None
        ),
        loss="mse",
        metrics=[models.psnr],
        jit_compile=config.jit_compile,
    )
    return model


def _evaluate(model: keras.Model, test: _FixedNoise) -> dict:
    """Recovered images, per-image PSNR (noisy, recovered, gain) and speed."""
    begin = time.perf_counter()
    recovered = np.clip(model.predict(test.noisy, batch_size=256, verbose=0), 0, 1)
    images_per_s = len(test.noisy) / (time.perf_counter() - begin)
    per_image = {
        "recovered": noise.psnr(test.clean, recovered).numpy(),
        "noisy": noise.psnr(test.clean, test.noisy).numpy(),
    }
    per_image["gain"] = per_image["recovered"] - per_image["noisy"]
    stats = {
        name: dict(zip(("mean", "std"), noise.mean_and_std(values), strict=True))
        for name, values in per_image.items()
    }
    return {
        "recovered": recovered,
        "per_image": per_image,
        "stats": stats,
        "images_per_s": images_per_s,
    }


def _figures(config: DenoiseConfig, test: _FixedNoise, evaluation: dict) -> None:
    per_image = evaluation["per_image"]
    outputs.save_npz(
        os.path.join(config.run_dir, PSNR_FILE),
        recovered=per_image["recovered"],
        noisy=per_image["noisy"],
        index=np.arange(len(test.noisy)),
    )
    outputs.save_figure(
        _recovery_figure(test, evaluation["recovered"], per_image, config.num_examples),
        os.path.join(config.run_dir, "recovery_examples.png"),
    )
    outputs.save_figure(
        plots.histogram(
            {
                "noisy input": per_image["noisy"],
                f"{config.arch} output": per_image["recovered"],
            },
            "PSNR vs original (dB)",
            title=f"{len(test.noisy)} test images, sigma {config.sigma}",
        ),
        os.path.join(config.run_dir, "psnr_histogram.png"),
    )


def _recovery_figure(test: _FixedNoise, recovered, per_image: dict, count: int):
    rows, captions = [], []
    before, after = per_image["noisy"], per_image["recovered"]
    for i in range(min(count, len(test.noisy))):
        rows.append([test.noisy[i], recovered[i], test.clean[i]])
        captions.append(
            [
                f"{before[i]:.2f} dB",
                f"{after[i]:.2f} dB (+{after[i] - before[i]:.2f})",
                data.CLASS_NAMES[test.labels[i]],
            ]
        )
    return plots.image_grid(
        rows, captions, ["noisy", "recovered", "original"], title="PSNR vs original"
    )


def _initial_weights(run_dir: str) -> list[np.ndarray] | None:
    """The weights of another run's model.keras (--init_from), or None."""
    if not run_dir:
        return None
    path = os.path.join(run_dir, training.KERAS_FILE)
    if not os.path.isfile(path):
        raise UserError(
            f"--init_from={run_dir}: no {training.KERAS_FILE}; expected a finished "
            "run of the denoise app."
        )
    return keras_files.load(path, "init_from", compile=False).get_weights()


def _check_initial_weights(model: keras.Model, weights, run_dir: str) -> None:
    """Refuses --init_from weights that do not fit this architecture."""
    if weights is None:
        return
    here = [tuple(w.shape) for w in model.weights]
    there = [tuple(np.shape(w)) for w in weights]
    if here == there:
        return
    detail = f"{len(there)} weight arrays, this one has {len(here)}"
    if len(here) == len(there):
        i = next(i for i, (a, b) in enumerate(zip(here, there, strict=True)) if a != b)
        detail = f"weight {i} has shape {list(there[i])}, this one {list(here[i])}"
    raise UserError(
        f"--init_from={run_dir}: its model does not match this architecture "
        f"({detail}); expected a denoise run with the same --arch, --num_blocks, "
        "--filters and --downscale."
    )


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
    if not os.path.exists(path):
        return {}
    return outputs.read_json(path, "the metrics.json of a denoise run (--init_from)")
