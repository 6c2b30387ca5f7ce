"""Sanity checks: did the attacks do their job? Computed, not assumed.

The checks of Carlini et al., "On evaluating adversarial robustness"
(2019), and Athalye, Carlini and Wagner (ICML 2018), section 7: accuracy
must fall towards 0 as the budget grows; an iterative attack must be at
least as strong as one step; an attack that sees the defense must be at
least as strong as one that does not; a gradient-free attack must not do
much better than the gradient attack (else the gradients are masked).

Rows that a run does not have are not checked. Two rows are always
compared on the images they share. Each check ends in one of four states:

- passed: the expected order holds, or is broken by at most `SLACK` (two
  percentage points);
- failed: it is broken by more than chance allows on n images
  (`slack(n)`: two points or two images, whichever is more, since
  accuracies on n images move in steps of 1/n);
- inconclusive: it is broken by more than two points, but on so few
  images that chance could do it: more images would tell;
- vacuous: the pipeline is right on at most `CHANCE` of the images
  without attack, so no attack has accuracy to remove and the check says
  nothing.

Only a passed check is reported as passed; the others are warnings, and a
failed one means the robustness figures it concerns are not trustworthy.
"""

from __future__ import annotations

import numpy as np

from cifar_denoise_adv.defense import evaluation
from cifar_denoise_adv.defense import table
from cifar_denoise_adv.defense.evaluation import GRADIENT_FREE
from cifar_denoise_adv.defense.evaluation import NONE
from cifar_denoise_adv.defense.evaluation import OBLIVIOUS
from cifar_denoise_adv.defense.evaluation import Attack

SLACK = 0.02
CHANCE = 0.10  # ten classes: a pipeline right this rarely is guessing
FALLS_BELOW = 0.10  # PGD accuracy at the largest budget must be under this
WIDE_MARGIN = 0.05  # gradient-free may beat PGD by at most this (or 3 images)
MIN_PGD_STEPS = 20
MIN_EOT_DRAWS = 8


def slack(n: int) -> float:
    """How much two accuracies on the same n images may differ by chance."""
    return max(SLACK, 2.0 / max(n, 1))


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _budget(eps: float) -> str:
    return f"{eps * 255:.3g}/255"


def _check(name, pipeline, threat, status, detail) -> dict:
    return {
        "check": name,
        "pipeline": pipeline,
        "threat_model": threat,
        "status": status,
        "passed": status == "passed",
        "detail": detail,
    }


def _vacuous(results, pipeline: str, n: int) -> str | None:
    """Why checks on the first n images say nothing, or None.

    The pipeline's clean accuracy on them is at most CHANCE: every attack
    leaves about as little as there was.
    """
    correct = results.per_image.get(results.key(pipeline, NONE, Attack("clean")))
    if correct is None or n == 0:
        return None
    clean = float(np.mean(correct[:n]))
    if clean > CHANCE:
        return None
    return (
        f"vacuous: without attack {pipeline} is right on only {_percent(clean)} of "
        f"the {n} images (chance: {_percent(CHANCE)}), so no attack has accuracy "
        "to remove"
    )


def _by_chance(gap: float, n: int, what: str) -> tuple[str, str]:
    """(status, detail) of an order broken by `gap` (> SLACK) on n images."""
    if gap > slack(n):
        return "failed", what
    return "inconclusive", (
        f"{what}; within what chance allows on {n} images ({100 * slack(n):.1f} "
        "points), so not shown either way: evaluate more images"
    )


def settings_check(config, pipelines) -> list[dict]:
    """The attacks are as strong as an honest evaluation needs."""
    failures = []
    if config.pgd_steps < MIN_PGD_STEPS:
        failures.append(
            f"PGD runs {config.pgd_steps} steps, fewer than {MIN_PGD_STEPS}"
        )
    if any(p.random for p in pipelines) and config.eot_draws < MIN_EOT_DRAWS:
        failures.append(
            f"EOT averages {config.eot_draws} draws per step, fewer than "
            f"{MIN_EOT_DRAWS}"
        )
    detail = (
        f"PGD {config.pgd_steps} steps with random start, step "
        f"{config.pgd_step_factor:g} eps / steps; EOT {config.eot_draws} draws"
    )
    status = "failed" if failures else "passed"
    detail = "; ".join(failures) if failures else detail
    return [_check("attack settings", "all", "all", status, detail)]


