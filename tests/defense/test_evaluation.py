"""Threat models: oblivious and adaptive attacks differ exactly where they should."""

import keras
import numpy as np
import pytest

from cifar_denoise_adv.defense import checks
from cifar_denoise_adv.defense import defend_job
from cifar_denoise_adv.defense import evaluation
from cifar_denoise_adv.defense import pipeline
from cifar_denoise_adv.defense import table
from cifar_denoise_adv.defense.evaluation import Attack

EPSILONS = (2 / 255, 8 / 255, 32 / 255)


def _config(**changes):
    settings = dict(
        epsilons=EPSILONS,
        reference_epsilon=8 / 255,
        pgd_steps=5,
        targeted_steps=3,
        universal_epochs=1,
        universal_batch_size=8,
        square_queries=20,
        square_images=8,
        eval_draws=2,
        eot_draws=2,
        batch_size=8,
        num_examples=2,
    )
    return defend_job.DefendConfig(**{**settings, **changes})


def _classifier():
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )


def _identity():
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()])


def _blur():
    """A 5x5 box blur: it removes the fine sign patterns FGSM adds."""
    blur = keras.layers.DepthwiseConv2D(5, padding="same", use_bias=False)
    model = keras.Sequential([keras.Input((None, None, 3)), blur])
    blur.set_weights([np.full((5, 5, 3, 1), 1 / 25, np.float32)])
    return model


def _evaluate(denoiser, count=16):
    classifier = _classifier()
    defended = pipeline.build_defended(denoiser, classifier)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, size=(count, 32, 32, 3)).astype(np.float32)
    labels = np.asarray(defended(images)).argmax(1)  # all correct at first
    pipelines = [
        evaluation.Pipeline("classifier", classifier),
        evaluation.Pipeline("denoised", defended, False, denoiser),
    ]
    results, examples = table.evaluate(
        _config(), pipelines, images, labels, images, 0.1, lambda line: None
    )
    return results, examples, pipelines


def test_with_an_identity_denoiser_oblivious_and_adaptive_are_the_same_attack():
    results, _, _ = _evaluate(_identity())
    for attack in table.attack_list(_config()):
        oblivious, adaptive = results.common(
            ("denoised", "oblivious", attack), ("denoised", "adaptive", attack)
        )
        np.testing.assert_array_equal(oblivious, adaptive, err_msg=attack.key)
        # ... and the same as attacking the bare classifier.
        bare, _ = results.common(
            ("classifier", "white-box", attack), ("denoised", "adaptive", attack)
        )
        np.testing.assert_array_equal(bare, adaptive, err_msg=attack.key)


def test_with_a_real_denoiser_the_adaptive_attack_is_the_stronger():
    results, examples, pipelines = _evaluate(_blur())
    gaps = []
    for eps in EPSILONS:
        oblivious, adaptive = results.common(
            ("denoised", "oblivious", Attack("pgd", eps)),
            ("denoised", "adaptive", Attack("pgd", eps)),
        )
        assert adaptive.mean() <= oblivious.mean(), eps
        gaps.append(oblivious.mean() - adaptive.mean())
    # The blur removes most of the perturbation computed without it.
    assert max(gaps) >= 0.5, gaps
    assert not np.allclose(examples.oblivious, examples.adaptive)
    sanity = checks.adaptive_beats_oblivious(results, pipelines, _config())
    assert sanity and all(check["passed"] for check in sanity)


def test_rows_keep_their_images_and_threat_models():
    results, examples, _ = _evaluate(_blur())
    labels = {row["threat_model"] for row in results.rows}
    assert labels == {"none", "white-box", "oblivious", "adaptive", "gradient-free"}
    assert labels <= set(evaluation.THREAT_MODELS)
    square = results.find("denoised", "gradient-free", Attack("square", 8 / 255))
    assert square["images"] == 8
    assert examples.images.shape == (2, 32, 32, 3)
    # 2 pipelines x (clean, noisy) + 11 attacks (FGSM and PGD at 3 budgets,
    # 2 targeted, universal, APGD-CE and APGD-DLR at the reference budget)
    # x (white-box, oblivious, adaptive) + a gradient-free row per pipeline.
    assert len(table.attack_list(_config())) == 11
    assert len(results.rows) == 4 + 11 * 3 + 2
    # In registry order: the APGD rows, added last, come after Square's.
    names = [row["attack"] for row in results.rows]
    assert names.index("square") < names.index("apgd_ce") < names.index("apgd_dlr")


