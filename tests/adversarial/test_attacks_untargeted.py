"""Untargeted FGSM and PGD, the EOT gradient, and the Square Attack."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.adversarial import attacks
from tests.adversarial.test_attacks import LinearModel
from tests.adversarial.test_attacks import _dense_model
from tests.adversarial.test_attacks import _images


def _loss(model_fn, images, labels):
    return keras.losses.sparse_categorical_crossentropy(
        labels, model_fn(images), from_logits=True
    ).numpy()


def _labels(model_fn, images):
    """The clean predictions: every image starts correctly classified."""
    return np.asarray(attacks.predict_labels(model_fn, images))


class NoisyModel:
    """A random model: a linear model on x + 0.2 N(0, 1), fresh noise per call."""

    def __init__(self, seed=0):
        self.linear = LinearModel()
        self.generator = tf.random.Generator.from_seed(seed)
        self.seed = seed

    def reset(self):
        self.generator.reset_from_seed(self.seed)

    def __call__(self, images):
        return self.linear(images + 0.2 * self.generator.normal(tf.shape(images)))


def test_fgsm_stays_in_budget_and_raises_every_images_loss():
    model = LinearModel()
    images = _images(16, low=0.2, high=0.8)  # no clipping at the borders
    labels = _labels(model, images)
    adversarial = attacks.fgsm(model, images, labels, 0.01)
    assert np.abs(adversarial - images).max() <= 0.01 + 1e-6
    assert np.all(_loss(model, adversarial, labels) > _loss(model, images, labels))


def test_fgsm_is_exactly_the_signed_gradient_step_up_the_loss():
    model = _dense_model()
    images = _images(4)
    labels = np.array([0, 3, 5, 9])
    with tf.GradientTape() as tape:
        x = tf.constant(images)
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, model(x), from_logits=True
        )
    expected = np.clip(images + 0.03 * np.sign(tape.gradient(loss, x)), 0, 1)
    np.testing.assert_allclose(
        attacks.fgsm(model, images, labels, 0.03), expected, atol=1e-6
    )
    # One PGD step of eps from the image itself is the same step.
    one_step = attacks.pgd(model, images, labels, 0.03, 0.03, 1, random_start=False)
    np.testing.assert_allclose(one_step, expected, atol=1e-6)


def test_pgd_stays_in_budget_and_beats_fgsm():
    model = _dense_model(seed=2)
    images = _images(32)
    labels = _labels(model, images)
    epsilon = 0.02
    single = attacks.fgsm(model, images, labels, epsilon)
    iterated = attacks.pgd(model, images, labels, epsilon, 2.5 * epsilon / 10, 10)
    assert np.abs(iterated - images).max() <= epsilon + 1e-6
    assert float(np.min(iterated)) >= 0.0 and float(np.max(iterated)) <= 1.0
    assert _loss(model, iterated, labels).mean() > _loss(model, single, labels).mean()


def test_pgd_random_start_is_reproducible_with_a_seed():
    model = _dense_model()
    images = _images(4)
    labels = np.array([1, 2, 3, 4])

    def run(seed):
        return np.asarray(attacks.pgd(model, images, labels, 0.05, 0.01, 2, seed=seed))

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def _tape_gradient(model, images, labels):
    """One draw's gradient of the cross-entropy, computed here, not by the attack."""
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, model(x), from_logits=True
        )
    return tape.gradient(loss, x).numpy()


def test_eot_gradient_is_the_mean_of_the_stated_number_of_draws():
    model = NoisyModel()
    images = _images(3)
    labels = np.array([0, 1, 2])
    # The attack's contract check calls the model once first (one draw);
    # then come the gradient draws.
    model.reset()
    model(images)
    singles = [_tape_gradient(model, images, labels) for _ in range(4)]
    model.reset()
    averaged = np.asarray(attacks.input_gradient(model, images, labels, num_draws=4))
    np.testing.assert_allclose(averaged, np.mean(singles, axis=0), atol=1e-5)
    # Not the mean of fewer draws: the draws really differ.
    assert not np.allclose(averaged, np.mean(singles[:3], axis=0), atol=1e-4)
    assert not np.allclose(singles[0], singles[1], atol=1e-4)


