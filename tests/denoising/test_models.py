"""The denoiser: fully convolutional, ResNet and plain variants, serialization."""

import keras
import numpy as np
import pytest
from keras import layers

from cifar_denoise_adv.denoising import models


@pytest.mark.parametrize("downscale", [1, 2])
@pytest.mark.parametrize("size", [(32, 32), (50, 40), (33, 17)])
def test_denoiser_is_fully_convolutional(downscale, size):
    model = models.build_denoiser(num_blocks=2, filters=8, downscale=downscale)
    images = np.random.default_rng(0).uniform(size=(2, *size, 3)).astype(np.float32)
    assert model(images).shape == (2, *size, 3)


@pytest.mark.parametrize("downscale", [1, 2])
def test_plain_and_resnet_differ_only_in_the_skips(downscale):
    resnet = models.build_denoiser(num_blocks=3, filters=8, downscale=downscale)
    plain = models.build_denoiser(
        num_blocks=3, filters=8, use_skips=False, downscale=downscale
    )
    assert resnet.count_params() == plain.count_params()
    adds = [layer.name for layer in resnet.layers if isinstance(layer, layers.Add)]
    assert adds == ["block0_add", "block1_add", "block2_add", "global_add"]
    assert not [layer for layer in plain.layers if isinstance(layer, layers.Add)]
    convs = lambda m: [l.name for l in m.layers if isinstance(l, layers.Conv2D)]  # noqa: E731, E741
    assert convs(resnet) == convs(plain)


def test_unshuffle_round_trip_and_serialization(tmp_path):
    model = models.build_denoiser(num_blocks=1, filters=4, downscale=2)
    path = str(tmp_path / "m.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    images = np.random.default_rng(1).uniform(size=(1, 21, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(model(images), reloaded(images), atol=1e-6)
    unshuffled = models.PixelUnshuffle(2)(images)
    assert unshuffled.shape == (1, 11, 15, 12)
    back = models.CropLike()([models.PixelShuffle(2)(unshuffled), images])
    np.testing.assert_array_equal(back, images)


def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="num_blocks"):
        models.build_denoiser(num_blocks=-1)


def test_zero_init_resnet_starts_as_the_identity():
    model = models.build_denoiser(num_blocks=2, filters=8, downscale=2)
    images = np.random.default_rng(2).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(model(images), images, atol=1e-6)
    plain = models.build_denoiser(num_blocks=2, filters=8, use_skips=False)
    np.testing.assert_allclose(plain(images), 0.0, atol=1e-6)  # tail starts at zero
    glorot = models.build_denoiser(num_blocks=2, filters=8, zero_init=False)
    assert np.abs(np.asarray(glorot(images)) - images).max() > 1e-3


def test_plain_net_keeps_the_activation_scale_through_its_blocks():
    plain = models.build_denoiser(num_blocks=12, filters=32, use_skips=False)
    probe = keras.Model(plain.input, plain.get_layer("block11_conv2").output)
    images = np.random.default_rng(3).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    scale = float(np.std(probe(images)))
    assert 1e-2 < scale < 10.0  # He kernels on the linear convs give ~1e3
