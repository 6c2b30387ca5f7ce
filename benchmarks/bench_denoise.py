"""Denoiser speed on this machine: training and inference images/s, and the
cost of adding the noise on the fly in tf.data versus ready-made tensors.

Run by hand (never from the unit tests):
  python benchmarks/bench_denoise.py --data_dir=PATH [--num_blocks=8
      --filters=64 --downscale=2 --batch_size=64 --steps=40 --repeats=3]

The three feeds are measured in alternation, `--repeats` times each, in one
process, so machine load affects them alike; the median is reported:
  ready-made: noisy and clean tensors computed once, shuffled and batched;
  on-the-fly: pipelines.noisy_pairs (fresh clipped noise per epoch), no augmentation;
  on-the-fly + augment: the same with random flips and rotations (the default).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cifar_denoise_adv.core import data  # noqa: E402
from cifar_denoise_adv.denoising import models  # noqa: E402
from cifar_denoise_adv.denoising import noise as noise_lib  # noqa: E402
from cifar_denoise_adv.denoising import pipelines  # noqa: E402


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.environ.get(data.ENV_DATA_DIR))
    parser.add_argument("--num_blocks", type=int, default=8)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--plain", action="store_true", help="the net without skips")
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


def _ready_made(images: np.ndarray, sigma: float, batch_size: int):
    seeds = tf.random.experimental.stateless_split([7, 7], len(images))
    noisy = np.stack(
        [
            noise_lib.add_gaussian_noise(image, sigma, seed).numpy()
            for image, seed in zip(images, seeds, strict=True)
        ]
    )
    dataset = tf.data.Dataset.from_tensor_slices((noisy, images))
    return (
        dataset.shuffle(len(images), seed=0)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _train_rate(model, dataset, steps, batch_size) -> float:
    iterator = iter(dataset.repeat())
    model.train_on_batch(*next(iterator))  # keep compilation out of the timing
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*next(iterator))
    return steps * batch_size / (time.perf_counter() - start)


def _pipeline_rate(dataset, steps, batch_size) -> float:
    iterator = iter(dataset.repeat())
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> int:
    args = _parse()
    if not args.data_dir:
        sys.exit("give --data_dir (or set CIFAR10_DIR): a local CIFAR-10 copy")
    images, _ = data.load_arrays("train", args.data_dir)
    test_images, _ = data.load_arrays("test", args.data_dir)
    train_set = tf.data.Dataset.from_tensor_slices(images)
    feeds = {
        "ready-made tensors": _ready_made(images, args.sigma, args.batch_size),
        "on-the-fly noise": pipelines.noisy_pairs(
            train_set,
            sigma=args.sigma,
            batch_size=args.batch_size,
            seed=0,
            training=True,
            augment=False,
        ),
        "on-the-fly noise + augment": pipelines.noisy_pairs(
            train_set,
            sigma=args.sigma,
            batch_size=args.batch_size,
            seed=0,
            training=True,
            augment=True,
        ),
    }
    keras.utils.set_random_seed(0)
    model = models.build_denoiser(
        args.num_blocks, args.filters, not args.plain, args.downscale
    )
    model.compile(keras.optimizers.Adam(1e-4), loss="mse", metrics=[models.psnr])

    train_rates = {name: [] for name in feeds}
    for _ in range(args.repeats):
        for name, feed in feeds.items():
            train_rates[name].append(
                _train_rate(model, feed, args.steps, args.batch_size)
            )
    pipeline_rates = {
        name: _pipeline_rate(feed, 200, args.batch_size) for name, feed in feeds.items()
    }
    noisy_test = np.clip(
        test_images
        + args.sigma
        * np.random.default_rng(0).normal(size=test_images.shape).astype(np.float32),
        0,
        1,
    )
    model.predict(noisy_test[:256], batch_size=256, verbose=0)
    start = time.perf_counter()
    model.predict(noisy_test, batch_size=256, verbose=0)
    inference_rate = len(noisy_test) / (time.perf_counter() - start)

    medians = {name: statistics.median(r) for name, r in train_rates.items()}
    base = medians["ready-made tensors"]
    command = " ".join(["python"] + sys.argv)
    print(f"command: {command}")
    print(
        f"model: {model.name} {args.num_blocks}x{args.filters} downscale "
        f"{args.downscale}, {model.count_params():,} parameters, batch "
        f"{args.batch_size}; {len(images)} train images, {len(test_images)} test"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; TF {tf.__version__}, Keras {keras.__version__}"
    )
    print()
    print(
        "| feed | train images/s (median) | runs | vs ready-made | "
        "pipeline alone images/s |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, rates in train_rates.items():
        runs = ", ".join(f"{r:.0f}" for r in rates)
        print(
            f"| {name} | {medians[name]:.1f} | {runs} | "
            f"{100 * (medians[name] / base - 1):+.1f}% | {pipeline_rates[name]:.0f} |"
        )
    print(f"\ninference: {inference_rate:.1f} images/s (batch 256, 32x32)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "command": command,
                    "train_images_per_s": train_rates,
                    "pipeline_images_per_s": pipeline_rates,
                    "inference_images_per_s": inference_rate,
                    "parameters": model.count_params(),
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
