"""The report's section on the denoiser as a defense (the `defend` step)."""

from __future__ import annotations

from cifar_denoise_adv.adversarial.attacks import registry
from cifar_denoise_adv.study.report.references import NOT_REPORTED
from cifar_denoise_adv.study.report.text import duration
from cifar_denoise_adv.study.report.text import figures
from cifar_denoise_adv.study.report.text import percent

# Accuracy differences within this many points are "no change" in the
# sentences below (the sanity checks' own allowance, see defense/checks.py).
SAME_POINTS = 0.02
# The attack table's rows: the registry's gradient attacks (the gradient-free
# check has its own sentence).
ATTACK_LABELS = {
    attack.name: attack.label for attack in registry.ATTACKS if attack.uses_gradients
}


def _row(m: dict, pipeline: str, threat: str, attack: str, eps: float | None = None):
    for row in m["rows"]:
        if (row["pipeline"], row["threat_model"], row["attack"]) != (
            pipeline,
            threat,
            attack,
        ):
            continue
        if eps is None or abs(row["epsilon"] - eps) < 1e-9:
            return row
    return None


def _budget(eps: float) -> str:
    return f"{eps * 255:.3g}/255"


def _columns(m: dict) -> list[tuple[str, str]]:
    columns = [("classifier", "white-box")]
    if "denoised" in m["pipelines"]:
        columns += [("denoised", "oblivious"), ("denoised", "adaptive")]
    if "randomised" in m["pipelines"]:
        columns += [("randomised", "oblivious"), ("randomised", "adaptive+EOT")]
    return columns


def _cell(row: dict | None, usual: int) -> str:
    if row is None:
        return "n/a"
    text = percent(row["accuracy"])
    if "targeted_success" in row:
        text += f", target {percent(row['targeted_success'])}"
    if row["images"] != usual:
        text += f" ({row['images']} images)"
    return text


def attack_table(m: dict) -> tuple:
    """Accuracy under each attack (rows) for each pipeline and threat model."""
    columns = _columns(m)
    usual = {}
    for pipeline, threat in columns:
        pgd = _row(m, pipeline, threat, "pgd")
        usual[(pipeline, threat)] = pgd["images"] if pgd else 0
    header = ["attack", "budget"] + [
        f"{pipeline}, {threat} ({usual[(pipeline, threat)]} images)"
        for pipeline, threat in columns
    ]
    keys = []
    for row in m["rows"]:
        key = (row["attack"], row["epsilon"])
        if row["attack"] in ATTACK_LABELS and key not in keys:
            keys.append(key)
    rows = [
        [ATTACK_LABELS[attack], _budget(eps)]
        + [_cell(_row(m, p, t, attack, eps), usual[(p, t)]) for p, t in columns]
        for attack, eps in keys
    ]
    return ("table", header, rows)


def _no_attack_table(m: dict) -> tuple:
    pipelines = list(m["pipelines"])
    rows = []
    for attack, label in (("clean", "clean"), ("noisy", "noisy")):
        cells = []
        for name in pipelines:
            row = _row(m, name, "none", attack)
            cells.append(_cell(row, row["images"]) if row else "n/a")
        if attack == "noisy":
            label = f"Gaussian noise, sigma {m['noisy_sigma']:g} (not an attack)"
        rows.append([label] + cells)
    return ("table", ["images"] + pipelines, rows)


# A check that did not pass says how: failed, or what it could not show.
CHECK_STATUS = {
    "passed": "passed",
    "failed": "FAILED",
    "inconclusive": "inconclusive",
    "vacuous": "vacuous",
}


def _checks_table(m: dict) -> tuple:
    rows = [
        [
            c["check"],
            c["pipeline"],
            c["threat_model"],
            CHECK_STATUS[c.get("status", "passed" if c["passed"] else "failed")],
            c["detail"],
        ]
        for c in m["checks"]
    ]
    return ("table", ["sanity check", "pipeline", "threat model", "", "detail"], rows)


def _change(before: float, after: float) -> str:
    if abs(after - before) <= SAME_POINTS:
        return "no change"
    return f"{100 * (after - before):+.1f} points"


