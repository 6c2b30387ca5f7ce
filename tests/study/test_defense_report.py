"""The report's defense section says plainly what the numbers say."""

from cifar_denoise_adv.study.report import defense_section
from cifar_denoise_adv.study.report import render

EPS = 8 / 255


def _row(pipeline, threat, attack, accuracy, eps=EPS, images=100, **extra):
    return {
        "pipeline": pipeline,
        "threat_model": threat,
        "attack": attack,
        "epsilon": eps,
        "images": images,
        "accuracy": accuracy,
        **extra,
    }


def _metrics(oblivious, adaptive, trustworthy=True):
    rows = [
        _row("classifier", "none", "clean", 0.85, 0.0, 500),
        _row("classifier", "none", "noisy", 0.30, 0.1, 500),
        _row("denoised", "none", "clean", 0.80, 0.0, 500),
        _row("denoised", "none", "noisy", 0.78, 0.1, 500),
        _row("classifier", "white-box", "pgd", 0.02, images=500),
        _row("denoised", "oblivious", "pgd", oblivious, images=500),
        _row("denoised", "adaptive", "pgd", adaptive, images=250),
        _row(
            "classifier",
            "white-box",
            "targeted_fgsm",
            0.5,
            0.02,
            500,
            targeted_success=0.4,
        ),
        _row(
            "denoised",
            "oblivious",
            "targeted_fgsm",
            0.7,
            0.02,
            500,
            targeted_success=0.1,
        ),
        _row(
            "denoised",
            "adaptive",
            "targeted_fgsm",
            0.5,
            0.02,
            250,
            targeted_success=0.35,
        ),
    ]
    return {
        "config": {"reference_epsilon": EPS, "universal_xi": 10 / 255},
        "pipelines": {"classifier": "bare", "denoised": "classifier(denoiser(x))"},
        "noisy_sigma": 0.1,
        "rows": rows,
        "trustworthy": trustworthy,
        "checks": [],
    }


def test_an_oblivious_gain_that_adaptive_attacks_remove_is_called_so():
    sentences = defense_section.verdict(_metrics(oblivious=0.60, adaptive=0.03))
    assert sentences == [
        "denoiser: clean accuracy 85.00% -> 80.00% (-5.0 points); on noisy images "
        "(sigma 0.1) 30.00% -> 78.00% (+48.0 points).",
        "denoiser, PGD at 8/255: the undefended classifier keeps 2.00%; an attacker "
        "who ignores the defense (oblivious) leaves 60.00% (+58.0 points); one who "
        "attacks through it (adaptive) leaves 3.00% (no change).",
        "denoiser: it buys no robustness against an attacker who knows it is "
        "there: its gain against the oblivious attacker is not robustness.",
    ]


def test_a_real_gain_is_quoted_only_as_far_as_the_checks_allow():
    trusted = defense_section.verdict(_metrics(0.60, 0.30))[-1]
    assert trusted == (
        "denoiser: it buys 28.0 points against an attacker who knows it is there."
    )
    doubted = defense_section.verdict(_metrics(0.60, 0.30, trustworthy=False))[-1]
    assert doubted.endswith(
        "but a sanity check did not pass (below): do not trust this figure."
    )


def test_the_attack_table_labels_each_column_and_odd_counts():
    header, rows = defense_section.attack_table(_metrics(0.6, 0.03))[1:]
    assert header == [
        "attack",
        "budget",
        "classifier, white-box (500 images)",
        "denoised, oblivious (500 images)",
        "denoised, adaptive (250 images)",
    ]
    assert rows[0] == ["PGD", "8/255", "2.00%", "60.00%", "3.00%"]
    assert rows[1][2:] == [
        "50.00%, target 40.00%",
        "70.00%, target 10.00%",
        "50.00%, target 35.00%",
    ]
    row = defense_section.headline_row({"metrics": _metrics(0.6, 0.03)})
    assert row[:2] == [
        "denoiser as a defense: PGD 8/255 accuracy adaptive (oblivious; no "
        "defense), 250 (500) images",
        "3.00% (60.00%; 2.00%)",
    ]
    assert "| 8/255 |" in render.markdown([("table", header, rows)])