def test_counts_are_prefixes_of_the_images():
    config = _config(adaptive_images=5, eot_images=3)
    bare = evaluation.Pipeline("classifier", None)
    denoised = evaluation.Pipeline("denoised", None, False, "d")
    randomised = evaluation.Pipeline("randomised", None, True, "d")
    assert table.adaptive_count(config, bare, 10) == 10
    assert table.adaptive_count(config, denoised, 10) == 5
    assert table.adaptive_count(config, randomised, 10) == 3
    assert table.adaptive_count(_config(), randomised, 10) == 10
    targets = table.random_targets(np.arange(10) % 10, seed=0)
    assert np.all(targets != np.arange(10) % 10)


def _fake(rows):
    """Results with the given {(pipeline, threat, attack key): per-image}."""
    results = evaluation.Results()
    for (pipeline_name, threat, attack), values in rows.items():
        predicted = np.asarray(values, dtype=np.int64)[None]
        results.add(
            pipeline_name,
            threat,
            attack,
            predicted,
            np.ones(len(values), np.int64),
            np.zeros(len(values), np.int64),
            (0.0, 0.0),
        )
    return results


def test_checks_catch_what_they_should():
    config = _config(epsilons=(2 / 255, 8 / 255), reference_epsilon=8 / 255)
    pipelines = [evaluation.Pipeline("denoised", None, False, "d")]
    ones, zeros = [1] * 50, [0] * 50
    half = [1] * 25 + [0] * 25
    rows = {
        ("denoised", "adaptive", Attack("pgd", 2 / 255)): half,
        ("denoised", "adaptive", Attack("pgd", 8 / 255)): ones,  # rises, stays
        ("denoised", "adaptive", Attack("fgsm", 2 / 255)): zeros,  # beats PGD
        ("denoised", "adaptive", Attack("fgsm", 8 / 255)): zeros,
        ("denoised", "gradient-free", Attack("square", 8 / 255)): zeros,
    }
    results = _fake(rows)
    falls = checks.falls_to_zero(results, pipelines, config)[0]
    assert not falls["passed"] and "rises" in falls["detail"]
    assert "not below 10.0%" in falls["detail"]
    iterative = checks.iterative_beats_single(results, pipelines, config)[0]
    assert not iterative["passed"]
    free = checks.gradient_free_check(results, pipelines, config)[0]
    assert not free["passed"] and "masked" in free["detail"]
    warnings = checks.warnings([falls, iterative, free])
    assert len(warnings) == 3 and all(w.startswith("WARNING: ") for w in warnings)
    assert not checks.trustworthy([falls])

    good = _fake(
        {
            ("denoised", "adaptive", Attack("pgd", 2 / 255)): half,
            ("denoised", "adaptive", Attack("pgd", 8 / 255)): zeros,
            ("denoised", "adaptive", Attack("fgsm", 2 / 255)): ones,
            ("denoised", "adaptive", Attack("fgsm", 8 / 255)): half,
            ("denoised", "gradient-free", Attack("square", 8 / 255)): [1] + zeros[1:],
        }
    )
    for check in (
        checks.falls_to_zero(good, pipelines, config)[0],
        checks.iterative_beats_single(good, pipelines, config)[0],
        checks.gradient_free_check(good, pipelines, config)[0],
    ):
        assert check["passed"], check


def test_attack_settings_below_the_minimums_are_a_failed_check():
    pipelines = [evaluation.Pipeline("randomised", None, True, "d")]
    weak = checks.settings_check(_config(pgd_steps=5, eot_draws=2), pipelines)[0]
    assert not weak["passed"]
    assert "fewer than 20" in weak["detail"] and "fewer than 8" in weak["detail"]
    assert checks.settings_check(_config(pgd_steps=20, eot_draws=8), pipelines)[0][
        "passed"
    ]


def test_the_reference_budget_must_be_on_the_curve():
    from cifar_denoise_adv.core.errors import UserError

    with pytest.raises(UserError, match="--reference_epsilon"):
        _config(reference_epsilon=5 / 255)


