"""The study's plan with each step's expected minutes, and the minutes left.

The estimates come from an estimator (`estimate.Estimator`); after each
step the minutes left are the remaining estimates scaled by the ratio of
the time taken so far to its estimate.
"""

from __future__ import annotations


class Clock:
    """The study's plan and, after each step, the minutes left at its pace."""

    def __init__(self, plans, to_run: set[str], estimator, log):
        self._log = log
        self._left = {}
        self._taken = self._expected = 0.0
        if estimator is None or not to_run:
            return
        log(
            "study: plan on this machine (expected minutes, from a few timed steps "
            "of each model here):"
        )
        for plan in plans:
            name = plan.step.name
            if name not in to_run:
                log(f"  {name:<20} up to date: skipped")
                continue
            found = estimator(plan)
            if found is None:
                continue
            self._left[name] = found.seconds
            log(f"  {name:<20} {found.seconds / 60:6.1f} min  ({found.how})")
        log(f"  {'all':<20} {sum(self._left.values()) / 60:6.1f} min")

    def step_done(self, name: str, seconds: float) -> None:
        if name not in self._left:
            return
        self._taken += seconds
        self._expected += self._left.pop(name)
        if not self._left:
            return
        ratio = self._taken / self._expected if self._expected > 0 else 1.0
        left = sum(self._left.values()) * ratio / 60
        self._log(
            f"study: about {left:.1f} minutes left ({len(self._left)} "
            f"step{'s' if len(self._left) != 1 else ''}; the "
            f"estimates x{ratio:.2f}, the ratio of the time taken so far to its "
            "estimate)"
        )


def to_run(plans, action) -> set[str]:
    """The steps that run: `action(plan)` is not 'skip', or a needed one runs."""
    names = set()
    for plan in plans:
        if action(plan) != "skip" or names.intersection(plan.step.needs):
            names.add(plan.step.name)
    return names


def estimator(configured, data_dir: str):
    """An `estimate.Estimator` for the configured plans."""
    from cifar_denoise_adv.study import estimate  # builds models: TensorFlow

    return estimate.Estimator({p.step.name: p for p in configured}, data_dir)
