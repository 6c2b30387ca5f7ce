"""The denoisers (ResNet and plain), their custom layers and the PSNR metric.

Builders return uncompiled models. Layers are named (`block3_add`,
`global_add`) so tests, TensorBoard graphs and figures can find them.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.denoising import noise

_PACKAGE = "cifar_denoise_adv"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelUnshuffle(layers.Layer):
    """Space-to-depth by `factor`, padding H and W up to a multiple of it.

    [B, H, W, C] -> [B, ceil(H/f), ceil(W/f), C f^2]. Padding mirrors the
    border (symmetric), so any image size works; `CropLike` undoes it.
    """

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}.")
        self.factor = factor

    def call(self, images):
        shape = tf.shape(images)
        pad_h = (-shape[1]) % self.factor
        pad_w = (-shape[2]) % self.factor
        images = tf.pad(
            images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC"
        )
        return tf.nn.space_to_depth(images, self.factor)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        f = self.factor
        return (
            batch,
            None if height is None else -(-height // f),
            None if width is None else -(-width // f),
            channels * f * f,
        )

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelShuffle(layers.Layer):
    """Depth-to-space by `factor`: [B, H, W, C f^2] -> [B, H f, W f, C]."""

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, features):
        return tf.nn.depth_to_space(features, self.factor)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        f = self.factor
        return (
            batch,
            None if height is None else height * f,
            None if width is None else width * f,
            channels // (f * f),
        )

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CropLike(layers.Layer):
    """Crops [B, H', W', C] to the height and width of a reference tensor."""

    def call(self, inputs):
        features, reference = inputs
        shape = tf.shape(reference)
        return features[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        features, reference = input_shapes
        return (features[0], reference[1], reference[2], features[3])


def build_denoiser(
    num_blocks: int = 8,
    filters: int = 64,
    use_skips: bool = True,
    downscale: int = 1,
    channels: int = 3,
    zero_init: bool = True,
    name: str | None = None,
) -> keras.Model:
    """ResNet denoiser, or the same layers with every skip removed.

    Head conv, `num_blocks` residual blocks (conv 3x3, ReLU, conv 3x3,
    identity add), tail conv, and a global skip, so the ResNet predicts the
    residual (the noise to remove) and returns input + residual. With
    `downscale` = 2 the blocks work on a pixel-unshuffled, half-resolution
    tensor (FFDNet, Zhang et al. 2018): 4x fewer positions per conv, the same
    receptive field in fewer layers. The plain variant (`use_skips=False`)
    drops the block adds and the global add; the parameter counts are equal
    and the skips are the only difference.

    Args:
      num_blocks: residual blocks.
      filters: channels inside the blocks.
      use_skips: ResNet (True) or plain (False).
      downscale: 1 (full resolution) or a pixel-unshuffle factor.
      channels: image channels.
      zero_init: variance-preserving kernels (He-normal for a conv followed
        by a ReLU, LeCun-normal for a linear one) and zeros for the last conv
        of every residual branch and for the tail, so the ResNet starts as
        the identity (Fixup, Zhang et al. 2019; Goyal et al. 2017). With
        default (Glorot) kernels the untrained ResNet adds a large random
        residual and spends its first epochs undoing it (measured here: PSNR
        stuck near 20 dB after 2 minutes, against 23.6 dB with this init).
        The plain net, whose block convs then have no zero branch, keeps
        its variance only because its linear convs get LeCun kernels: He
        kernels there double it at every block.
      name: model name (default "resnet_denoiser" / "plain_denoiser").

    Returns:
      Uncompiled keras.Model, float32 [B, H, W, channels] in [0, 1] (any H, W)
      to the same shape (not clipped: the loss sees the raw output).
    """
    if num_blocks < 0 or filters < 1 or downscale < 1:
        raise ValueError(
            f"need num_blocks >= 0, filters >= 1, downscale >= 1; got "
            f"{num_blocks}, {filters}, {downscale}."
        )
    relu_kernels = "he_normal" if zero_init else "glorot_uniform"
    linear_kernels = "lecun_normal" if zero_init else "glorot_uniform"
    last = "zeros" if zero_init else linear_kernels

    def conv(units, name, activation=None, initializer=None):
        return layers.Conv2D(
            units,
            3,
            padding="same",
            activation=activation,
            kernel_initializer=initializer or linear_kernels,
            name=name,
        )

    noisy = keras.Input((None, None, channels), name="noisy")
    x = noisy
    if downscale > 1:
        x = PixelUnshuffle(downscale, name="unshuffle")(x)
    x = conv(filters, "head")(x)
    for i in range(num_blocks):
        y = conv(filters, f"block{i}_conv1", "relu", relu_kernels)(x)
        y = conv(filters, f"block{i}_conv2", None, last if use_skips else None)(y)
        x = layers.Add(name=f"block{i}_add")([x, y]) if use_skips else y
    x = conv(channels * downscale**2, "tail", None, last)(x)
    if downscale > 1:
        x = PixelShuffle(downscale, name="shuffle")(x)
        x = CropLike(name="crop")([x, noisy])
    # Under a mixed-precision policy the blocks compute in bfloat16/float16;
    # the residual is added to the float32 input and returned in float32.
    x = layers.Activation("linear", dtype="float32", name="tail_float32")(x)
    if use_skips:
        outputs = layers.Add(name="global_add", dtype="float32")([noisy, x])
    else:
        outputs = x
    default_name = "resnet_denoiser" if use_skips else "plain_denoiser"
    return keras.Model(noisy, outputs, name=name or default_name)


@keras.saving.register_keras_serializable(package="cifar_denoise_adv", name="psnr")
def psnr(clean: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """Per-image PSNR (dB) of the prediction clipped to [0, 1], for compile().

    Registered so that a saved .keras model reloads with its metric.
    """
    return noise.psnr(clean, tf.clip_by_value(predicted, 0.0, 1.0))
