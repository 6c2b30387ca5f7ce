"""Attack speed on this machine: our attacks against ART, cleverhans and foolbox.

Run by hand (never from the unit tests), in a venv with the competitors
(`pip install -e .[bench]`):
  python benchmarks/bench_attacks.py [--data_dir=PATH --train_images=10000]
      [--model=classifier.keras --num_images=100 --art_deepfool_images=20]

One small Keras CNN (built here, trained for a moment on --train_images
CIFAR-10 images when --data_dir is given, or loaded from --model) and the
same images (the first --num_images test images, or uniform noise without
--data_dir) go through every attack, in one process:
  targeted FGSM (eps 8/255), targeted iterative FGSM / PGD (10 steps of
  2/255), L2 DeepFool (overshoot 0.02, 50 steps, 10 candidates), and one
  universal-perturbation pass (Algorithm 1, L-inf xi 10/255, L2 DeepFool
  of 10 steps) over --uap_images images.
Each attack runs on two and on three images first, so tracing (of the
shape-generic graph) stays out of the timing; the fast ones then run once
more untimed and report the median of 3 timed runs (ART's DeepFool and the
universal passes run once). A competitor that does not
import is skipped with a note. Prints a markdown table.
"""

import argparse
import importlib.metadata
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from cifar_denoise_adv.adversarial import attacks  # noqa: E402
from cifar_denoise_adv.core import data  # noqa: E402

EPSILON = 8 / 255
STEP_SIZE = 2 / 255
NUM_STEPS = 10
OVERSHOOT = 0.02
DEEPFOOL_STEPS = 50
UAP_XI = 10 / 255
UAP_DEEPFOOL_STEPS = 10


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", help="local CIFAR-10; default: random images")
    parser.add_argument("--model", help="a .keras classifier returning logits")
    parser.add_argument("--num_images", type=int, default=100)
    parser.add_argument(
        "--train_images",
        type=int,
        default=10000,
        help="train the built CNN on this many images (needs --data_dir; 0: no)",
    )
    parser.add_argument("--train_epochs", type=int, default=8)
    parser.add_argument("--uap_images", type=int, default=100)
    parser.add_argument(
        "--art_deepfool_images", type=int, default=20, help="ART's DeepFool is slow"
    )
    parser.add_argument(
        "--art_uap_images", type=int, default=100, help="0 skips ART's UAP"
    )
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument(
        "--libraries",
        default="ours,art,cleverhans,foolbox",
        help="comma-separated subset to run",
    )
    return parser.parse_args()


