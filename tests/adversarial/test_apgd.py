"""APGD (Croce and Hein 2020): schedule, DLR loss, the linear boundary, vs PGD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.adversarial.attacks.apgd import checkpoints
from cifar_denoise_adv.core.errors import UserError

SHAPE = (32, 32, 3)


def test_checkpoints_follow_the_papers_recursion():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (section 3.1).
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(20) == [0, 5, 9, 12, 14, 16, 18, 19, 20]
    assert checkpoints(1) == [0, 1]


def test_dlr_loss_is_equation_6_and_its_targeted_form():
    logits = tf.constant([[3.0, 1.0, 2.0, 0.0]])
    labels = tf.constant([0])
    # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3) = -(3 - 2) / (3 - 1).
    assert float(attacks.dlr_loss(logits, labels)[0]) == pytest.approx(-0.5)
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(3 - 0) / (3 - 0.5).
    targeted = attacks.dlr_loss(logits, labels, tf.constant([3]))
    assert float(targeted[0]) == pytest.approx(-1.2)
    # Invariant to a shift and a positive scale of the logits.
    moved = attacks.dlr_loss(7.0 * logits - 4.0, labels)
    assert float(moved[0]) == pytest.approx(-0.5, rel=1e-5)


def _linear_model(w, b):
    """Logits (w.x + b, 0, -50, ..., -50): classes 0 and 1 compete."""
    inputs = keras.Input(SHAPE)
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(10)
    outputs = dense(flat)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((w.size, 10), np.float32)
    kernel[:, 0] = w.ravel()
    bias = np.full(10, -50.0, np.float32)
    bias[0], bias[1] = b, 0.0
    dense.set_weights([kernel, bias])
    return model


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_on_a_linear_model_it_reaches_the_closed_form_boundary(loss):
    # The smallest L-inf change that flips sign(w.x + b) is |w.x + b| / ||w||_1
    # (the images stay inside [0, 1] on the way: pixels in [0.4, 0.6], budgets
    # far below 0.4). APGD finds it just above that distance, never below.
    rng = np.random.default_rng(0)
    w = rng.normal(size=SHAPE).astype(np.float32)
    images = rng.uniform(0.4, 0.6, size=(4, *SHAPE)).astype(np.float32)
    margins = np.array([3.0, -3.0, 6.0, -1.5], np.float32)
    b = 0.0
    # Each image moved along w so that w.x + b is its margin.
    norm_1 = np.abs(w).sum()
    images += ((margins - (images * w).sum((1, 2, 3))) / (w**2).sum())[
        :, None, None, None
    ] * w
    assert images.min() > 0.3 and images.max() < 0.7
    model = _linear_model(w, b)
    labels = np.where(margins > 0, 0, 1)
    distance = np.abs(margins) / norm_1
    for i in range(len(images)):
        x, y = images[i : i + 1], labels[i : i + 1]
        for factor, fooled in ((1.05, True), (0.95, False)):
            eps = float(factor * distance[i])
            adversarial = attacks.apgd(model, x, y, eps, num_steps=10, loss=loss)
            assert np.abs(np.asarray(adversarial) - x).max() <= eps + 1e-6
            predicted = np.asarray(model(adversarial)).argmax(1)[0]
            assert (predicted != y[0]) == fooled, (i, factor)


def _synthetic(count, seed):
    """Ten classes of smooth random patterns plus noise, in [0, 1]."""
    rng = np.random.default_rng(0)
    prototypes = rng.uniform(0.4, 0.6, size=(10, 4, 4, 3))
    prototypes = np.repeat(np.repeat(prototypes, 8, axis=1), 8, axis=2)
    draw = np.random.default_rng(seed)
    labels = draw.integers(0, 10, count)
    images = prototypes[labels] + draw.normal(0, 0.15, size=(count, *SHAPE))
    return np.clip(images, 0, 1).astype(np.float32), labels


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    train_x, train_y = _synthetic(1000, 1)
    test_x, test_y = _synthetic(200, 2)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train_x, train_y, epochs=4, batch_size=50, verbose=0)
    predicted = model.predict(test_x, verbose=0).argmax(1)
    right = predicted == test_y
    assert right.mean() > 0.9
    return model, test_x[right][:64], test_y[right][:64]


def _accuracy(model, images, labels):
    return float(np.mean(np.asarray(model(images)).argmax(1) == labels))


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_on_a_trained_classifier_it_leaves_no_more_than_pgd_at_equal_gradients(
    trained, eps
):
    model, images, labels = trained
    steps = 20  # PGD-20 and APGD with 20 iterations: 20 gradients per image
    pgd = attacks.pgd(model, images, labels, eps, 2.5 * eps / steps, steps, seed=0)
    pgd_accuracy = _accuracy(model, pgd, labels)
    assert pgd_accuracy < 1.0  # the budget matters on this model
    for loss in ("ce", "dlr"):
        adversarial = attacks.apgd(model, images, labels, eps, steps, loss=loss)
        assert np.abs(np.asarray(adversarial) - images).max() <= eps + 1e-6
        assert _accuracy(model, adversarial, labels) <= pgd_accuracy, loss


def test_targeted_dlr_reaches_targets_and_stays_in_the_ball(trained):
    model, images, labels = trained
    images, labels = images[:16], labels[:16]
    targets = (labels + 1) % 10
    eps = 16 / 255
    adversarial = attacks.apgd(
        model, images, labels, eps, 20, loss="dlr", target_labels=targets
    )
    assert np.abs(np.asarray(adversarial) - images).max() <= eps + 1e-6
    assert (
        float(tf.reduce_min(adversarial)) >= 0
        and float(tf.reduce_max(adversarial)) <= 1
    )
    predicted = np.asarray(model(adversarial)).argmax(1)
    iterative = attacks.targeted_iterative(model, images, targets, eps, eps / 8, 20)
    reached_iterative = np.mean(np.asarray(model(iterative)).argmax(1) == targets)
    assert np.mean(predicted == targets) >= reached_iterative


def test_bad_arguments_name_themselves(trained):
    model, images, labels = trained
    with pytest.raises(UserError, match="loss must be one of"):
        attacks.apgd(model, images[:2], labels[:2], 0.03, loss="hinge")
    with pytest.raises(UserError, match="num_steps"):
        attacks.apgd(model, images[:2], labels[:2], 0.03, num_steps=0)
    with pytest.raises(UserError, match="epsilon"):
        attacks.apgd(model, images[:2], labels[:2], 8)
    with pytest.raises(UserError, match="target_labels"):
        attacks.apgd(model, images[:2], labels[:2], 0.03, target_labels=[1])


def test_the_registry_offers_apgd_to_the_apps_and_the_defense_table():
    assert {"apgd_ce", "apgd_dlr"} <= set(registry.defense_table_default())
    assert registry.options(registry.PER_IMAGE, targeted=True)["apgd_dlr"].name == (
        "targeted_apgd_dlr"
    )
    for name in ("apgd_ce", "apgd_dlr", "targeted_apgd_dlr"):
        assert registry.get(name).norm == "linf"
    with pytest.raises(UserError, match="unknown attack 'apgd'"):
        registry.get("apgd")
