"""The airbench classifier: a small conv net that learns CIFAR-10 fast.

After K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (2024,
arXiv 2404.00498; github.com/KellerJordan/cifar10-airbench, airbench94):
a 2x2 conv whose frozen kernel whitens the image patches of the training
set (Page's ResNet-9 trick), then three groups of conv - max-pool -
batch norm - GELU - conv - batch norm - GELU with widths w, 4w, 4w, a
global max-pool and a linear layer scaled by 1/9. The batch norms learn
only a bias, whose learning rate is raised by reparametrising it
(`ScaledBias`); the convs start near the identity (`DiracInit`); training
uses label smoothing, Nesterov SGD and a lookahead average of the weights
(`Lookahead`). The classify job exports it with test-time augmentation
(`classifier.with_test_time_augmentation`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

_PACKAGE = "cifar_denoise_adv"
WHITENING_SIZE = 2  # the whitening conv's kernel side
WHITENING_EPS = 5e-4
WHITENING_FILTERS = 2 * WHITENING_SIZE**2 * 3  # eigenvectors and their negatives


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiracInit(keras.initializers.Initializer):
    """PyTorch's default conv init plus the identity on the first channels.

    kernel[centre, centre, i, i] = 1 for i < min(in, out) channels, the rest
    uniform in +-1/sqrt(3 fan_in) as PyTorch's `reset_parameters` gives: an
    implicit residual connection at the start of training (airbench).
    """

    def __call__(self, shape, dtype=None):
        height, width, channels_in, channels_out = shape
        kernel = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")(
            shape, dtype="float32"
        )
        count = min(channels_in, channels_out)
        identity = np.zeros(shape, np.float32)
        identity[height // 2, width // 2, np.arange(count), np.arange(count)] = 1.0
        mask = np.ones(shape, np.float32)
        mask[:, :, np.arange(count), np.arange(count)] = 0.0
        return tf.cast(kernel * mask + identity, dtype or "float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaledBias(layers.Layer):
    """Adds `scale * b` per channel: SGD on b moves the bias scale^2 times faster.

    airbench trains its batch-norm biases with a 64x learning rate; scaling
    the parameter by 8 gives the same effective rate with one optimizer.
    """

    def __init__(self, scale: float = 8.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def build(self, input_shape):
        self.bias = self.add_weight(
            shape=(input_shape[-1],), initializer="zeros", name="bias"
        )

    def call(self, inputs):
        return inputs + tf.cast(self.scale * self.bias, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Whiten(layers.Layer):
    """A 2x2 'valid' conv with a frozen kernel and a trainable bias.

    The kernel is set from the training images (`whitening_kernel`) and is
    a non-trainable weight, so it stays frozen after a save and reload.
    """

    def __init__(self, filters: int, kernel_size: int = WHITENING_SIZE, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size

    def build(self, input_shape):
        shape = (self.kernel_size, self.kernel_size, input_shape[-1], self.filters)
        self.kernel = self.add_weight(
            shape=shape, initializer="zeros", trainable=False, name="kernel"
        )
        self.bias = self.add_weight(
            shape=(self.filters,), initializer="zeros", name="bias"
        )

    def call(self, images):
        kernel = tf.cast(self.kernel, images.dtype)
        outputs = tf.nn.conv2d(images, kernel, strides=1, padding="VALID")
        return outputs + tf.cast(self.bias, images.dtype)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        shrink = self.kernel_size - 1
        return (
            batch,
            None if height is None else height - shrink,
            None if width is None else width - shrink,
            self.filters,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
        }


def whitening_kernel(images: np.ndarray, mean, std, eps: float = WHITENING_EPS):
    """The 2x2 conv kernel that whitens the training images' patches.

    The eigenvectors of the covariance of all 2x2x3 patches of the
    normalised images, each divided by the square root of its eigenvalue
    (+ eps), and their negatives: 24 filters (airbench's
    `init_whitening_conv`).

    Args:
      images: float32 [N, 32, 32, 3] in [0, 1], training images.
      mean: per-channel mean of the normalisation.
      std: per-channel std of the normalisation.
      eps: added to the eigenvalues.

    Returns:
      float32 [2, 2, 3, 24] kernel (HWIO).
    """
    x = (np.asarray(images, np.float32) - np.asarray(mean)) / np.asarray(std)
    patches = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 2))
    # [N, 31, 31, C, 2, 2] -> rows of (h, w, c), the kernel's own order.
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 4 * x.shape[-1])
    patches = patches.astype(np.float64)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = (eigenvectors / np.sqrt(eigenvalues + eps)).T.reshape(-1, 2, 2, 3)
    filters = np.concatenate([filters, -filters]).transpose(1, 2, 3, 0)
    return filters.astype(np.float32)


def _batch_norm(x, name: str, bias_scale: float):
    x = layers.BatchNormalization(
        momentum=0.6, epsilon=1e-12, center=False, scale=False, name=f"{name}_bn"
    )(x)
    return ScaledBias(bias_scale, name=f"{name}_bias")(x)


def _conv(width: int, name: str):
    return layers.Conv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=DiracInit(),
        name=name,
    )


def build_airbench(
    whitening: np.ndarray,
    width: int = 64,
    depth: int = 2,
    num_classes: int = 10,
    bias_scale: float = 8.0,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    name: str = "airbench_classifier",
) -> keras.Model:
    """The airbench94 network (no test-time augmentation; see module doc).

    Args:
      whitening: the whitening conv's kernel, `whitening_kernel(...)`; it
        stays frozen (its bias trains). None: a trainable 2x2 conv of the
        same width instead (the ablation without whitening).
      width: channels of the first group; the others have 4x.
      depth: convs per group: 2 (airbench94) or 3 (airbench96: the last
        two with a residual connection over them).
      num_classes: number of logits.
      bias_scale: `ScaledBias` scale (8: airbench's 64x bias learning rate).
      mean: per-channel normalisation mean (pixel units).
      std: per-channel normalisation std.
      name: model name.

    Returns:
      Uncompiled keras.Model: float32 [B, 32, 32, 3] in [0, 1] -> float32
      logits [B, num_classes].
    """
    if depth not in (2, 3):
        raise ValueError(f"depth must be 2 or 3, got {depth}.")
    if width < 1 or num_classes < 2:
        raise ValueError(
            f"need width >= 1, num_classes >= 2; got {width}, {num_classes}."
        )
    images = keras.Input((32, 32, 3), name="images")
    x = layers.Normalization(mean=mean, variance=[s**2 for s in std], name="normalize")(
        images
    )
    if whitening is None:
        # The ablation's "no whitening": the same 2x2 valid conv, trained.
        whiten = layers.Conv2D(
            WHITENING_FILTERS, WHITENING_SIZE, padding="valid", name="whiten"
        )
        x = layers.Activation("gelu", name="whiten_gelu")(whiten(x))
    else:
        whiten = Whiten(whitening.shape[-1], name="whiten")
        x = layers.Activation("gelu", name="whiten_gelu")(whiten(x))
        whiten.kernel.assign(whitening)
    for group, group_width in enumerate((width, 4 * width, 4 * width), 1):
        x = _conv(group_width, f"group{group}_conv1")(x)
        x = layers.MaxPooling2D(2, name=f"group{group}_pool")(x)
        x = _batch_norm(x, f"group{group}_norm1", bias_scale)
        x = layers.Activation("gelu", name=f"group{group}_gelu1")(x)
        if depth == 2:
            x = _conv(group_width, f"group{group}_conv2")(x)
            x = _batch_norm(x, f"group{group}_norm2", bias_scale)
            x = layers.Activation("gelu", name=f"group{group}_gelu2")(x)
            continue
        # airbench96: two more convs, a residual connection over them.
        shortcut = x
        x = _conv(group_width, f"group{group}_conv2")(x)
        x = _batch_norm(x, f"group{group}_norm2", bias_scale)
        x = layers.Activation("gelu", name=f"group{group}_gelu2")(x)
        x = _conv(group_width, f"group{group}_conv3")(x)
        x = _batch_norm(x, f"group{group}_norm3", bias_scale)
        x = layers.Add(name=f"group{group}_add")([x, shortcut])
        x = layers.Activation("gelu", name=f"group{group}_gelu3")(x)
    x = layers.MaxPooling2D(3, name="final_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(num_classes, use_bias=False, name="dense")(x)
    logits = layers.Rescaling(1 / 9, name="logits", dtype="float32")(x)
    return keras.Model(images, logits, name=name)


class Lookahead(keras.callbacks.Callback):
    """airbench's lookahead: every `every` steps, pull the weights to their EMA.

    From `start_step` on, every `every` steps: ema <- rho ema + (1 - rho) w,
    then w <- ema, with rho = decay^every (step / total_steps)^power, so
    training moves fast early and averages strongly at the end. Batch-norm
    statistics are averaged too (airbench averages every float tensor).
    """

    def __init__(
        self,
        total_steps: int,
        start_step: int,
        every: int = 5,
        decay: float = 0.95,
        power: float = 3.0,
    ):
        super().__init__()
        self.total_steps = total_steps
        self.start_step = start_step
        self.every = every
        self.decay = decay
        self.power = power
        self._average = None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step < self.start_step or step % self.every:
            return
        weights = [v.numpy() for v in self.model.weights]
        if self._average is None:
            self._average = weights
            return
        rho = self.decay**self.every * (step / self.total_steps) ** self.power
        self._average = [
            rho * a + (1.0 - rho) * w
            for a, w in zip(self._average, weights, strict=True)
        ]
        for variable, value in zip(self.model.weights, self._average, strict=True):
            variable.assign(value)
