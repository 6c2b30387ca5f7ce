"""Training images/s in float32 against mixed_bfloat16 (or mixed_float16).

Run by hand (never from the unit tests), alone on the machine:
  python benchmarks/bench_precision.py --data_dir=PATH [--repeats=3
      --denoiser_images=1280 --classifier_images=5120
      --precisions=float32,mixed_bfloat16 --models=denoiser,classifier]

Models, each built and compiled by its job's own code (`denoise_job._build`,
`classify_job._build`) under each precision:
  denoiser: flags/resnet.cfg (ResNet 12 x 64 on the 16x16x12 unshuffled
    tensor, batch 64, Adam);
  classifier: the classify app's defaults (airbench, width 64, batch 256,
    Nesterov SGD, label smoothing).
Each measurement is one `model.fit` epoch over in-memory tensors (the
denoiser's noisy inputs drawn once, the classifier's images unaugmented
with one-hot labels, as its pipeline gives them), no callbacks: 20 steps
of each model with the default image counts (the classifier's 5120 repeat
the start of a smaller copy). Every model first trains three steps that
are not timed (tracing, oneDNN's first calls).
Measurements alternate precisions and models, `--repeats` times, in one
process, so machine load affects them alike; medians are reported, and the
speed-up is the median of the per-round ratios.
"""

import argparse
import math
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cifar_denoise_adv import classify  # noqa: E402
from cifar_denoise_adv import denoise  # noqa: E402
from cifar_denoise_adv.adversarial import classify_job  # noqa: E402
from cifar_denoise_adv.core import data  # noqa: E402
from cifar_denoise_adv.core import pipelines  # noqa: E402
from cifar_denoise_adv.core import precision  # noqa: E402
from cifar_denoise_adv.core import training  # noqa: E402
from cifar_denoise_adv.denoising import denoise_job  # noqa: E402
from cifar_denoise_adv.denoising import noise as noise_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.environ.get(data.ENV_DATA_DIR))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--denoiser_images", type=int, default=1280)
    parser.add_argument("--classifier_images", type=int, default=5120)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--models", default="denoiser,classifier")
    return parser.parse_args()


def _denoiser(images: np.ndarray, policy: str):
    """(model, inputs, targets, batch size) of flags/resnet.cfg."""
    config = denoise.APP.parse_flagfile(
        os.path.join(ROOT, "flags", "resnet.cfg"), {"precision": policy}
    )
    steps = math.ceil(len(images) / config.batch_size)
    with precision.precision_scope(policy):
        model = denoise_job._build(config, steps)
    seeds = tf.random.experimental.stateless_split([7, 7], 1)
    noisy = noise_lib.add_gaussian_noise(
        tf.constant(images), config.sigma, seeds[0]
    ).numpy()
    return model, tf.constant(noisy), tf.constant(images), config.batch_size


def _classifier(images: np.ndarray, labels: np.ndarray, policy: str):
    """(model, inputs, targets, batch size) of the classify app's defaults."""
    config = classify.APP.parse(["classify", f"--precision={policy}"])
    steps = math.ceil(len(images) / config.batch_size)
    setup = training.RunStart(
        strategy=tf.distribute.get_strategy(),
        train_set=pipelines.from_arrays(images, labels),
        validation_set=None,
        test_set=None,
        num_train=len(images),
        num_validation=0,
        steps_per_epoch=steps,
        done=0,
    )
    with precision.precision_scope(policy):
        model = classify_job._build(config, setup)
    one_hot = tf.one_hot(labels, data.NUM_CLASSES)  # what the pipeline gives
    return model, tf.constant(images), one_hot, config.batch_size


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [
                line.split(":", 1)[1] for line in f if line.startswith("model name")
            ]
    except OSError:
        names = []
    return names[0].strip() if names else platform.processor() or platform.machine()


def _warm_up(model, inputs, targets, batch_size) -> None:
    """Three steps, not timed: tracing and oneDNN's first calls."""
    count = 3 * batch_size
    model.fit(inputs[:count], targets[:count], batch_size=batch_size, verbose=0)


def _epoch_rate(model, inputs, targets, batch_size) -> float:
    start = time.perf_counter()
    model.fit(inputs, targets, batch_size=batch_size, epochs=1, verbose=0)
    return len(inputs) / (time.perf_counter() - start)


def main() -> int:
    args = _parse()
    if not args.data_dir:
        sys.exit("give --data_dir (or set CIFAR10_DIR): a local CIFAR-10 copy")
    policies = args.precisions.split(",")
    for policy in policies:
        precision.check_precision(policy)
    count = max(args.denoiser_images, args.classifier_images)
    images, labels = data.load_arrays("train", args.data_dir, count)
    repeat = np.arange(count) % len(images)  # a copy smaller than `count`
    images, labels = images[repeat], labels[repeat]
    keras.utils.set_random_seed(0)
    runs = {}
    for name in args.models.split(","):
        for policy in policies:
            if name == "denoiser":
                run = _denoiser(images[: args.denoiser_images], policy)
            else:
                n = args.classifier_images
                run = _classifier(images[:n], labels[:n], policy)
            _warm_up(*run)
            runs[name, policy] = (run, [])
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for run, rates in runs.values():
            rates.append(_epoch_rate(*run))
    load_after = os.getloadavg()

    print(f"command: {' '.join(['python', *sys.argv])}")
    print(
        f"machine: {platform.platform()}, {_cpu_name()}"
        f", {os.cpu_count()} CPUs, load (1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; TF {tf.__version__}, Keras {keras.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print()
    print(
        "| model | precision | images per run | train images/s (median) | runs "
        f"| vs {policies[0]} |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for (name, policy), (run, rates) in runs.items():
        base = runs[name, policies[0]][1]
        ratio = statistics.median(r / b for r, b in zip(rates, base, strict=True))
        print(
            f"| {name} | {policy} | {len(run[1])} | {statistics.median(rates):.1f} "
            f"| {', '.join(f'{r:.0f}' for r in rates)} | {ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
