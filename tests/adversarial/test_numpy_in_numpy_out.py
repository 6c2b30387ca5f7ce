"""Every public attack function returns what it was given: NumPy or tensors."""

import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.adversarial import attacks
from tests.adversarial.test_attacks import _dense_model
from tests.adversarial.test_attacks import _images

CLASSES = 4
IMAGES = _images(4, seed=3)
LABELS = np.array([0, 1, 2, 3])
# name: call(model, images, labels); images and labels come as NumPy arrays
# or as tensors; the other arguments are numbers.
CALLS = {
    "deepfool": lambda m, x, y: attacks.deepfool(
        m, x, num_classes=CLASSES, num_candidates=CLASSES, max_iter=2
    ),
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.03),
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, 0.03, 0.01, 2, seed=0),
    "apgd": lambda m, x, y: attacks.apgd(m, x, y, 0.03, num_steps=3, loss="dlr"),
    # Logits [4, 8]: a slice of the images, NumPy or a tensor as they came.
    "dlr_loss": lambda m, x, y: attacks.dlr_loss(x[:, 0, :, 0], y),
    "targeted_fgsm": lambda m, x, y: attacks.targeted_fgsm(m, x, y, 0.03),
    "targeted_iterative": lambda m, x, y: attacks.targeted_iterative(
        m, x, y, 0.03, 0.01, 2
    ),
    "input_gradient": lambda m, x, y: attacks.input_gradient(m, x, y),
    "predict_labels": lambda m, x, y: attacks.predict_labels(m, x),
    "square_attack": lambda m, x, y: attacks.square_attack(m, x, y, 0.03, 3),
    "universal_perturbation": lambda m, x, y: attacks.universal_perturbation(
        m, x, 0.1, np.inf, max_passes=1, max_iter_deepfool=2, num_classes=CLASSES
    ),
    "sgd_universal_perturbation": lambda m, x, y: attacks.sgd_universal_perturbation(
        m, x, 0.1, np.inf, step_size=0.01, num_epochs=1, batch_size=4, seed=0
    ),
    "project_lp": lambda m, x, y: attacks.project_lp(x[0] - 0.5, 0.1, 2),
    "batch_project_lp": lambda m, x, y: attacks.batch_project_lp(x - 0.5, 0.1, 2),
    "l2_norm": lambda m, x, y: attacks.l2_norm(x),
    "linf_norm": lambda m, x, y: attacks.linf_norm(x),
}


def _arrays(result):
    """The array-valued parts of a result (the fields of a NamedTuple)."""
    parts = result if isinstance(result, tuple) else (result,)
    return [p for p in parts if not isinstance(p, (dict, float, int))]


@pytest.fixture(scope="module")
def model():
    return _dense_model(CLASSES)


@pytest.mark.parametrize("name", list(CALLS))
def test_numpy_in_numpy_out_tensors_in_tensors_out(model, name):
    from_numpy = CALLS[name](model, IMAGES, LABELS)
    assert all(isinstance(a, np.ndarray) for a in _arrays(from_numpy)), from_numpy
    from_tensors = CALLS[name](model, tf.constant(IMAGES), tf.constant(LABELS))
    assert all(isinstance(a, tf.Tensor) for a in _arrays(from_tensors))
    for got, want in zip(_arrays(from_numpy), _arrays(from_tensors), strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def test_every_public_function_is_checked():
    exported = {n for n in attacks.__all__ if n[0].islower()} - {"registry"}
    shape_only = {"chessboard_perturbation", "random_perturbation_like"}
    rates = {"fooling_rate", "misclassification_rate", "targeted_success_rate"}
    assert exported - set(CALLS) == shape_only | rates | {"norm_order"}


def test_a_numpy_user_gets_numbers_and_arrays(model):
    # What README's "Python use" does with the results.
    fooled = attacks.deepfool(
        model, IMAGES, num_classes=CLASSES, num_candidates=CLASSES, max_iter=2
    )
    assert 0.0 <= fooled.success.mean() <= 1.0
    assert isinstance(attacks.fooling_rate(model, IMAGES, np.zeros((8, 8, 3))), float)
