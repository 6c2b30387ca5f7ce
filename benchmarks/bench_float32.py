"""Where float32 training time goes, and what XLA and thread settings change.

Run by hand (never from the unit tests):
  python benchmarks/bench_float32.py --data_dir=PATH [--repeats=3
      --variants=baseline,xla,inter_op1,intra_op1 --precision=float32
      --denoiser_images=640 --classifier_images=1024 --models=denoiser,classifier]
  python benchmarks/bench_float32.py --data_dir=PATH --profile [--steps=8]
  ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_float32.py ...   # AVX2 only

Models, each built and compiled by its job's own code under --precision:
  denoiser: flags/resnet.cfg (`denoise_job._build`: ResNet 12 x 64 on the
    16x16x12 unshuffled tensor, batch 64, Adam);
  classifier: flags/classifier_cpu.cfg (`classify_job._build`: airbench,
    width 64, batch 256, Nesterov SGD, label smoothing).

Timing (the default): each variant runs in a process of its own (thread
settings cannot change once TensorFlow has started), the variants in turn,
`--repeats` rounds, so machine load hits them alike; medians are reported,
and each speed-up is the median of its per-round ratios to `baseline`.
In each process a model first trains two steps that are not timed
(tracing, XLA compilation, oneDNN's first calls), then one `fit` epoch
over in-memory tensors (the denoiser's noisy inputs drawn once, the
classifier's images with one-hot labels, as its pipeline gives them):
  baseline: what the apps do today (no XLA, TensorFlow's thread defaults);
  xla: `compile(jit_compile=True)` (Keras 3's "auto" leaves XLA off on CPU);
  inter_op1: `tf.config.threading.set_inter_op_parallelism_threads(1)`;
  intra_op1: `set_intra_op_parallelism_threads(1)`.

--profile: for each model, `--steps` training steps fed by the job's own
tf.data pipeline (noise, flips and rotations on the fly; crops, flips and
CutMix) under the TensorFlow profiler, summed by op kind over the compute
threads; then the pipeline alone, CPU seconds per image (all threads).
"""

import argparse
import collections
import glob
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
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
from cifar_denoise_adv.denoising import pipelines as denoise_pipelines  # noqa: E402

# The executor's spans on the compute threads, which hold the ops.
SPANS = ("Process", "ExecutorState::Process", "ExecutorDoneCallback")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("baseline", "xla", "inter_op1", "intra_op1")
# Op kinds of the profile, by TensorFlow op type (oneDNN's names included).
OP_KINDS = (
    ("conv forward", ("Conv2D", "FusedConv2D")),
    ("conv backward, filter", ("Conv2DBackpropFilter",)),
    ("conv backward, input", ("Conv2DBackpropInput",)),
)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.environ.get(data.ENV_DATA_DIR))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--models", default="denoiser,classifier")
    parser.add_argument("--denoiser_images", type=int, default=640)
    parser.add_argument("--classifier_images", type=int, default=1024)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--steps", type=int, default=8, help="profiled steps")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one variant's process
    return parser.parse_args()


def _config(name: str, policy: str, jit: bool):
    flagfile = "resnet.cfg" if name == "denoiser" else "classifier_cpu.cfg"
    app = denoise.APP if name == "denoiser" else classify.APP
    return app.parse_flagfile(
        os.path.join(ROOT, "flags", flagfile),
        {"precision": policy, "jit_compile": jit, "run_dir": tempfile.mkdtemp()},
    )


def _model(name: str, config, images: np.ndarray, labels: np.ndarray):
    """The job's own compiled model for `images` (one epoch's steps)."""
    steps = math.ceil(len(images) / config.batch_size)
    with precision.precision_scope(config.precision):
        if name == "denoiser":
            return denoise_job._build(config, steps)
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
        return classify_job._build(config, setup)


def _tensors(name: str, config, images: np.ndarray, labels: np.ndarray):
    if name == "denoiser":
        seed = tf.random.experimental.stateless_split([7, 7], 1)[0]
        noisy = noise_lib.add_gaussian_noise(tf.constant(images), config.sigma, seed)
        return noisy, tf.constant(images)
    return tf.constant(images), tf.one_hot(labels, data.NUM_CLASSES)


def _worker(args) -> None:
    """One variant in this process: prints {model: training images/s}."""
    if args.worker == "inter_op1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.worker == "intra_op1":
        tf.config.threading.set_intra_op_parallelism_threads(1)
    rates = {}
    for name in args.models.split(","):
        count = getattr(args, f"{name}_images")
        images, labels = _images(args.data_dir, count)
        keras.utils.set_random_seed(0)
        config = _config(name, args.precision, args.worker == "xla")
        model = _model(name, config, images, labels)
        inputs, targets = _tensors(name, config, images, labels)
        warm = 2 * config.batch_size
        model.fit(
            inputs[:warm], targets[:warm], batch_size=config.batch_size, verbose=0
        )
        start = time.perf_counter()
        model.fit(inputs, targets, batch_size=config.batch_size, verbose=0)
        rates[name] = count / (time.perf_counter() - start)
    print(json.dumps(rates))