def verdict(m: dict) -> list[str]:
    """Plain sentences: what the defense does and does not buy, from the numbers."""
    eps = m["config"]["reference_epsilon"]
    clean = _row(m, "classifier", "none", "clean")["accuracy"]
    noisy = _row(m, "classifier", "none", "noisy")["accuracy"]
    bare = _row(m, "classifier", "white-box", "pgd", eps)["accuracy"]
    sentences = []
    for name, threat in (("denoised", "adaptive"), ("randomised", "adaptive+EOT")):
        if name not in m["pipelines"]:
            continue
        label = "denoiser" if name == "denoised" else "noise + denoiser"
        d_clean = _row(m, name, "none", "clean")["accuracy"]
        d_noisy = _row(m, name, "none", "noisy")["accuracy"]
        oblivious = _row(m, name, "oblivious", "pgd", eps)["accuracy"]
        adaptive = _row(m, name, threat, "pgd", eps)["accuracy"]
        sentences.append(
            f"{label}: clean accuracy {percent(clean)} -> {percent(d_clean)} "
            f"({_change(clean, d_clean)}); on noisy images (sigma "
            f"{m['noisy_sigma']:g}) {percent(noisy)} -> {percent(d_noisy)} "
            f"({_change(noisy, d_noisy)})."
        )
        gain = oblivious - bare
        sentences.append(
            f"{label}, PGD at {_budget(eps)}: the undefended classifier keeps "
            f"{percent(bare)}; an attacker who ignores the defense (oblivious) "
            f"leaves {percent(oblivious)} ({_change(bare, oblivious)}); one who "
            f"attacks through it ({threat}) leaves {percent(adaptive)} "
            f"({_change(bare, adaptive)})."
        )
        if adaptive - bare <= SAME_POINTS:
            bought = (
                "it buys no robustness against an attacker who knows it is there"
                + (
                    ": its gain against the oblivious attacker is not robustness."
                    if gain > SAME_POINTS
                    else "."
                )
            )
        else:
            bought = (
                f"it buys {100 * (adaptive - bare):.1f} points against an attacker "
                "who knows it is there"
                + (
                    "."
                    if m["trustworthy"]
                    else ", but a sanity check did not pass (below): do not trust "
                    "this figure."
                )
            )
        sentences.append(f"{label}: {bought}")
        universal = _universal_sentence(m, name, threat, label)
        if universal:
            sentences.append(universal)
    return sentences


def _universal_sentence(m: dict, name: str, threat: str, label: str) -> str:
    xi = m["config"]["universal_xi"]
    rows = [
        _row(m, pipeline, kind, "universal", xi)
        for pipeline, kind in (
            ("classifier", "white-box"),
            (name, "oblivious"),
            (name, threat),
        )
    ]
    if None in rows:
        return ""
    bare, oblivious, adaptive = (row["accuracy"] for row in rows)
    return (
        f"{label}, universal perturbation at {_budget(xi)}: {percent(bare)} "
        f"without the defense; the classifier's perturbation through the defense "
        f"{percent(oblivious)}; one recomputed against the pipeline "
        f"{percent(adaptive)}."
    )


def defense_section(step: dict) -> list:
    """Section 6: the denoiser in front of the classifier, attacked."""
    m = step["metrics"]
    c = m["config"]
    epsilons = ", ".join(_budget(e) for e in sorted(c["epsilons"]))
    blocks = [
        ("h2", "6. The denoiser as a defense"),
        (
            "p",
            "What was done: "
            + "; ".join(f"{name} = {text}" for name, text in m["pipelines"].items())
            + f". Test images: the first {m['images']['test']}; each column says "
            f"on how many of them (a prefix) its attacks ran. Untargeted FGSM and "
            f"PGD ({c['pgd_steps']} steps of {c['pgd_step_factor']:g} eps / steps, "
            f"random start) at L-inf {epsilons}; targeted FGSM and iterative "
            f"({c['targeted_steps']} steps of {c['targeted_step_size']:g}) at "
            f"{c['targeted_epsilon']:g}, random other-class targets; a universal "
            f"perturbation (sgd) at {_budget(c['universal_xi'])} computed on "
            f"{m['images']['universal_train']} training images. EOT: "
            f"{c['eot_draws']} noise draws per gradient step; randomised accuracy "
            f"averaged over {c['eval_draws']} draws. "
            f"{duration(m['compute_seconds'])} of attacks.",
        ),
        ("list", [f"{name}: {text}" for name, text in m["threat_models"].items()]),
        ("h3", "What the defense does and does not buy"),
        ("list", verdict(m)),
    ]
    if m["warnings"]:
        blocks.append(("list", m["warnings"]))
    blocks += [
        ("h3", "Accuracy without attack"),
        _no_attack_table(m),
        ("h3", "Accuracy under attack, by threat model"),
        attack_table(m),
        (
            "p",
            "Targeted rows: accuracy, then the share of images classified as "
            f"their target. Reference figures for the defense: {NOT_REPORTED}.",
        ),
        ("h3", "Sanity checks"),
        _checks_table(m),
    ]
    return blocks + figures(
        step,
        {
            "accuracy_vs_eps.png": "accuracy against the budget, per pipeline and "
            "threat model",
            "examples.png": "an image, its PGD versions (oblivious and adaptive), "
            "what the denoiser makes of them, and the predictions",
        },
    )


def headline_row(step: dict) -> list:
    """The headline's row: adaptive accuracy of the defense at the reference budget."""
    m = step["metrics"]
    eps = m["config"]["reference_epsilon"]
    bare = _row(m, "classifier", "white-box", "pgd", eps)
    adaptive = _row(m, "denoised", "adaptive", "pgd", eps)
    oblivious = _row(m, "denoised", "oblivious", "pgd", eps)
    return [
        f"denoiser as a defense: PGD {_budget(eps)} accuracy adaptive (oblivious; "
        f"no defense), {adaptive['images']} ({oblivious['images']}) images",
        f"{percent(adaptive['accuracy'])} ({percent(oblivious['accuracy'])}; "
        f"{percent(bare['accuracy'])})",
        NOT_REPORTED,
        "" if m["trustworthy"] else "a sanity check did not pass: see section 6",
    ]