def build_cnn() -> keras.Model:
    """Three conv blocks (32, 64, 128 filters) and a dense layer: logits [B, 10]."""
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for index, filters in enumerate((32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", name=f"block{index}_conv")(x)
        x = layers.ReLU(name=f"block{index}_relu")(x)
        x = layers.MaxPooling2D(name=f"block{index}_pool")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="bench_cnn")


def _model_and_images(args):
    if args.model:
        model = keras.models.load_model(args.model)
        description = f"loaded {args.model}"
    else:
        keras.utils.set_random_seed(0)
        model = build_cnn()
        description = "3-block CNN (32/64/128), untrained"
        if args.data_dir and args.train_images:
            train_x, train_y = data.load_arrays(
                "train", args.data_dir, limit=args.train_images
            )
            model.compile(
                keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            model.fit(
                train_x, train_y, batch_size=64, epochs=args.train_epochs, verbose=0
            )
            description = (
                f"3-block CNN (32/64/128), trained {args.train_epochs} epochs on "
                f"{len(train_x)} images"
            )
    if args.data_dir:
        images, labels = data.load_arrays("test", args.data_dir, limit=args.num_images)
        accuracy = float(np.mean(attacks.predict_labels(model, images) == labels))
        description += f", test accuracy on these images {accuracy:.2f}"
        source = f"first {len(images)} CIFAR-10 test images"
    else:
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 1, (args.num_images, 32, 32, 3)).astype(np.float32)
        source = f"{len(images)} uniform-noise images"
    return model, images, description, source


class Bench:
    """Runs timed attacks and collects table rows."""

    def __init__(self, model, images, batch_size):
        self.model = model
        self.images = images
        self.batch_size = batch_size
        self.clean = np.asarray(attacks.predict_labels(model, images))
        offsets = np.random.default_rng(1).integers(1, 10, size=len(images))
        self.targets = (self.clean + offsets) % 10
        self.rows = []

    def timed(self, library, attack, run, count, score, repeats=3):
        """run(slice) -> adversarial; score(adversarial, slice) -> (success, extra).

        With repeats > 1 the attack also runs once untimed on all `count`
        images (TF/oneDNN set up kernels per batch shape), and the median of
        `repeats` timed runs is reported: the machine may be shared.
        """
        # Two batch sizes, so tf.function traces its shape-generic graph now.
        run(slice(0, 2))
        run(slice(0, 3))
        part = slice(0, count)
        if repeats > 1:
            run(part)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            adversarial = run(part)
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        success, extra = score(np.asarray(adversarial), part)
        self.rows.append((library, attack, count, seconds, success, extra))

    def batched(self, attack_fn, part):
        """attack_fn(images, targets) on `part`, in batches."""
        images, targets = self.images[part], self.targets[part]
        return np.concatenate(
            [
                np.asarray(
                    attack_fn(
                        images[i : i + self.batch_size],
                        targets[i : i + self.batch_size],
                    )
                )
                for i in range(0, len(images), self.batch_size)
            ]
        )

    def targeted_score(self, adversarial, part):
        predictions = np.asarray(attacks.predict_labels(self.model, adversarial))
        rate = attacks.targeted_success_rate(predictions, self.targets[part])
        linf = float(np.max(attacks.linf_norm(adversarial - self.images[part])))
        return rate, f"max L-inf {linf * 255:.2f}/255"

    def untargeted_score(self, adversarial, part):
        predictions = np.asarray(attacks.predict_labels(self.model, adversarial))
        fooled = predictions != self.clean[part]
        norms = np.asarray(attacks.l2_norm(adversarial - self.images[part]))
        extra = f"median L2 {_median(norms[fooled]):.4f}"
        if len(norms) < len(self.images):  # a subset: our median on it too
            ours = attacks.deepfool(
                self.model,
                self.images[part],
                overshoot=OVERSHOOT,
                max_iter=DEEPFOOL_STEPS,
            )
            ours_norms = np.asarray(attacks.l2_norm(ours.perturbation))[
                np.asarray(ours.success)
            ]
            extra += f" (ours on these: {_median(ours_norms):.4f})"
        return float(fooled.mean()), extra


def _median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def bench_ours(bench, args):
    model = bench.model
    bench.timed(
        "ours",
        "targeted FGSM",
        lambda part: bench.batched(
            lambda x, t: attacks.targeted_fgsm(model, x, t, EPSILON), part
        ),
        len(bench.images),
        bench.targeted_score,
    )
    bench.timed(
        "ours",
        f"targeted iterative ({NUM_STEPS} steps)",
        lambda part: bench.batched(
            lambda x, t: attacks.targeted_iterative(
                model, x, t, EPSILON, STEP_SIZE, NUM_STEPS
            ),
            part,
        ),
        len(bench.images),
        bench.targeted_score,
    )
    bench.timed(
        "ours",
        "DeepFool L2",
        lambda part: bench.batched(
            lambda x, _: (
                attacks.deepfool(
                    model, x, overshoot=OVERSHOOT, max_iter=DEEPFOOL_STEPS
                ).adversarial
            ),
            part,
        ),
        len(bench.images),
        bench.untargeted_score,
    )
    _uap_row(
        bench,
        "ours",
        lambda images: (
            attacks.universal_perturbation(
                model,
                images,
                UAP_XI,
                np.inf,
                max_passes=1,
                overshoot=OVERSHOOT,
                max_iter_deepfool=UAP_DEEPFOOL_STEPS,
            ).perturbation
        ),
        args.uap_images,
    )


def _uap_row(bench, library, run, count):
    """One Algorithm-1 pass over `count` images: the fooling rate after it."""
    images = bench.images[:count]
    run(images[:2])
    run(images[:3])
    start = time.perf_counter()
    v = np.asarray(run(images))
    seconds = time.perf_counter() - start
    rate = attacks.fooling_rate(
        bench.model, images, v, clean_labels=bench.clean[:count]
    )
    linf = float(np.abs(v).max())
    bench.rows.append(
        (
            library,
            "universal, 1 pass",
            count,
            seconds,
            rate,
            f"fooling rate; L-inf {linf * 255:.1f}/255",
        )
    )


def bench_art(bench, args):
    from art.attacks.evasion import DeepFool
    from art.attacks.evasion import FastGradientMethod
    from art.attacks.evasion import ProjectedGradientDescent
    from art.attacks.evasion import UniversalPerturbation
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        bench.model,
        nb_classes=10,
        input_shape=(32, 32, 3),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )

    def one_hot(targets):
        return np.eye(10, dtype=np.float32)[targets]

    fgm = FastGradientMethod(
        classifier, eps=EPSILON, targeted=True, batch_size=bench.batch_size
    )
    bench.timed(
        "ART",
        "targeted FGSM",
        lambda part: fgm.generate(bench.images[part], y=one_hot(bench.targets[part])),
        len(bench.images),
        bench.targeted_score,
    )
    pgd = ProjectedGradientDescent(
        classifier,
        eps=EPSILON,
        eps_step=STEP_SIZE,
        max_iter=NUM_STEPS,
        targeted=True,
        num_random_init=0,
        batch_size=bench.batch_size,
        verbose=False,
    )
    bench.timed(
        "ART",
        f"targeted iterative ({NUM_STEPS} steps)",
        lambda part: pgd.generate(bench.images[part], y=one_hot(bench.targets[part])),
        len(bench.images),
        bench.targeted_score,
    )
    deepfool = DeepFool(
        classifier,
        max_iter=DEEPFOOL_STEPS,
        epsilon=OVERSHOOT,
        nb_grads=10,
        batch_size=bench.batch_size,
        verbose=False,
    )
    bench.timed(
        "ART",
        "DeepFool L2",
        lambda part: deepfool.generate(bench.images[part]),
        min(args.art_deepfool_images, len(bench.images)),
        bench.untargeted_score,
        repeats=1,
    )
    if args.art_uap_images:

        def universal(images):
            attack = UniversalPerturbation(
                classifier,
                attacker="deepfool",
                attacker_params={
                    "max_iter": UAP_DEEPFOOL_STEPS,
                    "epsilon": OVERSHOOT,
                    "nb_grads": 10,
                    "verbose": False,
                },
                delta=0.2,
                max_iter=1,
                eps=UAP_XI,
                norm=np.inf,
                verbose=False,
            )
            attack.generate(images)
            return attack.noise[0]  # v itself; generate returns clip(x + v)

        _uap_row(bench, "ART", universal, args.art_uap_images)