def falls_to_zero(results, pipelines, config) -> list[dict]:
    """PGD accuracy goes down with the budget and nearly to 0 at the largest."""
    checks = []
    epsilons = sorted(config.epsilons)
    for pipeline in pipelines:
        threat = pipeline.adaptive_threat
        rows = [results.find(pipeline.name, threat, Attack("pgd", e)) for e in epsilons]
        if None in rows:
            continue
        accuracies = [row["accuracy"] for row in rows]
        n = rows[0]["images"]
        name = "accuracy falls to 0 as eps grows"
        curve = ", ".join(
            f"{_budget(e)}: {_percent(a)}"
            for e, a in zip(epsilons, accuracies, strict=True)
        )
        vacuous = _vacuous(results, pipeline.name, n)
        if vacuous:
            checks.append(_check(name, pipeline.name, threat, "vacuous", vacuous))
            continue
        rises = [
            (
                b - a,
                f"accuracy rises from {_percent(a)} at {_budget(e)} to "
                f"{_percent(b)} at {_budget(f)}",
            )
            for a, b, e, f in zip(
                accuracies, accuracies[1:], epsilons, epsilons[1:], strict=False
            )
            if b > a + SLACK
        ]
        status, details = "passed", []
        if accuracies[-1] > FALLS_BELOW:
            status = "failed"
            details.append(
                f"PGD leaves {_percent(accuracies[-1])} at {_budget(epsilons[-1])}, "
                f"not below {_percent(FALLS_BELOW)}"
            )
        for rise, what in rises:
            rise_status, what = _by_chance(rise, n, what)
            if status != "failed":
                status = rise_status
            details.append(what)
        if status == "passed":
            details.append(
                curve
                + (
                    ""
                    if len(epsilons) > 1
                    else " (one budget: only the end point is checked)"
                )
            )
        else:
            details.append(f"curve {curve}")
        checks.append(_check(name, pipeline.name, threat, status, "; ".join(details)))
    return checks


def _order_check(results, name, pipeline, threat, gaps, n, stronger, weaker) -> dict:
    """A check that `stronger` leaves no more than `weaker` on every row.

    `gaps` holds (accuracy of stronger - of weaker, what) per compared row
    on the same n images; the largest decides (see the module docstring).
    Vacuous when the pipeline is at chance without attack (`_vacuous`).
    """
    vacuous = _vacuous(results, pipeline, n)
    if vacuous:
        return _check(name, pipeline, threat, "vacuous", vacuous)
    worst, what = max(gaps, key=lambda gap: gap[0])
    if worst <= SLACK:
        order = "no more than" if worst <= 0 else f"within {100 * SLACK:.0f} points of"
        return _check(
            name,
            pipeline,
            threat,
            "passed",
            f"{stronger} leaves {order} {weaker} on all {len(gaps)} rows compared "
            f"({stronger} - {weaker} at most {100 * worst:+.1f} points, {n} images)",
        )
    status, detail = _by_chance(
        worst,
        n,
        f"{stronger} leaves {100 * worst:.1f} points more than {weaker} ({what})",
    )
    return _check(name, pipeline, threat, status, detail)


def iterative_beats_single(results, pipelines, config) -> list[dict]:
    """PGD leaves no more accuracy than FGSM at every budget."""
    checks = []
    for pipeline in pipelines:
        threats = [pipeline.adaptive_threat]
        if pipeline.denoiser is not None:
            threats.append(OBLIVIOUS)
        for threat in threats:
            gaps, n = [], 0
            for eps in sorted(config.epsilons):
                pair = results.common(
                    (pipeline.name, threat, Attack("pgd", eps)),
                    (pipeline.name, threat, Attack("fgsm", eps)),
                )
                if pair is None:
                    continue
                pgd, fgsm = pair
                n = max(n, len(pgd))
                gaps.append(
                    (
                        pgd.mean() - fgsm.mean(),
                        f"at {_budget(eps)} PGD leaves {_percent(pgd.mean())}, FGSM "
                        f"{_percent(fgsm.mean())}",
                    )
                )
            if gaps:
                name = "iterative at least as strong as FGSM"
                checks.append(
                    _order_check(
                        results, name, pipeline.name, threat, gaps, n, "PGD", "FGSM"
                    )
                )
    return checks


