"""The denoise app's own overhead: its training images/s against a bare `fit`.

Run by hand (never from the unit tests):
  python benchmarks/bench_app_overhead.py --data_dir=PATH [--flagfile=flags/resnet.cfg
      --max_train_images=2272 --validation_images=224 --epochs=3 --repeats=3]

Alternates, `--repeats` times, in one process (machine load affects both alike):
  app: the denoise job itself (`denoising.denoise_job.run`) on a fresh run
    folder: the tf.data pipeline with noise and flips/rotations on the fly,
    per-epoch validation, BackupAndRestore, the progress record, TensorBoard,
    the validation image grids, the epoch lines (as when the output goes to
    a log file);
  bare fit: the same model, built and compiled by the job's own code
    (`denoise_job._build`), `model.fit` on in-memory tensors (the same
    training images with noise drawn once), no validation, no callbacks.
Each run's rate is its training images / wall-clock seconds of an epoch,
the median over epochs 2.. (epoch 1 holds the tracing); the app's epoch
includes its validation and callbacks, and the table splits it into the
training steps (the app's own `epoch_train_seconds`), the validation, and
the rest (callbacks: backup, progress record, TensorBoard, image grids).
The defaults keep the recipe's share of validation images (500 of 5085 in
flags/resnet.cfg) on a subset: 2048 training images and 224 held out. The
per-epoch costs that do not grow with the epoch (backup, grids) weigh
twice as much on a 1024-image epoch, and 2.2 times less on the recipe's.
"""

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cifar_denoise_adv import denoise  # noqa: E402
from cifar_denoise_adv.core import console  # noqa: E402
from cifar_denoise_adv.core import data  # noqa: E402
from cifar_denoise_adv.core import pipelines as core_pipelines  # noqa: E402
from cifar_denoise_adv.core import precision  # noqa: E402
from cifar_denoise_adv.core import training  # noqa: E402
from cifar_denoise_adv.denoising import denoise_job  # noqa: E402
from cifar_denoise_adv.denoising import noise as noise_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.environ.get(data.ENV_DATA_DIR))
    parser.add_argument("--flagfile", default=os.path.join(ROOT, "flags", "resnet.cfg"))
    parser.add_argument("--max_train_images", type=int, default=2272)
    parser.add_argument("--validation_images", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="float32")
    return parser.parse_args()