def bench_cleverhans(bench, args):
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.projected_gradient_descent import (
        projected_gradient_descent,
    )

    bench.timed(
        "cleverhans",
        "targeted FGSM",
        lambda part: bench.batched(
            lambda x, t: fast_gradient_method(
                bench.model,
                tf.constant(x),
                EPSILON,
                np.inf,
                clip_min=0.0,
                clip_max=1.0,
                y=tf.constant(t),
                targeted=True,
            ),
            part,
        ),
        len(bench.images),
        bench.targeted_score,
    )
    bench.timed(
        "cleverhans",
        f"targeted iterative ({NUM_STEPS} steps)",
        lambda part: bench.batched(
            lambda x, t: projected_gradient_descent(
                bench.model,
                tf.constant(x),
                EPSILON,
                STEP_SIZE,
                NUM_STEPS,
                np.inf,
                clip_min=0.0,
                clip_max=1.0,
                y=tf.constant(t),
                targeted=True,
                rand_init=False,
                sanity_checks=False,
            ),
            part,
        ),
        len(bench.images),
        bench.targeted_score,
    )


def bench_foolbox(bench, args):
    import foolbox

    model = foolbox.TensorFlowModel(bench.model, bounds=(0.0, 1.0))
    attack = foolbox.attacks.L2DeepFoolAttack(
        steps=DEEPFOOL_STEPS, candidates=10, overshoot=OVERSHOOT, loss="logits"
    )

    def run(x, _):
        labels = tf.constant(attacks.predict_labels(bench.model, x))
        criterion = foolbox.criteria.Misclassification(labels)
        return attack.run(model, tf.constant(x), criterion)

    bench.timed(
        "foolbox",
        "DeepFool L2",
        lambda part: bench.batched(run, part),
        len(bench.images),
        bench.untargeted_score,
    )


BENCHES = {
    "ours": bench_ours,
    "art": bench_art,
    "cleverhans": bench_cleverhans,
    "foolbox": bench_foolbox,
}
DISTRIBUTIONS = {
    "art": "adversarial-robustness-toolbox",
    "cleverhans": "cleverhans",
    "foolbox": "foolbox",
}


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    args = _parse()
    model, images, description, source = _model_and_images(args)
    bench = Bench(model, images, args.batch_size)
    notes = []
    for name in args.libraries.split(","):
        try:
            BENCHES[name](bench, args)
        except ImportError as error:
            notes.append(f"{name} skipped: {error}")

    versions = ", ".join(
        [f"TF {tf.__version__}", f"Keras {keras.__version__}"]
        + [f"{name} {_version(dist)}" for name, dist in DISTRIBUTIONS.items()]
    )
    print(f"command: python {' '.join(sys.argv)}")
    print(f"model: {description}; images: {source}")
    print(
        f"machine: {platform.platform()}, {platform.processor() or '?'}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end"
    )
    print(f"versions: {versions}")
    print()
    print("| library | attack | images | seconds | images/s | s/image | success | |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for library, attack, count, seconds, success, extra in bench.rows:
        print(
            f"| {library} | {attack} | {count} | {seconds:.2f} | "
            f"{count / seconds:.1f} | {seconds / count:.4f} | {success:.2f} | "
            f"{extra} |"
        )
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
