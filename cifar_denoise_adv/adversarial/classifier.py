"""The CIFAR-10 classifier the attacks use: ResNet-9, TTA, loss and loading.

The classifier takes images in [0, 1] (its normalisation is a layer) and
returns logits, which is what every attack expects. `load_classifier`
checks that contract for any model given as --classifier. Test-time
augmentation (`with_test_time_augmentation`) averages the logits of the
image and its mirror (and of one-pixel shifts) inside the exported model,
so the attacks attack exactly the classifier whose accuracy is reported.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.adversarial.attacks import contract
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import keras_files
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError

_PACKAGE = "cifar_denoise_adv"

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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Shift(layers.Layer):
    """Flips images left-right and/or shifts them by whole pixels (reflecting).

    A view for test-time augmentation: [B, H, W, C] -> the same shape.
    """

    def __init__(self, flip: bool = False, dy: int = 0, dx: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.flip, self.dy, self.dx = flip, dy, dx

    def call(self, images):
        if self.flip:
            images = images[:, :, ::-1, :]
        if self.dy or self.dx:
            pad = max(abs(self.dy), abs(self.dx))
            padded = tf.pad(
                images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT"
            )
            height, width = tf.shape(images)[1], tf.shape(images)[2]
            top, left = pad - self.dy, pad - self.dx
            images = padded[:, top : top + height, left : left + width, :]
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "dy": self.dy, "dx": self.dx}


TTA_VIEWS = {
    0: ((1.0, False, 0, 0),),
    1: ((0.5, False, 0, 0), (0.5, True, 0, 0)),
    # airbench's level 2: the mirror pair, and the mirror pairs of the image
    # shifted one pixel up-left and down-right, weighted 1/2, 1/4, 1/4.
    2: (
        (0.25, False, 0, 0),
        (0.25, True, 0, 0),
        (0.125, False, 1, 1),
        (0.125, True, 1, 1),
        (0.125, False, -1, -1),
        (0.125, True, -1, -1),
    ),
}


def with_test_time_augmentation(model: keras.Model, level: int) -> keras.Model:
    """The model whose logits are the weighted mean over TTA_VIEWS[level].

    Level 0 returns `model` itself; level 1 averages the image and its
    mirror; level 2 also the mirror pairs of the one-pixel shifts. The
    result is differentiable end to end (attacks take gradients through
    every view).
    """
    if level not in TTA_VIEWS:
        raise ValueError(f"level must be one of {sorted(TTA_VIEWS)}, got {level}.")
    if level == 0:
        return model
    images = keras.Input(model.input_shape[1:], name="images")
    weighted = []
    for i, (weight, flip, dy, dx) in enumerate(TTA_VIEWS[level]):
        view = Shift(flip, dy, dx, name=f"tta_view{i}")(images)
        weighted.append(layers.Rescaling(weight, name=f"tta_weight{i}")(model(view)))
    logits = layers.Add(name="logits_tta", dtype="float32")(weighted)
    return keras.Model(images, logits, name=f"{model.name}_tta{level}")


def test_time_augmentation(model: keras.Model) -> tuple[keras.Model, int]:
    """(network, level): the net inside a test-time-augmentation wrapper.

    A `classify` run exports its network wrapped by
    `classifier.with_test_time_augmentation` (its logits averaged over
    mirrored and shifted views: each view is one more pass of the network,
    to run and to differentiate). For such a model this returns the network
    and the level; for any other, the model itself and level 0.
    """
    views = [layer for layer in model.layers if isinstance(layer, Shift)]
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not views or len(inner) != 1:
        return model, 0
    levels = [k for k, v in TTA_VIEWS.items() if len(v) == len(views)]
    return inner[0], levels[0] if levels else -1


def with_tta_level(model: keras.Model, level: int | None) -> tuple[keras.Model, dict]:
    """The classifier with `level` test-time augmentation (None: as exported).

    Returns:
      (model, {"exported": its level, "used": the level of the result}); an
      exported level that `TTA_VIEWS` does not know is -1 and can only be
      kept as it is.
    """
    network, exported = test_time_augmentation(model)
    if level is None or level == exported:
        return model, {"exported": exported, "used": exported}
    if exported == -1:
        raise UserError(
            "--classifier_tta: the classifier's test-time augmentation has views "
            "this version does not know; leave --classifier_tta unset."
        )
    rebuilt = with_test_time_augmentation(network, level)
    return rebuilt, {"exported": exported, "used": level}


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy against logits, with label smoothing.

    Takes integer labels [B] (or [B, 1]), which it one-hot encodes (Keras 3's
    SparseCategoricalCrossentropy has no label smoothing), or label
    distributions [B, num_classes] as CutMix makes them.
    """

    def __init__(self, smoothing: float = 0.0, num_classes: int = 10, **kwargs):
        kwargs.setdefault("name", "smoothed_crossentropy")
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        if y_true.shape.rank == 2 and y_true.shape[-1] == self.num_classes > 1:
            target = tf.cast(y_true, y_pred.dtype)  # label distributions
        else:
            labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
            target = tf.one_hot(labels, self.num_classes)
        return keras.losses.categorical_crossentropy(
            target,
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


def load_classifier(run_dir: str, log=lambda message: None) -> keras.Model:
    """The Keras classifier of a `classify` run (its folder or model.keras).

    The model is checked as the attacks need it (`check_classifier`); a model
    ending in a softmax comes back as its logits model, and `log` says so.

    Raises:
      UserError: naming --classifier when there is no model.keras there, or
        when the model breaks the contract.
    """
    path = run_dir
    if os.path.isdir(run_dir):
        path = os.path.join(run_dir, training.KERAS_FILE)
    if not os.path.isfile(path):
        raise UserError(
            f"--classifier={run_dir}: no {training.KERAS_FILE} there; expected the "
            "run folder of a finished `classify` run, or its model.keras."
        )
    model = keras_files.load(path, "classifier")
    return check_classifier(model, f"--classifier={run_dir}", log)


def load_attacked(config: AttackConfig, log=lambda message: None):
    """(model, tta, precision): the classifier an attack job attacks.

    The run's model (`load_classifier`) with --classifier_tta applied
    (`with_tta_level`), computing in the precision --precision means for
    it on this machine (`precision.choose_for_model`; one line says which
    and why). `tta` is {"exported": level, "used": level} and `precision`
    the `precision.Choice`, for the record.

    Raises:
      UserError: as `load_classifier`, naming --classifier_tta when the
        exported views are unknown to this version, or --precision when this
        machine cannot run it.
    """
    model, tta = with_tta_level(
        load_classifier(config.classifier, log), config.classifier_tta
    )
    trained = precision.trained_precision(model)
    chosen = precision.choose_for_model(config.precision, trained)
    log(chosen.line())
    if chosen.precision != trained or config.precision != precision.AUTO:
        model = precision.with_precision(model, chosen.precision)
    return model, tta, chosen


def check_classifier(model: keras.Model, name: str, log=lambda message: None):
    """A CIFAR-10 classifier as the attacks take it, or one line saying why not.

    The contract: float32 [B, 32, 32, 3] images in [0, 1] in, [B, 10] logits
    out. A model ending in a softmax is returned as its logits model (the
    same predictions; `attacks.contract.softmax_logits`), which `log` says.

    Args:
      model: the loaded Keras model.
      name: how messages name it (`--classifier=PATH`).
      log: called with one line when the softmax is left out.

    Raises:
      UserError: one line naming `name`: wrong input or output shape, 0-255
        input rescaling, or probabilities whose logits cannot be recovered.
    """
    inputs = getattr(model, "inputs", None) or []
    shape = list(inputs[0].shape[1:]) if len(inputs) == 1 else None
    if shape != [32, 32, 3]:
        raise UserError(
            f"{name}: the model takes inputs of shape {shape}; expected CIFAR-10 "
            "images, 32x32x3 in [0, 1]."
        )
    outputs = getattr(model, "outputs", None) or []
    width = list(outputs[0].shape[1:]) if len(outputs) == 1 else None
    if width != [10]:
        raise UserError(
            f"{name}: the model returns {width} per image; expected one row of 10 "
            "scores (logits), one per CIFAR-10 class."
        )
    logits = contract.logits_model(model, warn=False)
    if logits is not model:
        log(
            f"{name}: the model ends in a softmax; attacking its logits (the "
            "softmax's input), which give the same predictions"
        )
    probe = np.random.default_rng(0).uniform(size=(4, 32, 32, 3))
    logits, _ = contract.check_model(logits, tf.constant(probe, tf.float32), name=name)
    return logits


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


def classifier_tta_setting():
    """The --classifier_tta setting of every app that attacks a classifier."""
    return setting(
        None,
        "Test-time augmentation of the attacked classifier: unset keeps the "
        "run's model as exported; 0, 1 or 2 rebuilds it around the run's "
        "network (each view is one more network pass to attack; 2 has 6).",
        low=0,
        high=2,
    )


@dataclasses.dataclass(frozen=True)
class AttackConfig(config_lib.RunConfig):
    """Settings every attack job has: the classifier it attacks, batches, figures."""

    classifier: str = setting(
        "",
        "Run folder of the classify app (or its model.keras): the model to attack.",
        path=True,
    )
    classifier_tta: int | None = classifier_tta_setting()
    precision: str = setting(
        precision.AUTO,
        "Compute precision of the attacked classifier (the attacks take "
        "gradients in float32 on the float32 input either way). auto (the "
        "default): the precision it was trained at where this machine computes "
        "it natively, else float32 (a bfloat16-trained classifier on a CPU "
        "without bfloat16 units); float32, mixed_bfloat16 or mixed_float16 "
        "re-create it under that Keras policy (logits float32); one this "
        "machine would only emulate is refused.",
        choices=precision.CHOICES,
    )
    batch_size: int = setting(128, "Images per model call (and per sgd step).", low=1)
    num_examples: int = setting(
        6,
        "Example figures (targeted) or rows (universal).",
        low=1,
        defines_result=False,
    )