def test_eot_on_a_deterministic_model_changes_nothing():
    model = _dense_model()
    images = _images(4)
    labels = np.array([1, 2, 3, 4])
    np.testing.assert_allclose(
        attacks.input_gradient(model, images, labels, num_draws=3),
        attacks.input_gradient(model, images, labels),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        attacks.pgd(model, images, labels, 0.03, 0.01, 3, seed=1, num_draws=2),
        attacks.pgd(model, images, labels, 0.03, 0.01, 3, seed=1),
        atol=1e-6,
    )
    common = dict(xi=0.05, p=np.inf, step_size=0.01, num_epochs=1, batch_size=4)
    once = attacks.sgd_universal_perturbation(model, images, seed=0, **common)
    twice = attacks.sgd_universal_perturbation(
        model, images, seed=0, num_draws=2, **common
    )
    np.testing.assert_allclose(once.perturbation, twice.perturbation, atol=1e-6)


def test_targeted_attacks_take_eot_draws():
    model = NoisyModel()
    images = _images(3)
    targets = np.array([4, 5, 6])
    adversarial = attacks.targeted_iterative(
        model, images, targets, 0.03, 0.01, 3, num_draws=4
    )
    assert np.abs(adversarial - images).max() <= 0.03 + 1e-6
    single = attacks.targeted_fgsm(model, images, targets, 0.03, num_draws=8)
    assert np.abs(single - images).max() <= 0.03 + 1e-6


def test_square_attack_needs_no_gradient():
    model = LinearModel(scale=0.3)
    images = _images(24, seed=3)
    labels = _labels(model, images)

    # The same model behind a gradient that is zero everywhere: what a
    # defense that masks its gradients looks like to a gradient attack.
    def masked(x):
        return model(tf.stop_gradient(x))

    epsilon = 0.05
    with pytest.warns(UserWarning, match="no gradient .* pgd makes no progress"):
        blind = attacks.pgd(
            masked, images, labels, epsilon, 0.01, 5, random_start=False
        )
    np.testing.assert_array_equal(blind, images)
    found = attacks.square_attack(masked, images, labels, epsilon, 100, seed=0)
    assert np.abs(found - images).max() <= epsilon + 1e-6
    fooled = np.mean(_labels(model, found) != labels)
    assert fooled > 0.5, fooled
    again = attacks.square_attack(masked, images, labels, epsilon, 100, seed=0)
    np.testing.assert_array_equal(found, again)


def test_square_attack_only_keeps_improvements():
    model = LinearModel(scale=0.1)
    images = _images(8, seed=5)
    labels = _labels(model, images)
    margins = []
    for queries in (1, 5, 30):
        found = attacks.square_attack(model, images, labels, 0.02, queries, seed=4)
        logits = model(found).numpy()
        true = logits[np.arange(8), labels]
        logits[np.arange(8), labels] = -np.inf
        margins.append(true - logits.max(axis=1))
    # The same seed replays the same proposals: more queries, no worse margin.
    assert np.all(margins[1] <= margins[0] + 1e-6)
    assert np.all(margins[2] <= margins[1] + 1e-6)
    assert np.any(margins[2] < margins[0])


def test_square_fraction_halves_on_the_papers_schedule():
    fractions = [attacks.square.square_fraction(i, 0.1) for i in (1, 10, 11, 51, 201)]
    assert fractions == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), "epsilon"),
        (lambda m, x, y: attacks.fgsm(m, x, y, 0.1, num_draws=0), "num_draws"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.0, 3), "step_size"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.01, 0), "num_steps"),
        (lambda m, x, y: attacks.input_gradient(m, x, y[:1]), "labels"),
        (lambda m, x, y: attacks.square_attack(m, x, y, 0.1, 0), "num_queries"),
        (lambda m, x, y: attacks.square_attack(m, x, y, 0.1, 5, 1.5), "p_init"),
    ],
)
def test_bad_arguments_name_the_argument(call, name):
    model = _dense_model()
    with pytest.raises(ValueError, match=name):
        call(model, _images(2), np.array([0, 1]))


def test_the_square_attack_on_new_models_is_no_retracing(caplog):
    # The defend job runs it on three pipelines, a study on more: each model
    # gets its own graph (TF warned of frequent retracing before).
    images, labels = _images(4), np.array([0, 1, 2, 3])
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for seed in range(6):
            model = _dense_model(4, seed=seed)
            attacks.square_attack(model, images, labels, 0.03, 4, seed=seed)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