def _adaptive_weaker(count, weaker):
    """Rows where `weaker` of `count` images survive adaptive PGD, none oblivious."""
    config = _config(epsilons=(8 / 255,), reference_epsilon=8 / 255)
    pipelines = [evaluation.Pipeline("denoised", None, False, "d")]
    survive = [1] * weaker + [0] * (count - weaker)
    rows = {("denoised", "none", Attack("clean")): [1] * count}
    rows[("denoised", "adaptive", Attack("pgd", 8 / 255))] = survive
    rows[("denoised", "oblivious", Attack("pgd", 8 / 255))] = [0] * count
    results = _fake(rows)
    return checks.adaptive_beats_oblivious(results, pipelines, config)[0]


def test_a_broken_order_is_never_passed_within_chance_it_is_inconclusive():
    # As the instance (+37.5 points on a handful of images, "passed"): 40
    # points on 5 images, where two images (40 points) may move by chance.
    check = _adaptive_weaker(5, 2)
    assert check["status"] == "inconclusive" and not check["passed"]
    assert "passed" not in check["detail"]
    assert "40.0 points more than oblivious" in check["detail"]
    assert "evaluate more images" in check["detail"]
    [line] = checks.warnings([check])
    assert line.startswith(
        "WARNING: check 'adaptive at least as strong as oblivious' is inconclusive"
    )
    # The same gap on 80 images is beyond chance: failed.
    assert _adaptive_weaker(80, 32)["status"] == "failed"
    # One image in 100 (1 point) is within the 2-point tolerance: passed, and
    # the detail says in which direction.
    passed = _adaptive_weaker(100, 1)
    assert passed["status"] == "passed"
    assert "within 2 points of oblivious" in passed["detail"]
    assert "no more than" in _adaptive_weaker(100, 0)["detail"]
    assert not checks.trustworthy([check]) and checks.trustworthy([passed])


def test_every_check_on_a_pipeline_at_chance_is_vacuous():
    config = _config(
        epsilons=(2 / 255, 8 / 255), reference_epsilon=8 / 255, pgd_steps=20
    )
    config = _config(**{**config.__dict__, "eot_draws": 8})
    pipelines = [evaluation.Pipeline("denoised", None, False, "d")]
    chance = [1] + [0] * 9  # right on 10% without attack
    zeros = [0] * 10
    results = _fake(
        {
            ("denoised", "none", Attack("clean")): chance,
            ("denoised", "adaptive", Attack("pgd", 2 / 255)): zeros,
            ("denoised", "adaptive", Attack("pgd", 8 / 255)): zeros,
            ("denoised", "adaptive", Attack("fgsm", 2 / 255)): zeros,
            ("denoised", "adaptive", Attack("fgsm", 8 / 255)): zeros,
            ("denoised", "oblivious", Attack("fgsm", 8 / 255)): zeros,
            ("denoised", "gradient-free", Attack("square", 8 / 255)): zeros,
        }
    )
    found = checks.run_all(results, pipelines, config)
    assert found[0]["check"] == "attack settings" and found[0]["passed"]
    assert len({c["check"] for c in found[1:]}) == 4
    for check in found[1:]:
        assert check["status"] == "vacuous" and not check["passed"], check
        assert "right on only 10.0% of the 10 images" in check["detail"]
    assert all(" is vacuous for denoised" in w for w in checks.warnings(found))
    assert len(checks.warnings(found)) == 4 and not checks.trustworthy(found)


def test_counts_larger_than_the_images_are_named_one_line_each():
    pipelines = [
        evaluation.Pipeline("classifier", None),
        evaluation.Pipeline("denoised", None, False, "d"),
        evaluation.Pipeline("randomised", None, True, "d"),
    ]
    config = _config(
        num_images=5000,
        adaptive_images=900,
        eot_images=4,
        square_images=8,
        universal_train_images=2000,
    )
    assert table.clamped(config, pipelines, 768, 1000) == [
        "--num_images=5000: the data has only 768 test images; all 768 are used",
        "--universal_train_images=2000: the data has only 1000 training images; "
        "all 1000 are used",
        "--adaptive_images=900: more than the 768 test images used; the rows it "
        "counts run on all 768",
        "--square_images=8: a pipeline's gradient-free rows run on at most the "
        "images of its adaptive rows: randomised 4",
    ]
    assert table.clamped(_config(num_images=8), pipelines, 8, 2000) == []