class EpochClock(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch, and of its validation."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds, self.validation_seconds = [], []
        self._last = self._test_start = None

    def on_train_begin(self, logs=None):
        self._last = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation_seconds.append(time.perf_counter() - self._test_start)

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epoch_seconds.append(now - self._last)
        self._last = now


def _steady(seconds: list[float], images: int) -> float:
    """images/s of the median epoch after the first."""
    return images / statistics.median(seconds[1:])


def _run_app(config) -> dict:
    """The denoise job on a fresh folder, its fit timed from the inside."""
    clock = EpochClock()
    fit_resumable = training.fit_resumable

    def timed_fit(*args, callbacks=(), **kwargs):
        return fit_resumable(*args, callbacks=[*callbacks, clock], **kwargs)

    is_terminal = console.is_terminal
    training.fit_resumable = timed_fit
    console.is_terminal = lambda stream=None: False  # epoch lines, not a bar
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            record = denoise_job.run(
                dataclasses.replace(config, run_dir=run_dir), log=lambda line: None
            )
    finally:
        training.fit_resumable = fit_resumable
        console.is_terminal = is_terminal
    images = record["images"]["train"]
    # Per steady epoch: training steps, validation, and the rest (callbacks:
    # backup, progress record, TensorBoard, image grids, epoch lines).
    train_s = record["epoch_train_seconds"][1:]
    validation_s = clock.validation_seconds[1:] or [0.0] * len(train_s)
    rest_s = [
        epoch - train - validation
        for epoch, train, validation in zip(
            clock.epoch_seconds[1:], train_s, validation_s, strict=True
        )
    ]
    return {
        "rate": _steady(clock.epoch_seconds, images),
        "epoch_s": statistics.median(clock.epoch_seconds[1:]),
        "train_s": statistics.median(train_s),
        "validation_s": statistics.median(validation_s),
        "rest_s": statistics.median(rest_s),
    }


def _bare_arrays(config):
    """The app's training images with noise drawn once, as tensors."""
    images, labels = data.load_arrays(
        "train", config.data_dir, config.max_train_images or None
    )
    train, _ = core_pipelines.validation_split(
        config.validation_images, len(images), config.seed
    )
    clean = images[train]
    seeds = tf.random.experimental.stateless_split([7, 7], len(clean))
    noisy = noise_lib.add_gaussian_noise(
        tf.constant(clean), config.sigma, seeds[0]
    ).numpy()
    return tf.constant(noisy), tf.constant(clean)


def _run_bare(config, noisy, clean) -> dict:
    steps = -(-len(clean) // config.batch_size)
    with precision.precision_scope(config.precision):
        # The job's own builder: the same model, optimizer, loss and metric.
        model = denoise_job._build(config, steps)
    clock = EpochClock()
    model.fit(
        noisy,
        clean,
        batch_size=config.batch_size,
        epochs=config.epochs,
        verbose=0,
        callbacks=[clock],
    )
    epoch_s = statistics.median(clock.epoch_seconds[1:])
    return {
        "rate": _steady(clock.epoch_seconds, len(clean)),
        "epoch_s": epoch_s,
        "train_s": epoch_s,
        "validation_s": 0.0,
        "rest_s": 0.0,
    }


def main() -> int:
    args = _parse()
    if not args.data_dir:
        sys.exit("give --data_dir (or set CIFAR10_DIR): a local CIFAR-10 copy")
    config = denoise.APP.parse_flagfile(
        args.flagfile,
        {
            "data_dir": args.data_dir,
            "max_train_images": args.max_train_images,
            "validation_images": args.validation_images,
            "epochs": args.epochs,
            "precision": args.precision,
            "warmup_epochs": min(0.85, args.epochs / 2),
            "max_test_images": 64,
        },
    )
    noisy, clean = _bare_arrays(config)
    load_before = os.getloadavg()
    runs = {"app": [], "bare fit": []}
    for _ in range(args.repeats):
        runs["app"].append(_run_app(config))
        runs["bare fit"].append(_run_bare(config, noisy, clean))
        print(
            f"app {runs['app'][-1]['rate']:.1f} img/s, bare fit "
            f"{runs['bare fit'][-1]['rate']:.1f} img/s",
            file=sys.stderr,
        )
    load_after = os.getloadavg()

    ratios = [
        a["rate"] / b["rate"]
        for a, b in zip(runs["app"], runs["bare fit"], strict=True)
    ]
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(
        f"model: {config.arch} {config.num_blocks}x{config.filters} downscale "
        f"{config.downscale}, batch {config.batch_size}, {args.precision}; "
        f"{len(clean)} training images, {config.validation_images} validation, "
        f"{args.epochs} epochs per run, {args.repeats} runs each, alternating"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"TF {tf.__version__}, Keras {keras.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print()
    print(
        "| run | images/s (median) | runs | epoch s | training s | validation s "
        "| callbacks s | vs bare fit |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, results in runs.items():
        rates = [r["rate"] for r in results]
        vs = statistics.median(ratios) - 1 if name == "app" else 0.0
        cells = [
            f"{statistics.median(r[key] for r in results):.2f}"
            for key in ("epoch_s", "train_s", "validation_s", "rest_s")
        ]
        print(
            f"| {name} | {statistics.median(rates):.1f} | "
            f"{', '.join(f'{r:.0f}' for r in rates)} | {' | '.join(cells)} "
            f"| {vs:+.1%} |"
        )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
