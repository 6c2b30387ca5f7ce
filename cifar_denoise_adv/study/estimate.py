"""How long each study step will take on this machine, measured before it runs.

Nothing here is a figure from another machine: each model a step trains or
attacks is built untrained (the same layers, the same precision, so the
same cost per image as the trained one) and a few of its training steps or
input gradients are timed here; a step's estimate is that rate times the
work its settings ask for (epochs x images, attack steps x images, ...).
The DeepFool loop stops when it reaches its rate, so its estimate assumes
two passes: the first over every image, the second over half of them (the
rest are fooled already); the sweep
and the defense add up their runs and rows. Estimates leave out start-up
(loading, the first step's tracing); the study corrects the remaining
estimate after each step by the ratio of the time taken to the time
estimated so far.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types

import keras
import numpy as np
import tensorflow as tf

from cifar_denoise_adv.adversarial import attacks
from cifar_denoise_adv.adversarial import classifier as classifier_lib
from cifar_denoise_adv.adversarial import classify_job
from cifar_denoise_adv.core import data
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.defense import pipeline as pipeline_lib
from cifar_denoise_adv.denoising import denoise_job

TIMED_CALLS = 2  # after one untimed call that traces
DEEPFOOL_PASSES = 2  # the loop's usual passes before it reaches its rate
DEEPFOOL_SHARE = 0.5  # the share of images a pass still has to attack


@dataclasses.dataclass
class Estimate:
    """A step's expected seconds and how they were reckoned."""

    seconds: float
    how: str


def _timed(call, *args) -> float:
    """Seconds per call of `call(*args)`, after one untimed (tracing) call."""
    call(*args)
    begin = time.perf_counter()
    for _ in range(TIMED_CALLS):
        result = call(*args)
    if isinstance(result, tf.Tensor):
        result.numpy()
    return (time.perf_counter() - begin) / TIMED_CALLS


def _images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(count, 32, 32, 3)).astype(np.float32)