def _images(data_dir: str, count: int):
    """`count` training images (the subset repeated if it has fewer)."""
    images, labels = data.load_arrays("train", data_dir, count)
    repeat = np.arange(count) % len(images)
    return images[repeat], labels[repeat]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [
                line.split(":", 1)[1] for line in f if line.startswith("model name")
            ]
    except OSError:
        names = []
    return names[0].strip() if names else platform.processor() or platform.machine()


def _machine_line(load_before, load_after) -> str:
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all the CPU has")
    return (
        f"machine: {platform.platform()}, {_cpu_name()}, {os.cpu_count()} CPUs, "
        f"oneDNN ISA: {isa}; load (1 min) {load_before:.2f} before, "
        f"{load_after:.2f} after; TF {tf.__version__}, Keras {keras.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )


def _timing(args) -> None:
    variants = args.variants.split(",")
    rates = collections.defaultdict(list)  # (model, variant) -> per round
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for variant in variants:
            command = [sys.executable, *sys.argv, f"--worker={variant}"]
            output = subprocess.run(command, capture_output=True, text=True)
            if output.returncode:
                sys.exit(f"{variant} failed:\n{output.stderr[-3000:]}")
            result = json.loads(output.stdout.strip().splitlines()[-1])
            for name, rate in result.items():
                rates[name, variant].append(rate)
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(_machine_line(load_before, os.getloadavg()[0]))
    print()
    print("| model | variant | train images/s (median) | rounds | vs baseline |")
    print("| --- | --- | ---: | --- | ---: |")
    for (name, variant), values in rates.items():
        base = rates[name, variants[0]]
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"| {name} | {variant} | {statistics.median(values):.1f} "
            f"| {', '.join(f'{v:.0f}' for v in values)} "
            f"| {statistics.median(ratios):.2f}x |"
        )


def _pipeline(name: str, config, images, labels) -> tf.data.Dataset:
    """The job's own training pipeline over `images`, repeated."""
    dataset = pipelines.from_arrays(images, labels)
    if name == "denoiser":
        batches = denoise_pipelines.noisy_pairs(
            dataset,
            sigma=config.sigma,
            batch_size=config.batch_size,
            seed=0,
            training=True,
            augment=config.augment,
        )
    else:
        batches = pipelines.labelled_batches(
            dataset,
            batch_size=config.batch_size,
            seed=0,
            training=True,
            augment=config.augment,
            translate=config.translate,
            cutout=config.cutout,
            cutmix=config.cutmix,
            one_hot=data.NUM_CLASSES,
        )
    return batches.repeat()


def _op_seconds(logdir: str) -> collections.Counter:
    """Seconds by op kind on the compute threads, from the profiler's trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name:  # the executor's own spans, not ops
                    continue
                op = name.rsplit(":", 1)[1]
                if op in SPANS:
                    continue
                op = op.removeprefix("_MklNative").removeprefix("_Mkl")
                op = op.removesuffix("WithBias")
                kind = next((k for k, ops in OP_KINDS if op in ops), None)
                seconds[kind or f"other: {op}"] += event.duration_ps / 1e12
    return seconds


def _profile(args) -> None:
    images, labels = _images(args.data_dir, 2048)
    print(f"command: {' '.join(['python', *sys.argv])}")
    load_before = os.getloadavg()[0]
    rows = []
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        config = _config(name, args.precision, False)
        model = _model(name, config, images, labels)
        batches = _pipeline(name, config, images, labels)
        model.fit(batches, steps_per_epoch=2, verbose=0)  # tracing, first calls
        logdir = tempfile.mkdtemp()
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(batches, steps_per_epoch=args.steps, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        seconds = _op_seconds(logdir)
        count = 0
        cpu = time.process_time()
        for x, _ in batches.take(math.ceil(len(images) / config.batch_size)):
            count += len(x)
        pipeline_ms = 1000 * (time.process_time() - cpu) / count
        total = sum(seconds.values())
        step_ms = 1000 * wall / args.steps
        others = [k for k, _ in seconds.most_common() if k.startswith("other")]
        seconds["other ops, all"] = sum(seconds[k] for k in others)
        kinds = [k for k, _ in OP_KINDS] + ["other ops, all"] + others[:6]
        for kind in kinds:
            rows.append(
                f"| {name} | {kind} | {seconds[kind]:.2f} "
                f"| {100 * seconds[kind] / total:.0f}% |"
            )
        rows.append(
            f"| {name} | (step wall time, ms; images/s) | {step_ms:.0f} "
            f"| {args.steps * config.batch_size / wall:.1f} images/s |"
        )
        rows.append(
            f"| {name} | (pipeline alone, CPU ms per image) | {pipeline_ms:.3f} "
            f"| {pipeline_ms / (2 * step_ms / config.batch_size):.1%} of 2 cores' "
            "step time |"
        )
    print(_machine_line(load_before, os.getloadavg()[0]))
    print()
    print("| model | op kind | compute-thread seconds | share |")
    print("| --- | --- | ---: | ---: |")
    print("\n".join(rows))


def main() -> int:
    args = _parse()
    if not args.data_dir:
        sys.exit("give --data_dir (or set CIFAR10_DIR): a local CIFAR-10 copy")
    precision.check_precision(args.precision)
    if args.worker:
        _worker(args)
    elif args.profile:
        _profile(args)
    else:
        _timing(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
