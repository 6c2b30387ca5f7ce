"""The defend app end to end on tiny runs: every promised output, clear errors."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv import defend
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.defense import evaluation
from tests.conftest import folder_snapshot

TINY = [
    "--num_images=12",
    "--adaptive_images=8",
    "--eot_images=4",
    "--epsilons=2/255,8/255,32/255",
    "--reference_epsilon=8/255",
    "--pgd_steps=2",
    "--eot_draws=2",
    "--eval_draws=2",
    "--targeted_steps=2",
    "--universal_train_images=16",
    "--universal_epochs=1",
    "--universal_batch_size=8",
    "--square_queries=5",
    "--square_images=4",
    "--batch_size=8",
    "--num_examples=2",
]


def _argv(tiny_runs, run_dir, *extra):
    return [
        "defend",
        f"--classifier={tiny_runs['classifier']}",
        f"--denoiser={tiny_runs['denoiser']}",
        f"--data_dir={tiny_runs['data_dir']}",
        f"--run_dir={run_dir}",
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def defend_run(tiny_runs, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("defend")
    logged = []
    record = defend.APP.job(defend.APP.parse(_argv(tiny_runs, run_dir)), logged.append)
    return run_dir, record, logged


def test_a_run_writes_every_promised_output(defend_run):
    run_dir, record, logged = defend_run
    for name in (
        "metrics.json",
        "flags.cfg",
        "accuracy_vs_eps.png",
        "examples.png",
        "per_image.npz",
        "model.keras",
        "randomised.keras",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    for folder in ("saved_model", "randomised_saved_model"):
        assert (run_dir / folder / "saved_model.pb").is_file(), folder
    events = [f for _, _, files in os.walk(run_dir / "tb") for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events)
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        json.dumps(record)
    )
    assert record["exported"]["denoised"]["max_abs_difference"] <= 1e-4
    assert record["exported"]["randomised"]["max_abs_difference"] <= 1e-4
    assert any("accuracy" in line for line in logged)


def test_every_row_names_its_pipeline_and_threat_model(defend_run):
    _, record, _ = defend_run
    rows = record["rows"]
    pairs = {(r["pipeline"], r["threat_model"]) for r in rows}
    assert pairs == {
        ("classifier", "none"),
        ("classifier", "white-box"),
        ("classifier", "gradient-free"),
        ("denoised", "none"),
        ("denoised", "oblivious"),
        ("denoised", "adaptive"),
        ("denoised", "gradient-free"),
        ("randomised", "none"),
        ("randomised", "oblivious"),
        ("randomised", "adaptive+EOT"),
        ("randomised", "gradient-free"),
    }
    assert set(record["threat_models"]) == set(evaluation.THREAT_MODELS)
    counts = {(r["pipeline"], r["threat_model"], r["attack"]): r for r in rows}
    assert counts[("denoised", "adaptive", "pgd")]["images"] == 8
    assert counts[("randomised", "adaptive+EOT", "pgd")]["images"] == 4
    assert counts[("randomised", "adaptive+EOT", "pgd")]["draws"] == 2
    assert counts[("randomised", "oblivious", "pgd")]["images"] == 12
    # The universal perturbation is applied to every image, whoever it was for.
    assert counts[("randomised", "adaptive+EOT", "universal")]["images"] == 12
    assert counts[("denoised", "none", "noisy")]["epsilon"] == 0.1  # its sigma
    targeted = [r for r in rows if r["attack"].startswith("targeted")]
    assert targeted and all("targeted_success" in r for r in targeted)


def test_the_per_image_file_holds_each_rows_accuracy(defend_run):
    run_dir, record, _ = defend_run
    stored = np.load(run_dir / "per_image.npz")
    for row in record["rows"]:
        attack = evaluation.Attack(row["attack"], row["epsilon"])
        key = evaluation.Results.key(row["pipeline"], row["threat_model"], attack)
        assert len(stored[key]) == row["images"]
        assert stored[key].mean() == pytest.approx(row["accuracy"])
    universal = [k for k in stored.files if k.startswith("universal_v|")]
    assert sorted(universal) == [
        "universal_v|bare",
        "universal_v|denoised",
        "universal_v|randomised",
    ]
    assert np.abs(stored["universal_v|bare"]).max() <= 10 / 255 + 1e-6


def test_checks_are_computed_and_a_failed_one_is_a_warning(defend_run):
    _, record, logged = defend_run
    names = {c["check"] for c in record["checks"]}
    assert names == {
        "attack settings",
        "accuracy falls to 0 as eps grows",
        "iterative at least as strong as FGSM",
        "adaptive at least as strong as oblivious",
        "gradient-free no stronger than white-box",
    }
    # Two PGD steps and two EOT draws are below an honest evaluation's.
    assert not record["trustworthy"]
    settings = next(c for c in record["checks"] if c["check"] == "attack settings")
    assert not settings["passed"]
    assert any("fewer than 20" in w for w in record["warnings"])
    assert [line for line in logged if line.startswith("WARNING")] == record["warnings"]
    # The tiny classifier is untrained: at chance, which is said first, and
    # the checks on it are vacuous, never passed.
    assert "the classifier is right on only" in record["warnings"][0]
    bare = [c for c in record["checks"] if c["pipeline"] == "classifier"]
    assert bare and all(c["status"] == "vacuous" for c in bare)
    assert not any("sanity checks passed" in line for line in logged)


def test_flags_cfg_replays_the_run(defend_run, tiny_runs):
    run_dir, record, _ = defend_run
    replayed = defend.APP.parse(["defend", f"--flagfile={run_dir / 'flags.cfg'}"])
    assert replayed.num_images == 12 and replayed.eot_draws == 2
    assert replayed.epsilons == pytest.approx((2 / 255, 8 / 255, 32 / 255))
    assert replayed.classifier == tiny_runs["classifier"]


def test_the_exported_pipeline_serves_logits(defend_run):
    run_dir, _, _ = defend_run
    served = tf.saved_model.load(str(run_dir / "saved_model"))
    signature = served.signatures["serving_default"]
    # Named like every classifier's export: images -> logits.
    logits = signature(images=tf.zeros((2, 32, 32, 3)))["logits"].numpy()
    assert logits.shape == (2, 10)


def test_the_exported_pipelines_reload_after_the_package_import(defend_run, tmp_path):
    # The instance: "Could not locate class 'ClipPixels'" ('PixelNoise' for
    # randomised.keras) in a fresh process, and --classifier refused both.
    from tests.reload import assert_keras_files_reload

    run_dir, _, _ = defend_run
    names = ["model.keras", "randomised.keras"]
    assert_keras_files_reload(run_dir, names, names, tmp_path=tmp_path)


def test_without_the_denoisers_sigma_the_flag_is_named(tiny_runs, tmp_path):
    model_only = tmp_path / "denoiser"
    model_only.mkdir()
    source = pathlib.Path(tiny_runs["denoiser"]) / "model.keras"
    (model_only / "model.keras").write_bytes(source.read_bytes())
    argv = _argv(tiny_runs, tmp_path / "run")
    argv = [a for a in argv if not a.startswith("--denoiser=")]
    argv.append(f"--denoiser={model_only}")
    with pytest.raises(UserError, match="^--noisy_sigma: not given"):
        defend.APP.job(defend.APP.parse(argv))


def test_a_wrong_kind_of_model_stops_the_app_with_one_line(tiny_runs, tmp_path):
    argv = _argv(tiny_runs, tmp_path / "run", f"--classifier={tiny_runs['denoiser']}")
    result = subprocess.run(
        [sys.executable, "-m", "cifar_denoise_adv.defend", *argv[1:]],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        check=False,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [
        f"error: --classifier={tiny_runs['denoiser']}: this model maps "
        "[B, None, None, 3] -> [B, None, None, 3], a denoiser; expected a "
        "classifier [B, 32, 32, 3] -> [B, 10] logits: the run folder of a "
        "`classify` run, or its model.keras."
    ]


def test_overwrite_with_a_bad_input_keeps_the_finished_run(
    defend_run, tiny_runs, tmp_path
):
    """The runs, the sigmas and the data are checked before --overwrite
    removes the earlier defend run."""
    finished, _, _ = defend_run
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = folder_snapshot(run_dir)
    for flag, message in [
        (f"--denoiser={tiny_runs['classifier']}", "^--denoiser=.*a classifier"),
        (f"--data_dir={tmp_path / 'missing'}", "^--data_dir="),
    ]:
        argv = [*_argv(tiny_runs, run_dir, flag), "--num_images=8", "--overwrite"]
        with pytest.raises(UserError, match=message):
            defend.APP.job(defend.APP.parse(argv))
        assert folder_snapshot(run_dir) == before


def test_apgd_rows_stand_beside_pgd_under_every_threat_model(defend_run):
    _, record, _ = defend_run
    rows = record["rows"]
    pgd = {(r["pipeline"], r["threat_model"]) for r in rows if r["attack"] == "pgd"}
    for name in ("apgd_ce", "apgd_dlr"):
        mine = [r for r in rows if r["attack"] == name]
        assert {(r["pipeline"], r["threat_model"]) for r in mine} == pgd
        # At the reference budget, on the same images as PGD there.
        assert {r["epsilon"] for r in mine} == {8 / 255}
        for row in mine:
            twin = [
                r
                for r in rows
                if r["attack"] == "pgd"
                and (r["pipeline"], r["threat_model"], r["epsilon"])
                == (row["pipeline"], row["threat_model"], row["epsilon"])
            ]
            assert twin[0]["images"] == row["images"]
        assert record["attacks"][name].startswith("untargeted APGD")


def test_the_table_runs_the_attacks_asked_for_and_needs_pgd(tiny_runs, tmp_path):
    config = defend.APP.parse(
        _argv(tiny_runs, tmp_path / "a", "--attacks=pgd", "--norandomised")
    )
    record = defend.APP.job(config, lambda message: None)
    assert {r["attack"] for r in record["rows"]} == {"clean", "noisy", "pgd"}
    with pytest.raises(UserError, match="--attacks=fgsm: expected pgd"):
        defend.APP.job(
            defend.APP.parse(_argv(tiny_runs, tmp_path / "b", "--attacks=fgsm")),
            lambda message: None,
        )


def test_the_targeted_and_universal_settings_are_those_apps_settings():
    import dataclasses

    from cifar_denoise_adv.adversarial.targeted_job import TargetedConfig
    from cifar_denoise_adv.adversarial.universal_job import UniversalConfig
    from cifar_denoise_adv.defense.defend_job import DefendConfig

    mine = {f.name: f for f in dataclasses.fields(DefendConfig)}
    for source, pairs in (
        (
            TargetedConfig,
            {"epsilon": "targeted_epsilon", "num_steps": "targeted_steps"},
        ),
        (UniversalConfig, {"sgd_epochs": "universal_epochs", "xi": "universal_xi"}),
    ):
        theirs = {f.name: f for f in dataclasses.fields(source)}
        for name, defend_name in pairs.items():
            field = mine[defend_name]
            assert field.default == theirs[name].default
            assert theirs[name].metadata["help"] in field.metadata["help"]
            assert f"--{name} of {source.__name__}" in field.metadata["help"]
