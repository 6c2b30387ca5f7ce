"""The attacks: targeted FGSM and I-FGSM, projections, DeepFool, universal."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial.attacks import universal as universal_lib

SHAPE = (8, 8, 3)  # small images keep the toy problems fast; any H x W works
DIM = int(np.prod(SHAPE))


def _images(count, seed=0, low=0.0, high=1.0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(count, *shape)).astype(np.float32)


def _dense_model(num_classes=10, seed=0, shape=SHAPE):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)]
    )


class LinearModel:
    """f(x) = W flat(x) + b, with the weights at hand for closed forms."""

    def __init__(self, num_classes=10, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        self.weights = (scale * rng.normal(size=(DIM, num_classes))).astype(np.float32)
        self.bias = rng.normal(size=num_classes).astype(np.float32)

    def __call__(self, images):
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        return tf.matmul(flat, self.weights) + self.bias

    def boundary_distance(self, images, p):
        """Distance to the nearest decision boundary of the clean class."""
        logits = self(images).numpy()
        labels = logits.argmax(axis=1)
        distances = []
        for row, label in zip(logits, labels, strict=True):
            w = self.weights - self.weights[:, label : label + 1]  # [DIM, K]
            dual = np.abs(w).sum(0) if p == np.inf else np.linalg.norm(w, axis=0)
            gap = np.abs(row - row[label])
            gap[label], dual[label] = np.inf, 1.0
            distances.append((gap / dual).min())
        return np.array(distances)


def _targets(model_fn, images, seed=1):
    """Random target classes different from the clean prediction."""
    clean = np.asarray(attacks.predict_labels(model_fn, images))
    offsets = np.random.default_rng(seed).integers(1, 10, size=len(clean))
    return (clean + offsets) % 10


def _target_loss(model_fn, images, targets):
    return keras.losses.sparse_categorical_crossentropy(
        targets, model_fn(images), from_logits=True
    ).numpy()


class FgsmTest(tf.test.TestCase):
    def test_fgsm_stays_in_budget_and_lowers_the_target_loss(self):
        model = _dense_model()
        images = _images(16)
        targets = _targets(model, images)
        adversarial = attacks.targeted_fgsm(model, images, targets, 0.01)
        self.assertAllInRange(adversarial, 0.0, 1.0)
        self.assertLessEqual(float(np.abs(adversarial - images).max()), 0.01 + 1e-6)
        before = _target_loss(model, images, targets)
        after = _target_loss(model, adversarial, targets)
        self.assertTrue(np.all(after < before))

    def test_fgsm_is_exactly_the_reference_step(self):
        model = _dense_model()
        images = tf.constant(_images(4))
        targets = tf.constant(_targets(model, images))
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = keras.losses.sparse_categorical_crossentropy(
                targets, model(images), from_logits=True
            )
        expected = tf.clip_by_value(
            images - 0.03 * tf.sign(tape.gradient(loss, images)), 0.0, 1.0
        )
        actual = attacks.targeted_fgsm(model, images, targets, 0.03)
        self.assertAllClose(actual, expected, atol=1e-6)

    def test_iterative_stays_in_budget_and_beats_fgsm(self):
        model = _dense_model()
        images = _images(64)
        targets = _targets(model, images)
        epsilon = 0.02
        fgsm = attacks.targeted_fgsm(model, images, targets, epsilon)
        iterative = attacks.targeted_iterative(
            model, images, targets, epsilon, step_size=0.005, num_steps=10
        )
        self.assertAllInRange(iterative, 0.0, 1.0)
        self.assertLessEqual(np.max(attacks.linf_norm(iterative - images)), 0.02 + 1e-6)
        fgsm_rate = attacks.targeted_success_rate(
            attacks.predict_labels(model, fgsm), targets
        )
        iterative_rate = attacks.targeted_success_rate(
            attacks.predict_labels(model, iterative), targets
        )
        self.assertGreater(iterative_rate, 0.0)
        self.assertGreaterEqual(iterative_rate, fgsm_rate)

    def test_random_start_is_reproducible_with_a_seed(self):
        model = _dense_model()
        images = _images(4)
        targets = _targets(model, images)

        def run(seed):
            return attacks.targeted_iterative(
                model, images, targets, 0.05, 0.01, 2, random_start=True, seed=seed
            )

        np.testing.assert_array_equal(run(3), run(3))
        self.assertFalse(np.allclose(run(3), run(4)))
        self.assertLessEqual(float(np.abs(run(3) - images).max()), 0.05 + 1e-6)

    def test_bad_arguments_name_the_argument(self):
        model = _dense_model()
        images = _images(2)
        with pytest.raises(ValueError, match="epsilon"):
            attacks.targeted_fgsm(model, images, [0, 1], -0.1)
        with pytest.raises(ValueError, match="target_labels"):
            attacks.targeted_fgsm(model, images, [0, 1, 2], 0.1)
        with pytest.raises(ValueError, match="images"):
            attacks.targeted_fgsm(model, images + 2.0, [0, 1], 0.1)
        with pytest.raises(ValueError, match="num_steps"):
            attacks.targeted_iterative(model, images, [0, 1], 0.1, 0.01, 0)
        with pytest.raises(ValueError, match="step_size"):
            attacks.targeted_iterative(model, images, [0, 1], 0.1, 0.0, 3)


class ProjectionTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.parameters(2, np.inf, "l2", "linf", "inf")
    def test_projection_lands_in_the_ball_and_keeps_inside_points(self, p):
        order = attacks.norm_order(p)
        rng = np.random.default_rng(0)
        big = rng.normal(size=SHAPE).astype(np.float32)
        projected = np.asarray(attacks.project_lp(big, 0.5, p))
        norm = np.abs(projected).max() if order == np.inf else np.linalg.norm(projected)
        self.assertAllClose(norm, 0.5, atol=1e-5)  # outside points land on it
        inside = big * 0.4 / np.linalg.norm(big.ravel(), ord=order)
        self.assertAllClose(attacks.project_lp(inside, 0.5, p), inside)

    @parameterized.parameters(2, np.inf)
    def test_batch_projection_is_per_example(self, p):
        rng = np.random.default_rng(1)
        batch = rng.normal(size=(3, *SHAPE)).astype(np.float32)
        batch[1] *= 1e-3  # inside the ball: unchanged
        projected = attacks.batch_project_lp(batch, 0.5, p)
        norms = (attacks.linf_norm if p == np.inf else attacks.l2_norm)(projected)
        self.assertAllClose(np.asarray(norms)[[0, 2]], [0.5, 0.5], atol=1e-5)
        self.assertAllClose(projected[1], batch[1])

    def test_l2_projection_keeps_the_direction(self):
        v = np.ones(SHAPE, np.float32)
        projected = attacks.project_lp(v, 1.0, 2)
        self.assertAllClose(projected, v / np.linalg.norm(v))

    @parameterized.parameters(2, np.inf)
    def test_chessboard_has_the_norm_and_the_pattern(self, p):
        board = attacks.chessboard_perturbation((32, 32, 3), 10 / 255, p, square=4)
        board = board.numpy()
        norm = np.abs(board).max() if p == np.inf else np.linalg.norm(board)
        self.assertAllClose(norm, 10 / 255, atol=1e-6)
        amplitude = np.abs(board).max()
        self.assertAllClose(np.abs(board), np.full((32, 32, 3), amplitude))
        signs = np.sign(board[:, :, 0])
        # 4x4 squares alternate like a chessboard, the same in every channel.
        self.assertAllEqual(signs[:4, :4], np.ones((4, 4)))
        self.assertAllEqual(signs[:4, 4:8], -np.ones((4, 4)))
        self.assertAllEqual(signs[4:8, :4], -np.ones((4, 4)))
        self.assertAllEqual(signs[4:8, 4:8], np.ones((4, 4)))
        self.assertAllEqual(board[:, :, 0], board[:, :, 2])
        one = attacks.chessboard_perturbation((2, 2, 1), 0.1, np.inf, 1).numpy()
        self.assertAllClose(one[:, :, 0], [[0.1, -0.1], [-0.1, 0.1]])
        with pytest.raises(ValueError, match="square"):
            attacks.chessboard_perturbation((32, 32, 3), 0.1, np.inf, 0)

    def test_bad_norm_and_radius_are_refused(self):
        with pytest.raises(ValueError, match="p must"):
            attacks.project_lp(np.zeros(SHAPE), 1.0, 1)
        with pytest.raises(ValueError, match="radius"):
            attacks.project_lp(np.zeros(SHAPE), -1.0, 2)

    @parameterized.parameters(2, np.inf)
    def test_random_perturbation_has_the_norm_and_is_seeded(self, p):
        v = attacks.random_perturbation_like(SHAPE, 0.3, p, seed=5).numpy()
        norm = np.abs(v).max() if p == np.inf else np.linalg.norm(v)
        self.assertAllClose(norm, 0.3, atol=1e-5)
        np.testing.assert_array_equal(
            v, attacks.random_perturbation_like(SHAPE, 0.3, p, seed=5)
        )
        if p == np.inf:
            self.assertAllClose(np.abs(v), np.full(SHAPE, 0.3))


class DeepFoolTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.parameters(("l2", 2), ("linf", np.inf))
    def test_linear_model_perturbation_is_the_boundary_distance(self, norm, p):
        # Interior images and a small boundary distance: nothing gets clipped.
        model = LinearModel(scale=1.0)
        images = _images(12, low=0.4, high=0.6)
        result = attacks.deepfool(model, images, overshoot=0.0, norm=norm)
        distance = model.boundary_distance(images, p)
        measure = attacks.linf_norm if p == np.inf else attacks.l2_norm
        # One exact step to the boundary, plus the reference's 1e-4 margin.
        self.assertAllClose(
            measure(result.perturbation), distance + 1e-4, rtol=2e-3, atol=1e-5
        )
        self.assertAllEqual(result.iterations, np.ones(12))

    def test_any_input_shape_works(self):
        # model_fn may take [B, D] vectors as well as [B, H, W, C] images.
        model = LinearModel()
        images = _images(4, low=0.4, high=0.6)
        as_images = attacks.deepfool(model, images, overshoot=0.0)
        as_vectors = attacks.deepfool(model, images.reshape(4, DIM), overshoot=0.0)
        self.assertAllClose(
            as_vectors.perturbation, tf.reshape(as_images.perturbation, [4, DIM])
        )

    @parameterized.parameters("l2", "linf")
    def test_overshoot_flips_every_label(self, norm):
        model = _dense_model(seed=2)
        images = _images(20, seed=3)
        result = attacks.deepfool(model, images, overshoot=0.02, norm=norm)
        self.assertTrue(bool(np.all(result.success)))
        clean = attacks.predict_labels(model, images)
        adversarial = attacks.predict_labels(model, result.adversarial)
        self.assertEqual(attacks.misclassification_rate(adversarial, clean), 1.0)
        self.assertAllInRange(result.adversarial, 0.0, 1.0)
        self.assertAllClose(result.perturbation, result.adversarial - images)

    def test_finished_images_are_not_computed_further(self):
        # A ReLU on one feature makes the boundary nonlinear for some images
        # only: those need several steps while linear ones stop after one.
        linear = LinearModel(num_classes=3, seed=4, scale=0.2)

        def model_fn(images):
            logits = linear(images)
            bump = tf.nn.relu(5.0 * (tf.reduce_mean(images, axis=[1, 2, 3]) - 0.5))
            return logits + tf.stack([bump**2, -(bump**2), 0.0 * bump], axis=1)

        images = np.concatenate(
            [_images(3, seed=5, low=0.0, high=0.6), _images(3, seed=6, low=0.5)]
        )
        together = attacks.deepfool(model_fn, images, num_classes=3, num_candidates=3)
        self.assertGreater(int(together.iterations.max()), 1)
        for index in range(len(images)):
            alone = attacks.deepfool(
                model_fn, images[index : index + 1], num_classes=3, num_candidates=3
            )
            self.assertEqual(int(together.iterations[index]), int(alone.iterations[0]))
            self.assertAllClose(
                together.perturbation[index], alone.perturbation[0], atol=1e-6
            )

    def test_max_iter_caps_iterations_and_reports_failure(self):
        model = LinearModel(scale=1e-6)  # boundaries far outside [0, 1]
        images = _images(3, low=0.4, high=0.6)
        result = attacks.deepfool(model, images, max_iter=4)
        self.assertAllEqual(result.iterations, [4, 4, 4])
        self.assertFalse(bool(np.any(result.success)))

    def test_bad_arguments_name_the_argument(self):
        model = _dense_model()
        images = _images(2)
        with pytest.raises(ValueError, match="num_candidates"):
            attacks.deepfool(model, images, num_candidates=11)
        with pytest.raises(ValueError, match="num_classes"):
            attacks.deepfool(model, images, num_classes=5, num_candidates=5)
        with pytest.raises(ValueError, match="p must"):
            attacks.deepfool(model, images, norm="l1")
        with pytest.raises(ValueError, match="overshoot"):
            attacks.deepfool(model, images, overshoot=-1.0)


def _toy_universal_problem():
    """Images whose classes a shared direction can flip: a linear model."""
    model = LinearModel(num_classes=4, seed=7, scale=1.0)
    images = _images(40, seed=8, low=0.3, high=0.7)
    return model, images


class UniversalTest(tf.test.TestCase):
    def test_universal_loop_reaches_its_target_and_stops(self):
        model, images = _toy_universal_problem()
        reports = []
        result = attacks.universal_perturbation(
            model,
            images,
            xi=0.5,
            p=2,
            delta=0.2,
            max_passes=10,
            num_classes=4,
            progress=reports.append,
            batch_size=8,
        )
        self.assertBetween(
            result.history["passes"], 2, 9
        )  # more than one pass, then stops
        self.assertGreaterEqual(result.history["fooling_rates"][-1], 0.8)
        self.assertTrue(
            all(rate < 0.8 for rate in result.history["fooling_rates"][:-1])
        )
        self.assertLessEqual(float(np.linalg.norm(result.perturbation)), 0.5 + 1e-5)
        self.assertAllClose(
            attacks.fooling_rate(model, images, result.perturbation),
            result.history["fooling_rates"][-1],
        )
        self.assertEqual(
            [r["pass"] for r in reports], list(range(1, result.history["passes"] + 1))
        )
        self.assertEqual(
            set(reports[0]), {"pass", "fooling_rate", "images_per_s", "elapsed_s"}
        )

    def test_universal_loop_matches_a_plain_sequential_loop(self):
        # Algorithm 1 written out one image at a time: the chunked "still
        # correct?" test must not change which images update v, nor the order.
        model, images = _toy_universal_problem()
        clean = np.asarray(attacks.predict_labels(model, images))
        rng = np.random.default_rng(3)
        v = np.zeros(SHAPE, np.float32)
        for _ in range(2):
            for index in rng.permutation(len(images)):
                shifted = np.clip(images[index : index + 1] + v, 0.0, 1.0)
                if (
                    np.asarray(attacks.predict_labels(model, shifted))[0]
                    != clean[index]
                ):
                    continue
                result = attacks.deepfool(
                    model, shifted, num_classes=4, num_candidates=4, max_iter=10
                )
                if result.success[0]:
                    v = np.asarray(
                        attacks.project_lp(v + result.perturbation[0], 0.5, 2)
                    )
        chunked = attacks.universal_perturbation(
            model, images, 0.5, 2, delta=0.0, max_passes=2, num_classes=4, seed=3
        )
        self.assertAllClose(chunked.perturbation, v, atol=1e-6)

    def test_keep_best_pass_returns_the_best_passs_v(self):
        model, images = _toy_universal_problem()
        # A budget at which the passes' rates go up and down (checked below).
        kwargs = dict(xi=0.03, p=np.inf, delta=0.0, max_passes=5, num_classes=4, seed=1)
        last = attacks.universal_perturbation(model, images, **kwargs)
        best = attacks.universal_perturbation(
            model, images, keep_best_pass=True, **kwargs
        )
        rates = last.history["fooling_rates"]
        self.assertGreater(max(rates), rates[-1])
        self.assertEqual(best.history["fooling_rates"], rates)
        self.assertEqual(last.history["returned_pass"], len(rates))
        self.assertEqual(best.history["returned_pass"], int(np.argmax(rates)) + 1)
        self.assertAllClose(
            attacks.fooling_rate(model, images, best.perturbation), max(rates)
        )
        self.assertAllClose(
            attacks.fooling_rate(model, images, last.perturbation), rates[-1]
        )

    def test_universal_loop_is_reproducible_with_a_seed(self):
        model, images = _toy_universal_problem()

        def run(seed):
            return attacks.universal_perturbation(
                model, images, 0.5, np.inf, max_passes=1, num_classes=4, seed=seed
            ).perturbation

        first = run(1)
        np.testing.assert_array_equal(first, run(1))
        self.assertLessEqual(float(np.abs(first).max()), 0.5)
        # The seed orders the images, and the order shapes v.
        other = run(2)
        self.assertGreater(float(np.abs(other).max()), 0.0)
        self.assertFalse(np.allclose(first, other))

    def test_sgd_universal_beats_random_noise_of_the_same_norm(self):
        model = _dense_model(seed=9)
        images = _images(64, seed=10)
        xi = 0.05
        reports = []
        result = attacks.sgd_universal_perturbation(
            model,
            images,
            xi=xi,
            p=np.inf,
            step_size=0.01,
            num_epochs=3,
            batch_size=16,
            seed=0,
            progress=reports.append,
            loss_clamp=10.0,
        )
        self.assertLen(result.history["fooling_rates"], 3)
        self.assertLen(reports, 3)
        self.assertLessEqual(float(np.abs(result.perturbation).max()), xi + 1e-6)
        noise = attacks.random_perturbation_like(SHAPE, xi, np.inf, seed=0)
        random_rate = attacks.fooling_rate(model, images, noise)
        self.assertGreater(result.history["fooling_rates"][-1], random_rate + 0.2)

    def test_sgd_step_schedule_is_a_half_cosine_or_constant(self):
        self.assertEqual(list(universal_lib._step_schedule(0.5, None, 3)), [0.5] * 3)
        steps = list(universal_lib._step_schedule(0.4, 0.02, 5))
        self.assertAllClose(
            steps,
            [
                0.4,
                0.4 - 0.38 * (1 - 0.5**0.5) / 2,
                0.21,
                0.02 + 0.38 * (1 - 0.5**0.5) / 2,
                0.02,
            ],
        )
        model = _dense_model(seed=9)
        images = _images(16, seed=11)
        with pytest.raises(ValueError, match="final_step_size"):
            attacks.sgd_universal_perturbation(
                model, images, 0.05, np.inf, 0.01, 1, 8, seed=0, final_step_size=0.02
            )
        result = attacks.sgd_universal_perturbation(
            model, images, 0.05, np.inf, 0.01, 2, 8, seed=0, final_step_size=0.001
        )
        self.assertLessEqual(float(np.abs(result.perturbation).max()), 0.05 + 1e-6)

    def test_sgd_universal_l2_stays_in_the_ball_with_true_labels(self):
        model = _dense_model(seed=9)
        images = _images(16, seed=11)
        labels = np.arange(16) % 10
        result = attacks.sgd_universal_perturbation(
            model, images, 0.5, "l2", 0.2, 2, 8, seed=1, labels=labels
        )
        self.assertLessEqual(float(np.linalg.norm(result.perturbation)), 0.5 + 1e-5)
        with pytest.raises(ValueError, match="labels"):
            attacks.sgd_universal_perturbation(
                model, images, 0.5, 2, 0.2, 1, 8, seed=1, labels=labels[:3]
            )


class RatesTest(tf.test.TestCase):
    def test_rate_arithmetic(self):
        predictions = [1, 2, 3, 4]
        self.assertEqual(attacks.targeted_success_rate(predictions, [1, 0, 3, 0]), 0.5)
        self.assertEqual(
            attacks.misclassification_rate(predictions, [1, 2, 3, 0]), 0.25
        )
        self.assertEqual(attacks.misclassification_rate(predictions, predictions), 0.0)
        with pytest.raises(ValueError, match="shape"):
            attacks.targeted_success_rate([1, 2], [1, 2, 3])
        with pytest.raises(ValueError, match="empty"):
            attacks.misclassification_rate([], [])

    def test_norms_are_per_example(self):
        batch = np.zeros((2, *SHAPE), np.float32)
        batch[0, 0, 0, 0] = -0.5
        batch[1] = 0.1
        self.assertAllClose(attacks.linf_norm(batch), [0.5, 0.1])
        self.assertAllClose(attacks.l2_norm(batch), [0.5, 0.1 * np.sqrt(DIM)])

    def test_predictions_and_fooling_rate_in_batches(self):
        model = _dense_model()
        images = _images(10)
        labels = attacks.predict_labels(model, images, batch_size=3)
        self.assertAllEqual(labels, np.argmax(model(images), axis=1))
        self.assertEqual(attacks.fooling_rate(model, images, np.zeros(SHAPE), 4), 0.0)
        with pytest.raises(ValueError, match="batch_size"):
            attacks.predict_labels(model, images, batch_size=0)
        with pytest.raises(ValueError, match="v must"):
            attacks.fooling_rate(model, images, np.zeros((4, 4, 3)))


def test_fresh_models_do_not_make_tensorflow_warn_about_retracing(caplog):
    # A sweep or a study loads the classifier once per run; each new model
    # used to retrace module-level tf.functions until TF warned.
    images = _images(100)
    with caplog.at_level("WARNING", logger="tensorflow"):
        for seed in range(4):
            model = _dense_model(seed=seed)
            attacks.sgd_universal_perturbation(
                model,
                images,
                xi=0.04,
                p=np.inf,
                step_size=0.004,
                num_epochs=2,
                batch_size=32,
                seed=0,
                final_step_size=0.001,
            )
            attacks.targeted_fgsm(model, images[:8], _targets(model, images[:8]), 0.02)
    retracing = [
        r.getMessage() for r in caplog.records if "retracing" in r.getMessage()
    ]
    assert retracing == []


def test_a_bound_method_as_model_fn_still_works():
    model = _dense_model()
    labels = attacks.predict_labels(model.__call__, _images(5))
    assert labels.shape == (5,)