class Rates:
    """Seconds per image of each model the steps use, measured once each."""

    def __init__(self, data_dir: str):
        self._data_dir = data_dir or None
        self._cache = {}

    def _memo(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def count(self, split: str, limit: int) -> int:
        """Images of a split (at most `limit`; 0: all)."""
        return self._memo(
            ("count", split, limit),
            lambda: len(data.load_arrays(split, self._data_dir, limit or None)[1]),
        )

    def denoiser_training(self, config) -> float:
        """Seconds per training image of the step's denoiser."""
        key = ("denoise", config.arch, config.num_blocks, config.filters)
        key += (config.downscale, config.batch_size, config.precision)

        def measure():
            with precision.precision_scope(
                precision.choose(config.precision).precision
            ):
                model = denoise_job._build(config, steps_per_epoch=10)
            batch = _images(config.batch_size)
            return _timed(model.train_on_batch, batch, batch) / config.batch_size

        return self._memo(key, measure)

    def classifier_network(self, config, policy: str) -> keras.Model:
        """The step's classifier network, untrained, under `policy`."""
        images = _images(64)
        setup = types.SimpleNamespace(
            train_set=tf.data.Dataset.from_tensor_slices(
                (images, np.zeros(64, np.int64))
            ),
            steps_per_epoch=10,
        )
        with precision.precision_scope(policy):
            return classify_job._build(config, setup)

    def classifier_training(self, config) -> float:
        """Seconds per training image of the step's classifier."""
        key = ("classify", config.arch, config.width, config.depth)
        key += (config.batch_size, config.precision)

        def measure():
            policy = precision.choose(config.precision).precision
            model = self.classifier_network(config, policy)
            batch = _images(config.batch_size)
            labels = tf.one_hot(np.arange(config.batch_size) % 10, 10)
            return _timed(model.train_on_batch, batch, labels) / config.batch_size

        return self._memo(key, measure)

    def attacked(self, classifier_config, tta: int, policy: str) -> keras.Model:
        key = ("attacked", id(classifier_config), tta, policy)

        def build():
            network = self.classifier_network(classifier_config, policy)
            return classifier_lib.with_test_time_augmentation(network, tta)

        return self._memo(key, build)

    def gradient(self, model: keras.Model, batch_size: int) -> float:
        """Seconds per image of one input gradient of `model`."""

        def measure():
            @tf.function
            def step(images):
                with tf.GradientTape() as tape:
                    tape.watch(images)
                    logits = tf.cast(model(images), tf.float32)
                    loss = tf.reduce_sum(tf.reduce_logsumexp(logits, axis=1))
                return tape.gradient(loss, images)

            return _timed(step, tf.constant(_images(batch_size))) / batch_size

        return self._memo(("gradient", id(model), batch_size), measure)

    def forward(self, model: keras.Model, batch_size: int) -> float:
        """Seconds per image of one forward pass of `model`."""
        call = tf.function(model)
        return self._memo(
            ("forward", id(model), batch_size),
            lambda: _timed(call, tf.constant(_images(batch_size))) / batch_size,
        )

    def deepfool(self, model: keras.Model, batch_size: int) -> float:
        """Seconds per image of DeepFool (10 iterations at most) on `model`."""
        return self._memo(
            ("deepfool", id(model), batch_size),
            lambda: (
                _timed(
                    lambda x: attacks.deepfool(model, x, max_iter=10).adversarial,
                    _images(batch_size),
                )
                / batch_size
            ),
        )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def _training(config, per_image: float, num_train: int, num_test: int, what: str):
    validation = min(config.validation_images, num_train)
    train = num_train - validation
    steps = math.ceil(train / config.batch_size)
    seconds = config.epochs * steps * config.batch_size * per_image
    # Validation each epoch and the test set once: forward passes (~1/3).
    seconds += (config.epochs * validation + num_test) * per_image / 3
    return Estimate(
        seconds,
        f"{config.epochs} epochs x {train} images at {1 / per_image:.0f} "
        f"{what} training images/s, {precision.choose(config.precision).precision}",
    )


class Estimator:
    """Each planned step's `Estimate`, from rates measured on this machine."""

    def __init__(self, plans_by_name: dict, data_dir: str):
        self._plans = plans_by_name
        self._rates = Rates(data_dir)

    def __call__(self, plan) -> Estimate | None:
        method = getattr(self, f"_{plan.step.app}", None)
        if method is None or plan.config is None:
            return None
        try:
            return method(plan.config)
        except (UserError, ValueError, OSError, tf.errors.OpError) as error:
            return Estimate(0.0, f"not estimated ({str(error).splitlines()[0]})")

    def _noise(self, config) -> Estimate:
        return Estimate(0.0, "no model: seconds")

    def _denoise(self, config) -> Estimate:
        rate = self._rates.denoiser_training(config)
        train = self._rates.count("train", config.max_train_images)
        test = self._rates.count("test", config.max_test_images)
        return _training(config, rate, train, test, "denoiser")

    def _classify(self, config) -> Estimate:
        rate = self._rates.classifier_training(config)
        train = self._rates.count("train", config.max_train_images)
        test = self._rates.count("test", config.max_test_images)
        return _training(config, rate, train, test, "classifier")

    def _classifier_config(self):
        plan = self._plans.get("classifier")
        if plan is None or plan.config is None:
            raise UserError("the classifier is not a step of this study")
        return plan.config

    def _attacked(self, config):
        """(model, policy) as the attack step will attack it."""
        trained = self._classifier_config()
        policy = precision.choose(trained.precision).precision
        policy = precision.choose_for_model(config.precision, policy).precision
        tta = trained.tta if config.classifier_tta is None else config.classifier_tta
        return self._rates.attacked(trained, tta, policy), policy

    def _targeted(self, config) -> Estimate:
        model, policy = self._attacked(config)
        steps = 1 if config.attack == "fgsm" else config.num_steps
        gradient = self._rates.gradient(model, config.batch_size)
        forward = self._rates.forward(model, 256)
        test = self._rates.count("test", 0)
        seconds = config.num_images * steps * gradient + test * forward
        return Estimate(
            seconds,
            f"{config.num_images} images x {steps} steps at {1 / gradient:.0f} "
            f"gradients/s, {policy}",
        )

    def _sweep(self, config) -> Estimate:
        xi = max(config.sweep_xi)  # each budget costs about the same
        runs = [
            self._universal(config.universal(m, xi, config.run_dir))
            for m in ("sgd", "deepfool")
        ]
        seconds = len(config.sweep_xi) * sum(r.seconds for r in runs)
        return Estimate(
            seconds,
            f"{len(config.sweep_xi)} budgets x (sgd {_minutes(runs[0].seconds)} "
            f"+ DeepFool {_minutes(runs[1].seconds)} min)",
        )

    def _universal(self, config) -> Estimate:
        model, policy = self._attacked(config)
        train = self._rates.count("train", config.max_train_images)
        test = self._rates.count("test", config.max_test_images)
        # Fooling rates of v and the baselines (noise, 4 chessboards), clean.
        forward = self._rates.forward(model, 256) * (train + test) * 7
        if config.method == "deepfool":
            per_image = self._rates.deepfool(model, min(config.batch_size, 64))
            passes = min(config.max_passes, DEEPFOOL_PASSES)
            attacked = train * (1 + DEEPFOOL_SHARE * (passes - 1))
            seconds = attacked * per_image + forward
            return Estimate(
                seconds,
                f"~{passes} passes, {attacked:.0f} of {train} images attacked at "
                f"{1 / per_image:.0f} DeepFool images/s, {policy}",
            )
        gradient = self._rates.gradient(model, config.batch_size)
        seconds = config.sgd_epochs * train * gradient + forward
        return Estimate(
            seconds,
            f"{config.sgd_epochs} epochs x {train} images at {1 / gradient:.0f} "
            f"gradients/s, {policy}",
        )

    def _defend(self, config) -> Estimate:
        model, policy = self._attacked(config)
        denoiser_plan = self._plans.get("resnet")
        if denoiser_plan is None or denoiser_plan.config is None:
            raise UserError("the ResNet denoiser is not a step of this study")
        with precision.precision_scope(policy):
            denoiser = denoise_job._build(denoiser_plan.config, steps_per_epoch=10)
        defended = pipeline_lib.build_defended(denoiser, model)
        bare = self._rates.gradient(model, config.batch_size)
        through = self._rates.gradient(defended, config.batch_size)
        forward = self._rates.forward(defended, config.batch_size)
        per_image = len(config.epsilons) * (1 + config.pgd_steps)
        per_image += 1 + config.targeted_steps  # targeted FGSM and iterative
        draws = config.eot_draws if config.randomised else 0
        gradients = (
            config.num_images * per_image * bare
            + (config.adaptive_images or config.num_images) * per_image * through
            + (config.eot_images or config.num_images) * per_image * draws * through
            + config.universal_epochs
            * config.universal_train_images
            * (bare + through * (1 + draws))
        )
        pipelines = 3 if config.randomised else 2
        forwards = config.square_queries * config.square_images * pipelines * forward
        seconds = gradients + forwards
        return Estimate(
            seconds,
            f"{config.num_images} images, {per_image} gradients each per "
            f"pipeline at {1 / bare:.0f} (classifier) and {1 / through:.0f} "
            f"(denoiser + classifier) images/s, {policy}",
        )