def adaptive_beats_oblivious(results, pipelines, config) -> list[dict]:
    """Attacking through the defense is at least as strong as ignoring it."""
    checks = []
    for pipeline in pipelines:
        if pipeline.denoiser is None:
            continue
        threat = pipeline.adaptive_threat
        gaps, n = [], 0
        for attack in table.attack_list(config):
            targeted = evaluation.is_targeted(attack.name)
            pair = results.common(
                (pipeline.name, threat, attack),
                (pipeline.name, OBLIVIOUS, attack),
                "success" if targeted else "correct",
            )
            if pair is None:
                continue
            adaptive, oblivious = pair
            n = max(n, len(adaptive))
            # Stronger: lower accuracy, or a higher targeted success.
            gap = (
                (oblivious - adaptive).mean()
                if targeted
                else (adaptive - oblivious).mean()
            )
            what = "target reached" if targeted else "accuracy"
            gaps.append(
                (
                    gap,
                    f"{attack.name} {_budget(attack.epsilon)}: {what} "
                    f"{_percent(adaptive.mean())} adaptive against "
                    f"{_percent(oblivious.mean())} oblivious",
                )
            )
        if gaps:
            name = "adaptive at least as strong as oblivious"
            order = ("adaptive", "oblivious")
            checks.append(
                _order_check(results, name, pipeline.name, threat, gaps, n, *order)
            )
    return checks


def gradient_free_check(results, pipelines, config) -> list[dict]:
    """Random search does not beat the gradient attack by a wide margin."""
    checks = []
    eps = config.reference_epsilon
    for pipeline in pipelines:
        threat = pipeline.adaptive_threat
        pair = results.common(
            (pipeline.name, GRADIENT_FREE, Attack("square", eps)),
            (pipeline.name, threat, Attack("pgd", eps)),
        )
        if pair is None:
            continue
        square, pgd = pair
        n = len(square)
        name = "gradient-free no stronger than white-box"
        measured = (
            f"Square Attack leaves {_percent(square.mean())}, PGD "
            f"{_percent(pgd.mean())} at {_budget(eps)} on {n} images"
        )
        vacuous = _vacuous(results, pipeline.name, n)
        gap = pgd.mean() - square.mean()
        if vacuous:
            status, detail = "vacuous", vacuous
        elif gap <= WIDE_MARGIN:
            status, detail = "passed", measured
        elif gap > max(WIDE_MARGIN, 3.0 / n):
            status = "failed"
            detail = f"{measured}: the gradients mislead PGD (masked or obfuscated)"
        else:
            status = "inconclusive"
            detail = (
                f"{measured}; Square Attack is stronger by {100 * gap:.1f} points, "
                f"within what chance allows on {n} images (3 images), so masked "
                "gradients are neither shown nor ruled out: evaluate more images"
            )
        checks.append(_check(name, pipeline.name, threat, status, detail))
    return checks


def run_all(results, pipelines, config) -> list[dict]:
    """Every check, each {check, pipeline, threat_model, passed, detail}."""
    return [
        *settings_check(config, pipelines),
        *falls_to_zero(results, pipelines, config),
        *iterative_beats_single(results, pipelines, config),
        *adaptive_beats_oblivious(results, pipelines, config),
        *gradient_free_check(results, pipelines, config),
    ]


STATUS_WARNING = {
    "failed": "failed",
    "inconclusive": "is inconclusive",
    "vacuous": "is vacuous",
}


def warnings(checks: list[dict]) -> list[str]:
    """One warning line per check that did not pass (failed, inconclusive, vacuous)."""
    lines = []
    for c in checks:
        status = c.get("status", "passed" if c["passed"] else "failed")
        if status == "passed":
            continue
        consequence = (
            " The robustness figures it concerns are not trustworthy."
            if status == "failed"
            else ""
        )
        lines.append(
            f"WARNING: check '{c['check']}' {STATUS_WARNING[status]} for "
            f"{c['pipeline']} ({c['threat_model']}): {c['detail']}.{consequence}"
        )
    return lines


def trustworthy(checks: list[dict]) -> bool:
    """Whether every check passed (none failed, inconclusive or vacuous)."""
    return bool(checks) and all(c["passed"] for c in checks)
