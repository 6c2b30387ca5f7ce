"""The CIFAR-10 classifier the attacks use: builder, loss and loading.

The classifier takes images in [0, 1] (its normalisation is a layer) and
returns logits, which is what every attack expects.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

# CIFAR-10 per-channel statistics of the training set (in [0, 1] pixels).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_classifier(
    width: int = 32,
    num_classes: int = 10,
    dropout: float = 0.0,
    name: str = "resnet9_classifier",
) -> keras.Model:
    """A ResNet-9-style CIFAR-10 classifier with logits output.

    The DAWNBench ResNet-9 layout (D. Page, "How to train your ResNet",
    2018): prep conv; stage 1 conv + max-pool + residual block of two convs;
    stage 2 conv + max-pool; stage 3 conv + max-pool + residual block;
    global max-pool; dense. Channels are width x (1, 2, 4, 8); Page uses 64,
    a smaller width trades accuracy for CPU time. Inputs are images in
    [0, 1]: the per-channel normalisation is part of the model, so attacks
    and users work in pixel units.

    Args:
      width: channels of the prep conv; the stages use 2x, 4x and 8x.
      num_classes: number of logits.
      dropout: dropout rate before the dense layer.
      name: model name.

    Returns:
      Uncompiled keras.Model: float32 [B, 32, 32, 3] in [0, 1] -> logits
      [B, num_classes].
    """
    if width < 1 or num_classes < 2 or not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"need width >= 1, num_classes >= 2, 0 <= dropout < 1; got {width}, "
            f"{num_classes}, {dropout}."
        )
    images = keras.Input((32, 32, 3), name="images")
    x = layers.Normalization(
        mean=CIFAR10_MEAN,
        variance=[s**2 for s in CIFAR10_STD],
        name="normalize",
    )(images)
    x = _conv_bn_relu(x, width, "prep")
    for stage, (factor, residual) in enumerate(((2, True), (4, False), (8, True)), 1):
        x = _conv_bn_relu(x, width * factor, f"stage{stage}")
        x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        if residual:
            y = _conv_bn_relu(x, width * factor, f"stage{stage}_res1")
            y = _conv_bn_relu(y, width * factor, f"stage{stage}_res2")
            x = layers.Add(name=f"stage{stage}_add")([x, y])
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    # float32 logits whatever the policy: the loss and the attacks need them.
    logits = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(images, logits, name=name)


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against logits, with label smoothing.

    Keras 3's SparseCategoricalCrossentropy has no label smoothing; this
    one-hot encodes the labels and uses the categorical version.
    """

    def __init__(self, smoothing: float = 0.0, num_classes: int = 10, **kwargs):
        kwargs.setdefault("name", "smoothed_crossentropy")
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return keras.losses.categorical_crossentropy(
            tf.one_hot(labels, self.num_classes),
            y_pred,
            from_logits=True,
            label_smoothing=self.smoothing,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "smoothing": self.smoothing,
            "num_classes": self.num_classes,
        }


def load_classifier(run_dir: str) -> keras.Model:
    """The Keras classifier of a `classify` run (its folder or model.keras).

    Raises:
      UserError: naming --classifier when there is no model.keras there.
    """
    path = run_dir
    if os.path.isdir(run_dir):
        path = os.path.join(run_dir, training.KERAS_FILE)
    if not os.path.isfile(path):
        raise UserError(
            f"--classifier={run_dir}: no {training.KERAS_FILE} there; expected the "
            "run folder of a finished `classify` run, or its model.keras."
        )
    return keras.models.load_model(path)


# Below this clean accuracy on the attacked images, an attack's rates say
# little: the apps say so in their output and metrics.json.
WEAK_ACCURACY = 0.5


def weak_classifier_warnings(accuracies: dict[str, tuple[float, int]]) -> list[str]:
    """One warning per {images: (clean accuracy, count)} below WEAK_ACCURACY.

    E.g. {"test images attacked": (0.18, 400)} gives "the classifier is right
    on only 18.0% of the 400 test images attacked (below 50%): ...".
    """
    return [
        f"the classifier is right on only {100 * accuracy:.1f}% of the {count} "
        f"{images} (below {100 * WEAK_ACCURACY:.0f}%): an attack on a classifier "
        "this weak says little about a trained one; train it longer "
        "(flags/classifier_cpu.cfg) or check --classifier"
        for images, (accuracy, count) in accuracies.items()
        if accuracy < WEAK_ACCURACY
    ]


@dataclasses.dataclass(frozen=True)
class AttackConfig(config_lib.RunConfig):
    """Settings every attack job has: the classifier it attacks, batches, figures."""

    classifier: str = setting(
        "",
        "Run folder of the classify app (or its model.keras): the model to attack.",
        path=True,
    )
    batch_size: int = setting(128, "Images per model call (and per sgd step).", low=1)
    num_examples: int = setting(
        6,
        "Example figures (targeted) or rows (universal).",
        low=1,
        defines_result=False,
    )
