"""Mixed precision reaches the layers; outputs, weights and losses stay float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models


@pytest.mark.parametrize(
    "build",
    [
        lambda: models.build_denoiser(num_blocks=1, filters=4, downscale=2),
        lambda: models.build_denoiser(num_blocks=1, filters=4, use_skips=False),
        lambda: classifier.build_classifier(width=4),
    ],
    ids=["resnet", "plain", "classifier"],
)
def test_precision_reaches_the_layers_and_outputs_stay_float32(build):
    with training.precision_scope("mixed_bfloat16"):
        model = build()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert all(w.dtype == "float32" for w in model.weights)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert model(images).dtype == tf.float32
    # The policy is back to float32 outside the scope.
    assert keras.config.dtype_policy().name == "float32"
    assert build().layers[2].compute_dtype == "float32"


def test_float32_policy_leaves_models_as_before():
    with training.precision_scope("float32"):
        model = models.build_denoiser(num_blocks=1, filters=4)
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}


def test_a_precision_the_machine_cannot_run_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [])
    with pytest.raises(UserError, match="^--precision=mixed_float16 needs a GPU"):
        training.check_precision("mixed_float16")
    monkeypatch.setattr(training, "_cpu_has_bfloat16", lambda: False)
    with pytest.raises(UserError, match="^--precision=mixed_bfloat16: this CPU has no"):
        training.check_precision("mixed_bfloat16")
    monkeypatch.setattr(training, "_cpu_has_bfloat16", lambda: True)
    training.check_precision("mixed_bfloat16")
    training.check_precision("float32")
