"""Sanity checks: did the attacks do their job? Computed, not assumed.

The checks of Carlini et al., "On evaluating adversarial robustness"
(2019), and Athalye, Carlini and Wagner (ICML 2018), section 7: accuracy
must fall towards 0 as the budget grows; an iterative attack must be at
least as strong as one step; an attack that sees the defense must be at
least as strong as one that does not; a gradient-free attack must not do
much better than the gradient attack (else the gradients are masked). A
check that fails means the robustness figure it concerns is not
trustworthy: the report prints it as a warning.

Rows that a run does not have are not checked. Two rows are always
compared on the images they share, and allowed to differ by `slack(n)`:
two percentage points or two images, whichever is more, since accuracies
on n images move in steps of 1/n.
"""

from __future__ import annotations

from cifar_denoise_adv.defense import evaluation
from cifar_denoise_adv.defense import table
from cifar_denoise_adv.defense.evaluation import GRADIENT_FREE
from cifar_denoise_adv.defense.evaluation import OBLIVIOUS
from cifar_denoise_adv.defense.evaluation import Attack

SLACK = 0.02
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


def _check(name, pipeline, threat, failures, passed_detail) -> dict:
    return {
        "check": name,
        "pipeline": pipeline,
        "threat_model": threat,
        "passed": not failures,
        "detail": "; ".join(failures) if failures else passed_detail,
    }


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
    return [_check("attack settings", "all", "all", failures, detail)]


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
        failures = [
            f"accuracy rises from {_percent(a)} at {_budget(e)} to {_percent(b)} at "
            f"{_budget(f)}"
            for a, b, e, f in zip(
                accuracies, accuracies[1:], epsilons, epsilons[1:], strict=False
            )
            if b > a + slack(n)
        ]
        if accuracies[-1] > FALLS_BELOW:
            failures.append(
                f"PGD leaves {_percent(accuracies[-1])} at {_budget(epsilons[-1])}, "
                f"not below {_percent(FALLS_BELOW)}"
            )
        curve = ", ".join(
            f"{_budget(e)}: {_percent(a)}"
            for e, a in zip(epsilons, accuracies, strict=True)
        )
        checks.append(
            _check(
                "accuracy falls to 0 as eps grows",
                pipeline.name,
                threat,
                failures,
                curve,
            )
        )
    return checks


def iterative_beats_single(results, pipelines, config) -> list[dict]:
    """PGD leaves no more accuracy than FGSM at every budget."""
    checks = []
    for pipeline in pipelines:
        threats = [pipeline.adaptive_threat]
        if pipeline.denoiser is not None:
            threats.append(OBLIVIOUS)
        for threat in threats:
            failures, worst = [], None
            for eps in sorted(config.epsilons):
                pair = results.common(
                    (pipeline.name, threat, Attack("pgd", eps)),
                    (pipeline.name, threat, Attack("fgsm", eps)),
                )
                if pair is None:
                    continue
                pgd, fgsm = pair
                gap = pgd.mean() - fgsm.mean()
                worst = gap if worst is None else max(worst, gap)
                if pgd.mean() > fgsm.mean() + slack(len(pgd)):
                    failures.append(
                        f"at {_budget(eps)} PGD leaves {_percent(pgd.mean())}, FGSM "
                        f"{_percent(fgsm.mean())}"
                    )
            if worst is None:
                continue
            detail = f"PGD - FGSM accuracy at most {100 * worst:+.1f} points"
            checks.append(
                _check(
                    "iterative at least as strong as FGSM",
                    pipeline.name,
                    threat,
                    failures,
                    detail,
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
        failures, worst = [], None
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
            # Stronger: lower accuracy, or a higher targeted success.
            gap = (
                (oblivious - adaptive).mean()
                if targeted
                else (adaptive - oblivious).mean()
            )
            worst = gap if worst is None else max(worst, gap)
            if gap > slack(len(adaptive)):
                what = "target reached" if targeted else "accuracy"
                failures.append(
                    f"{attack.name} {_budget(attack.epsilon)}: {what} "
                    f"{_percent(adaptive.mean())} adaptive against "
                    f"{_percent(oblivious.mean())} oblivious"
                )
        if worst is None:
            continue
        detail = f"adaptive weaker than oblivious by at most {100 * worst:+.1f} points"
        checks.append(
            _check(
                "adaptive at least as strong as oblivious",
                pipeline.name,
                threat,
                failures,
                detail,
            )
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
        margin = max(WIDE_MARGIN, 3.0 / len(square))
        failures = []
        if square.mean() < pgd.mean() - margin:
            failures.append(
                f"Square Attack leaves {_percent(square.mean())} where PGD leaves "
                f"{_percent(pgd.mean())} at {_budget(eps)} ({len(square)} images): "
                "the gradients mislead PGD (masked or obfuscated)"
            )
        detail = (
            f"Square Attack {_percent(square.mean())}, PGD {_percent(pgd.mean())} at "
            f"{_budget(eps)} on {len(square)} images"
        )
        checks.append(
            _check(
                "gradient-free no stronger than white-box",
                pipeline.name,
                threat,
                failures,
                detail,
            )
        )
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


def warnings(checks: list[dict]) -> list[str]:
    """One warning line per failed check."""
    return [
        f"WARNING: check '{c['check']}' failed for {c['pipeline']} "
        f"({c['threat_model']}): {c['detail']}. The robustness figures it "
        "concerns are not trustworthy."
        for c in checks
        if not c["passed"]
    ]


def trustworthy(checks: list[dict]) -> bool:
    """Whether every check passed."""
    return bool(checks) and all(c["passed"] for c in checks)
