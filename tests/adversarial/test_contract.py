"""What users really pass to the attacks: 0-255 budgets and softmax models."""

import importlib
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import classifier
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import noise

# The attacks package re-exports `deepfool` the function over the module.
deepfool_lib = importlib.import_module("cifar_denoise_adv.adversarial.attacks.deepfool")

SHAPE = (8, 8, 3)


def _images(count, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(count, *shape)).astype(np.float32)


def _dense(activation=None, shape=SHAPE, scale=1.0, seed=0, outputs=10):
    """Flatten + Dense: logits, or softmax through the Dense's activation."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape),
            layers.Flatten(),
            layers.Dense(outputs, activation=activation, name="dense"),
        ]
    )
    kernel, bias = model.get_weights()
    model.set_weights([scale * kernel, bias])
    return model


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as error:
        call(*args, **kwargs)
    return str(error.value)


# --------------------------------------------------------------------------
# Budgets in 0-255 units: the same line as the flags, with the argument's name.


def test_budgets_in_0_255_units_are_refused_with_the_fraction_to_write():
    model, images, targets = _dense(), _images(2), [0, 1]
    hint = "expected [0, 1] pixel units; {0} looks like 0-255 units: write {0}/255"
    cases = [
        ("epsilon=8", lambda: attacks.targeted_fgsm(model, images, targets, 8)),
        (
            "step_size=2",
            lambda: attacks.targeted_iterative(model, images, targets, 0.03, 2, 3),
        ),
        (
            "xi=10",
            lambda: attacks.universal_perturbation(model, images, 10, np.inf),
        ),
        (
            "xi=10",
            lambda: attacks.sgd_universal_perturbation(
                model, images, 10, np.inf, 0.01, 1, 2, seed=0
            ),
        ),
        ("radius=10", lambda: attacks.project_lp(np.zeros(SHAPE), 10, np.inf)),
        ("xi=10", lambda: attacks.random_perturbation_like(SHAPE, 10, np.inf, 0)),
        ("xi=10", lambda: attacks.chessboard_perturbation(SHAPE, 10, np.inf, 2)),
        (
            "sigma=25",
            lambda: noise.add_gaussian_noise(images, 25, tf.constant([0, 0])),
        ),
    ]
    for start, call in cases:
        value = start.split("=")[1]
        assert _message(call).startswith(f"{start}: {hint.format(value)}"), start


def test_an_l2_budget_may_exceed_1_up_to_the_image_diameter():
    # 8x8x3 images: sqrt(192) = 13.9 is the L2 distance from black to white.
    model, images = _dense(), _images(8)
    result = attacks.sgd_universal_perturbation(
        model, images, xi=2.0, p=2, step_size=0.5, num_epochs=1, batch_size=4, seed=0
    )
    assert float(np.linalg.norm(result.perturbation)) <= 2.0 + 1e-5
    assert "sqrt(192) = 13.86" in _message(
        attacks.sgd_universal_perturbation, model, images, 20.0, 2, 0.5, 1, 4, seed=0
    )
    assert attacks.project_lp(np.ones(SHAPE), 5.0, 2).shape == SHAPE


def test_a_perturbation_in_0_255_units_is_refused_by_the_fooling_rate():
    model, images = _dense(), _images(4)
    assert _message(attacks.fooling_rate, model, images, np.full(SHAPE, 10.0)) == (
        "v: max |v| = 10; expected [0, 1] pixel units (|v| <= 1); 0-255 units? "
        "divide it by 255."
    )


def test_fractions_and_classes_out_of_range_get_one_line():
    model, images = _dense(), _images(2)
    assert _message(attacks.deepfool, model, images, overshoot=2) == (
        "overshoot=2: expected a fraction in [0, 1]; 2 looks like a percentage: "
        "write 0.02."
    )
    assert _message(
        attacks.universal_perturbation, model, images, 0.1, np.inf, delta=20
    ).startswith("delta=20: expected a fraction in [0, 1]; 20 looks like")
    assert _message(attacks.targeted_fgsm, model, images, [3, 10], 0.03) == (
        "target_labels must be classes in 0..9 (the model returns 10 scores), "
        "got 3..10."
    )
    assert "divide by 255" in _message(
        attacks.targeted_fgsm, model, images * 255, [0, 1], 0.03
    )


# --------------------------------------------------------------------------
# A classifier that ends in softmax: attacked through its logits.


def test_deepfool_on_a_confident_softmax_model_finds_what_it_finds_on_the_logits():
    logits = _dense(scale=1000.0)
    softmax = _dense("softmax")
    softmax.set_weights(logits.get_weights())
    images = _images(4, seed=1)
    assert np.all(softmax(images).numpy().max(axis=1) == 1.0)  # confident
    # What the attack did before this check: the probabilities' gradients
    # underflow and DeepFool fails on 3 of the 4 images, without a word.
    raw = deepfool_lib.deepfool_unchecked(
        softmax, tf.constant(images), 10, 0.02, 50, False
    )
    assert np.sum(raw.success) == 1
    expected = attacks.deepfool(logits, images)
    assert np.all(expected.success)
    with pytest.warns(UserWarning, match="ends in a softmax: attacking its logits"):
        result = attacks.deepfool(softmax, images)
    np.testing.assert_array_equal(result.success, expected.success)
    np.testing.assert_array_equal(result.iterations, expected.iterations)
    np.testing.assert_allclose(result.perturbation, expected.perturbation, atol=1e-6)
    # Said once per model, not at every call.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attacks.deepfool(softmax, images)


@pytest.mark.parametrize("last", ["softmax_layer", "activation_layer"])
def test_a_softmax_layer_is_left_out_for_every_attack(last):
    logits = _dense()
    end = layers.Softmax() if last == "softmax_layer" else layers.Activation("softmax")
    softmax = keras.Model(logits.inputs, end(logits.outputs[0]))
    images, targets = _images(4, seed=2), [1, 2, 3, 4]
    with pytest.warns(UserWarning, match="ends in a softmax"):
        attacked = attacks.targeted_fgsm(softmax, images, targets, 0.05)
    np.testing.assert_allclose(
        attacked, attacks.targeted_fgsm(logits, images, targets, 0.05), atol=1e-6
    )
    # Only the argmax is used here, which the softmax does not change.
    np.testing.assert_array_equal(
        attacks.predict_labels(softmax, images), attacks.predict_labels(logits, images)
    )


def test_probabilities_that_cannot_be_undone_are_refused_with_one_line():
    logits = _dense()
    images = _images(2)
    assert _message(attacks.deepfool, lambda x: tf.nn.softmax(logits(x)), images) == (
        "model_fn returns probabilities (each row of its output sums to 1, as after "
        "a softmax); the attacks need logits: pass the model without its final "
        "softmax."
    )


def test_the_model_must_take_the_images_and_return_one_row_per_image():
    images = _images(2)
    assert _message(attacks.deepfool, _dense(shape=(4, 4, 3)), images) == (
        "model_fn takes inputs of shape [4, 4, 3] per image; the images are [8, 8, 3]."
    )
    rescaling = keras.Sequential(
        [keras.Input(SHAPE), layers.Rescaling(1 / 255), layers.Flatten()]
        + [layers.Dense(10)]
    )
    assert "Rescaling(1/255), so it expects 0-255 pixels" in _message(
        attacks.targeted_fgsm, rescaling, images, [0, 1], 0.03
    )
    assert _message(attacks.deepfool, _dense(outputs=1), images) == (
        "model_fn must return one row of K >= 2 scores per image ([B, K]); it "
        "returned shape [2, 1] for 2 images."
    )
    assert "one row of K >= 2 scores" in _message(
        attacks.predict_labels, lambda x: tf.reduce_sum(x, axis=[1, 2, 3]), images
    )


# --------------------------------------------------------------------------
# --classifier run folders get the same check.


def _saved(model, tmp_path):
    model.save(tmp_path / "model.keras")
    return str(tmp_path)


def test_a_classifier_run_ending_in_softmax_is_attacked_through_its_logits(tmp_path):
    model = _dense("softmax", shape=(32, 32, 3))
    logged = []
    loaded = classifier.load_classifier(_saved(model, tmp_path), logged.append)
    assert logged == [
        f"--classifier={tmp_path}: the model ends in a softmax; attacking its "
        "logits (the softmax's input), which give the same predictions"
    ]
    images = _images(3, shape=(32, 32, 3))
    np.testing.assert_allclose(
        tf.nn.softmax(loaded(images)), model(images), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "model, expected",
    [
        (
            lambda: _dense(shape=(28, 28, 1)),
            "the model takes inputs of shape [28, 28, 1]; expected CIFAR-10 "
            "images, 32x32x3 in [0, 1].",
        ),
        (
            lambda: _dense(shape=(32, 32, 3), outputs=100),
            "the model returns [100] per image; expected one row of 10 scores "
            "(logits), one per CIFAR-10 class.",
        ),
    ],
)
def test_a_classifier_run_that_breaks_the_contract_is_refused(
    model, expected, tmp_path
):
    run_dir = _saved(model(), tmp_path)
    message = _message(classifier.load_classifier, run_dir)
    assert message == f"--classifier={run_dir}: {expected}"
