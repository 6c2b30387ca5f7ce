"""Variants of the signed-gradient universal perturbation, side by side.

Run by hand (never from the unit tests):
  python benchmarks/uap_sgd_variants.py --classifier=runs/study_cpu/classifier \
      --data_dir=../shared/cifar10/cifar-10-batches-py [--train_images=2000] \
      [--xi=10] [VARIANT ...]

For a classifier run of the `classify` app, computes an L-inf universal
perturbation (xi/255) on the first --train_images training images with each
variant and prints, per variant, one JSON line: fooling rate (prediction
changes versus the clean prediction) on those images and on the whole test
set, and seconds. Every variant starts from v = 0, shuffles with seed 0 and
projects after every signed step; they differ in the loss, the batch size,
the step schedule and the number of epochs (see VARIANTS). The `universal`
app's sgd method is the "ce" loss; this script is how its flag file's
settings were chosen (BENCHMARKS.md).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cifar_denoise_adv.adversarial import attacks  # noqa: E402
from cifar_denoise_adv.adversarial import classifier  # noqa: E402
from cifar_denoise_adv.core import data  # noqa: E402

FROG = 6
# loss: "ce" raises the cross-entropy of the clean prediction (clamped at
# `clamp`, Shafahi et al.'s beta); "margin" raises max_other - z_clean
# (clamped); "target" lowers the cross-entropy of class `target`. Steps: lr0
# constant, or a half cosine from lr0 to lr1 over all steps.
VARIANTS = {
    "ce": dict(),
    "ce_clamp2": dict(clamp=2.0),
    "ce_clamp2_cos": dict(clamp=2.0, lr0=0.004, lr1=0.0002),
    "margin0": dict(loss="margin", clamp=0.0),
    "margin2": dict(loss="margin", clamp=2.0),
    "margin2_cos": dict(loss="margin", clamp=2.0, lr0=0.004, lr1=0.0002),
    "ce_30_cos": dict(epochs=30, lr0=0.004, lr1=0.0002),
    "ce_b32": dict(batch=32),
    "ce_b32_cos": dict(batch=32, lr0=0.004, lr1=0.0002),
    "target_frog_b32_cos": dict(loss="target", batch=32, lr0=0.004, lr1=0.0002),
}


def _loss(logits, clean, kind, clamp, target):
    if kind == "target":
        target_labels = tf.fill(tf.shape(clean), tf.cast(target, clean.dtype))
        return -keras.losses.sparse_categorical_crossentropy(
            target_labels, logits, from_logits=True
        )
    if kind == "margin":
        mask = tf.one_hot(clean, logits.shape[-1])
        clean_logit = tf.reduce_sum(logits * mask, -1)
        other = tf.reduce_max(logits - 1e4 * mask, -1)
        return tf.minimum(other - clean_logit, clamp)
    ce = keras.losses.sparse_categorical_crossentropy(clean, logits, from_logits=True)
    return tf.minimum(ce, clamp)


def run(
    model,
    train,
    test,
    xi,
    loss="ce",
    clamp=1e9,
    epochs=10,
    lr0=0.002,
    lr1=None,
    batch=128,
    target=FROG,
):
    @tf.function(reduce_retracing=True)
    def step(v, x, clean, lr):
        with tf.GradientTape() as tape:
            tape.watch(v)
            logits = model(tf.clip_by_value(x + v, 0.0, 1.0))
            value = tf.reduce_mean(_loss(logits, clean, loss, clamp, target))
        return tf.clip_by_value(v + lr * tf.sign(tape.gradient(value, v)), -xi, xi)

    clean = attacks.predict_labels(model, train, 256)
    rng = np.random.default_rng(0)
    v = tf.zeros(train.shape[1:])
    start = time.perf_counter()
    total = epochs * -(-len(train) // batch)
    k = 0
    for _ in range(epochs):
        order = rng.permutation(len(train))
        for first in range(0, len(train), batch):
            index = order[first : first + batch]
            lr = (
                lr0
                if lr1 is None
                else (lr1 + 0.5 * (lr0 - lr1) * (1 + np.cos(np.pi * k / total)))
            )
            v = step(
                v,
                tf.gather(train, index),
                tf.gather(clean, index),
                tf.constant(lr, tf.float32),
            )
            k += 1
    seconds = time.perf_counter() - start
    return {
        "train": round(float(attacks.fooling_rate(model, train, v, 256)), 4),
        "test": round(float(attacks.fooling_rate(model, test, v, 256)), 4),
        "seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", required=True, help="a classify run folder")
    parser.add_argument("--data_dir", required=True, help="local CIFAR-10 copy")
    parser.add_argument("--train_images", type=int, default=2000)
    parser.add_argument("--xi", type=float, default=10.0, help="L-inf radius x 255")
    parser.add_argument("variants", nargs="*", help=f"default: all of {list(VARIANTS)}")
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {list(VARIANTS)}")
    model = classifier.load_classifier(args.classifier)
    train, _ = data.load_arrays("train", args.data_dir, limit=args.train_images)
    test, _ = data.load_arrays("test", args.data_dir)
    for name in args.variants or VARIANTS:
        result = run(model, train, test, args.xi / 255, **VARIANTS[name])
        print(json.dumps({"variant": name, **result}), flush=True)


if __name__ == "__main__":
    main()
