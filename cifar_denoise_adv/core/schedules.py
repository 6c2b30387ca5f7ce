"""Learning-rate schedules of the training jobs (serialisable with the model)."""

from __future__ import annotations

import keras
import tensorflow as tf


def warmup_cosine(
    peak_learning_rate: float, total_steps: int, warmup_steps: int = 0
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to the peak, then cosine decay to 0 at `total_steps`."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak_learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0,
        warmup_target=peak_learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


@keras.saving.register_keras_serializable(package="cifar_denoise_adv")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-linear rate: start x peak -> peak at `peak_at` -> end x peak.

    airbench94's schedule (K. Jordan 2024): from 0.2 of the peak up to the
    peak at 23% of the steps, then down to 0.07 of the peak at the last step.
    """

    def __init__(
        self,
        peak_learning_rate: float,
        total_steps: int,
        start: float = 0.2,
        end: float = 0.07,
        peak_at: float = 0.23,
    ):
        self.peak_learning_rate = peak_learning_rate
        self.total_steps = total_steps
        self.start, self.end, self.peak_at = start, end, peak_at

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak_step = max(self.peak_at * self.total_steps, 1.0)
        rising = self.start + (1.0 - self.start) * step / peak_step
        falling = 1.0 + (self.end - 1.0) * (step - peak_step) / max(
            self.total_steps - peak_step, 1.0
        )
        fraction = tf.where(step < peak_step, rising, falling)
        return self.peak_learning_rate * tf.maximum(fraction, self.end)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "start": self.start,
            "end": self.end,
            "peak_at": self.peak_at,
        }


def schedule(name: str, peak: float, total_steps: int, warmup_steps: int):
    """The learning-rate schedule --schedule names (see TrainingConfig)."""
    if name == "triangle":
        return Triangle(peak, total_steps)
    return warmup_cosine(peak, total_steps, warmup_steps)
