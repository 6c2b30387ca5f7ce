"""The cost of the defense to an attacker: PGD through denoiser + classifier
against the same attack on the bare classifier, images/s on this machine.

Run by hand (never from the unit tests):
  python benchmarks/bench_defense.py --classifier=RUN --denoiser=RUN \
      [--data_dir=PATH --num_images=100 --steps=20 --repeats=3 --eot_draws=8]
  python benchmarks/bench_defense.py --untrained   # CPU-size models, no runs

Untargeted PGD (random start, `--steps` steps of 2.5 eps / steps at eps
8/255) on the same images, timed on the bare classifier, on the denoised
pipeline classifier(denoiser(x)) and, with --eot_draws > 1, on the
randomised pipeline with that many noise draws per step (EOT). The
attacks run in alternation, `--repeats` times each, in one process, so
machine load affects them alike; medians are reported, with the CPU
seconds per image (which change little with the machine's load). The cost
of an attack does not depend on the weights: --untrained builds the CPU
sizes (the airbench classifier, width 64, and the denoiser 12 x 64 at half
resolution). --tta sets the classifier's test-time augmentation as the
defend app's --classifier_tta does (default 0: the network alone, as in
flags/defend.cfg; -1 keeps a run's model as exported).
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cifar_denoise_adv.adversarial import airbench  # noqa: E402
from cifar_denoise_adv.adversarial import attacks  # noqa: E402
from cifar_denoise_adv.adversarial import classifier as classifier_lib  # noqa: E402
from cifar_denoise_adv.core import data  # noqa: E402
from cifar_denoise_adv.defense import loading  # noqa: E402
from cifar_denoise_adv.defense import pipeline  # noqa: E402
from cifar_denoise_adv.denoising import models  # noqa: E402


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", help="a classify run (or --untrained)")
    parser.add_argument("--denoiser", help="a denoise run (or --untrained)")
    parser.add_argument("--untrained", action="store_true", help="CPU-size models")
    parser.add_argument("--data_dir", default=os.environ.get(data.ENV_DATA_DIR))
    parser.add_argument("--num_images", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=8 / 255)
    parser.add_argument("--eot_draws", type=int, default=8, help="0: no EOT run")
    parser.add_argument("--sigma", type=float, default=0.1, help="randomised noise")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tta", type=int, default=0, choices=(-1, 0, 1, 2))
    return parser.parse_args()


def _models(args):
    level = None if args.tta < 0 else args.tta
    if args.untrained:
        keras.utils.set_random_seed(0)
        patches = np.random.default_rng(0).uniform(0, 1, (64, 32, 32, 3))
        whitening = airbench.whitening_kernel(
            patches.astype(np.float32),
            classifier_lib.CIFAR10_MEAN,
            classifier_lib.CIFAR10_STD,
        )
        network = airbench.build_airbench(whitening, width=64)
        return (
            classifier_lib.with_test_time_augmentation(network, level or 0),
            models.build_denoiser(12, 64, downscale=2, zero_init=False),
        )
    if not (args.classifier and args.denoiser):
        sys.exit("give --classifier and --denoiser runs, or --untrained")
    classifier, _ = classifier_lib.with_tta_level(
        loading.load_checked(args.classifier, "classifier"), level
    )
    return classifier, loading.load_checked(args.denoiser, "denoiser")


def _images(args):
    if args.data_dir:
        images, labels = data.load_arrays("test", args.data_dir, args.num_images)
        return images, labels
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(args.num_images, 32, 32, 3)).astype(np.float32)
    return images, rng.integers(0, 10, size=args.num_images)


def _pgd(model, images, labels, args, draws):
    step = 2.5 * args.epsilon / args.steps
    for start in range(0, len(images), args.batch_size):
        part = slice(start, start + args.batch_size)
        attacks.pgd(
            model,
            images[part],
            labels[part],
            args.epsilon,
            step,
            args.steps,
            seed=start,
            num_draws=draws,
        )


def main() -> int:
    args = _parse()
    classifier, denoiser = _models(args)
    images, labels = _images(args)
    attacked = {
        "bare classifier": (classifier, 1),
        "denoiser + classifier": (pipeline.build_defended(denoiser, classifier), 1),
    }
    if args.eot_draws > 1:
        randomised = pipeline.build_defended(denoiser, classifier, args.sigma)
        attacked[f"noise + denoiser + classifier, EOT x{args.eot_draws}"] = (
            randomised,
            args.eot_draws,
        )
    warm = type(args)(**{**vars(args), "steps": 1})
    for model, draws in attacked.values():  # keep tracing out of the timing
        _pgd(model, images[: args.batch_size], labels[: args.batch_size], warm, draws)
    rates = {name: [] for name in attacked}
    cpu = {name: [] for name in attacked}
    for _ in range(args.repeats):
        for name, (model, draws) in attacked.items():
            wall, process = time.perf_counter(), time.process_time()
            _pgd(model, images, labels, args, draws)
            rates[name].append(len(images) / (time.perf_counter() - wall))
            cpu[name].append((time.process_time() - process) / len(images))
    print(f"command: {' '.join(['python'] + sys.argv)}")
    print(
        f"PGD-{args.steps}, eps {args.epsilon * 255:.3g}/255, {len(images)} "
        f"{'test' if args.data_dir else 'random'} images, batch {args.batch_size}; "
        f"classifier {classifier.count_params():,} parameters, denoiser "
        f"{denoiser.count_params():,}{' (untrained)' if args.untrained else ''}"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; TF {tf.__version__}, Keras {keras.__version__}"
    )
    print()
    print("| attacked model | images/s (median) | runs | CPU s per image | cost |")
    print("| --- | --- | --- | --- | --- |")
    base = statistics.median(rates["bare classifier"])
    for name in attacked:
        median = statistics.median(rates[name])
        runs = ", ".join(f"{r:.1f}" for r in rates[name])
        print(
            f"| {name} | {median:.1f} | {runs} | "
            f"{statistics.median(cpu[name]):.3f} | x{base / median:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
