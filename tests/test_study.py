"""The study app: a tiny end-to-end study, skip/resume logic, the report's HTML."""

import base64
import html.parser
import json
import os
import pathlib
import time

import pytest
from absl.testing import flagsaver

from cifar_denoise_adv import outputs
from cifar_denoise_adv import report
from cifar_denoise_adv import study
from cifar_denoise_adv import study_job

TINY_STEP_FLAGS = {
    "noise": ["--num_examples=4"],
    "resnet": [
        "--arch=resnet",
        "--num_blocks=1",
        "--filters=4",
        "--downscale=2",
        "--epochs=1",
        "--batch_size=8",
        "--warmup_epochs=0",
        "--num_examples=4",
    ],
    "plain": ["--flagfile={dir}/resnet.cfg", "--arch=plain"],
    "classifier": ["--width=4", "--epochs=1", "--batch_size=8"],
    "fgsm": [
        "--attack=fgsm",
        "--epsilon=0.03",
        "--indices=0,1,2,3",
        "--target_mode=least_likely",
        "--num_examples=4",
    ],
    "iterative": [
        "--flagfile={dir}/fgsm.cfg",
        "--attack=iterative",
        "--num_steps=2",
        "--step_size=0.01",
    ],
    "universal": ["--method=sgd", "--xi=8/255", "--sgd_epochs=1", "--num_examples=4"],
    "universal_deepfool": [
        "--method=deepfool",
        "--xi=8/255",
        "--max_passes=1",
        "--max_iter_deepfool=3",
        "--num_examples=4",
    ],
}


def _write_step_flags(folder, name, lines):
    path = folder / f"{name}.cfg"
    body = "\n".join(line.format(dir=folder) for line in lines)
    path.write_text(f"# app: test. Tiny {name} step.\n{body}\n")
    return str(path)


def _run_study(context, **extra):
    settings = dict(context["flags"], **extra)
    with flagsaver.flagsaver(**settings):
        study.main(["study"])
    study_dir = pathlib.Path(context["flags"]["study_dir"])
    return json.loads((study_dir / "study.json").read_text())


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from tests.conftest import write_cifar

    root = tmp_path_factory.mktemp("study")
    data_dir, _ = write_cifar(root / "data", "python", per_file=4)
    step_dir = root / "step_flags"
    step_dir.mkdir()
    flag_values = {
        f"{name}_flagfile": _write_step_flags(step_dir, name, lines)
        for name, lines in TINY_STEP_FLAGS.items()
    }
    flag_values.update(study_dir=str(root / "study"), data_dir=data_dir)
    context = {"flags": flag_values, "root": root, "step_dir": step_dir}
    context["first"] = _run_study(context)
    return context


def _metrics(study_dir, step):
    return json.loads((pathlib.Path(study_dir) / step / "metrics.json").read_text())


def test_every_step_runs_and_the_report_quotes_its_metrics(tiny_study):
    study_dir = tiny_study["flags"]["study_dir"]
    first = tiny_study["first"]
    assert [s["step"] for s in first["steps"]] == list(TINY_STEP_FLAGS)
    assert {s["status"] for s in first["steps"]} == {"ran"}
    assert first["not_configured"] == ["universal_sweep"]
    md = (pathlib.Path(study_dir) / "report.md").read_text()
    page = (pathlib.Path(study_dir) / "report.html").read_text()

    noise_metrics = _metrics(study_dir, "noise")
    expected = [
        report.db(noise_metrics["psnr_xy_db"]["test"]["clipped"]),
        report.db(noise_metrics["psnr_xy_db"]["test"]["unclipped"]),
        f"{noise_metrics['sigma_calibrated_clipped']:.5f}",
        f"noise seeds train {noise_metrics['noise_seed']['train']}, test "
        f"{noise_metrics['noise_seed']['test']}",
    ]
    for name in ("resnet", "plain"):
        m = _metrics(study_dir, name)
        expected += [report.db(m["psnr_db"][k]) for k in ("recovered", "noisy", "gain")]
        expected.append(f"{m['parameters']:,}")
        expected.append(f"fixed noise (seed {m['test_noise_seed']})")
    classifier = _metrics(study_dir, "classifier")
    expected.append(report.percent(classifier["test_accuracy"]))
    for name in ("fgsm", "iterative"):
        m = _metrics(study_dir, name)
        expected += [
            report.percent(m["targeted_success_rate"]),
            report.percent(m["untargeted_misclassification_rate"]),
            f"{m['linf_norm']['max']:.4f}",
            f"{m['l2_norm']['mean']:.4f}",
        ]
    for name in ("universal", "universal_deepfool"):
        m = _metrics(study_dir, name)
        expected += [
            report.percent(m["fooling_rate_train"]),
            report.percent(m["fooling_rate_test"]),
            f"{m['v_l2']:.4f}",
            # The headline quotes the training-set rate, as the reference does.
            f"{report.percent(m['fooling_rate_train'])} "
            f"({report.percent(m['fooling_rate_test'])})",
        ]
    # The references and the explanation of the differences.
    expected += ["19.997 ± 0.110 dB", "28.430 ± 1.270 dB", "28.170 ± 1.230 dB"]
    expected += [
        "65.17% (training set)",
        "clipping:",
        "data size: 20 train / 4 test images",
    ]
    for text in expected:
        assert text in md, text
        assert html_escape(text) in page, text
    assert "20 train and 4 test images" in md  # data size stated
    assert md.count("| ran |") == len(TINY_STEP_FLAGS)
    assert "![resnet: noisy, recovered, original](resnet/recovery_examples.png)" in md


def html_escape(text):
    import html

    return html.escape(text)


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.attributes = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.append((tag, dict(attrs)))


def test_report_html_is_self_contained(tiny_study):
    study_dir = pathlib.Path(tiny_study["flags"]["study_dir"])
    page = (study_dir / "report.html").read_text()
    parser = _PageParser()
    parser.feed(page)
    images = [attrs for tag, attrs in parser.attributes if tag == "img"]
    # Noise 1, denoisers 2 x 2, classifier 1, attacks 2 x 2, universal 2 x 3.
    assert len(images) == 16
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        assert base64.b64decode(attrs["src"][len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"
        assert attrs.get("alt")
    for tag, attrs in parser.attributes:
        for name in ("src", "href"):
            assert not attrs.get(name, "").startswith(("http:", "https:", "//")), tag
    assert "link" not in parser.tags and "script" not in parser.tags
    assert parser.tags.count("table") >= 8 and parser.tags.count("th") > 20
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_rerun_skips_up_to_date_steps_and_reruns_changed_ones(tiny_study):
    study_dir = pathlib.Path(tiny_study["flags"]["study_dir"])
    before = {p: p.stat().st_mtime_ns for p in study_dir.glob("*/metrics.json")}

    second = _run_study(tiny_study)
    assert {s["status"] for s in second["steps"]} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in before} == before
    md = (study_dir / "report.md").read_text()
    assert md.count("skipped: outputs exist and its flags are unchanged") == len(
        TINY_STEP_FLAGS
    )

    # A new budget for the universal perturbation: only that step reruns.
    universal_file = pathlib.Path(tiny_study["flags"]["universal_flagfile"])
    universal_file.write_text(universal_file.read_text().replace("8/255", "6/255"))
    third = _run_study(tiny_study)
    status = {s["step"]: s["status"] for s in third["steps"]}
    assert status.pop("universal") == "ran"
    assert set(status.values()) == {"skipped"}
    assert _metrics(study_dir, "universal")["settings"]["xi_times_255"] == 6
    assert "| linf 6/255 |" in (study_dir / "report.md").read_text()

    fourth = _run_study(tiny_study, rerun=["noise"])
    status = {s["step"]: s["status"] for s in fourth["steps"]}
    assert status.pop("noise") == "ran" and set(status.values()) == {"skipped"}


def test_a_bad_step_flag_file_names_the_flag(tiny_study, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("--no_such_flag=1\n")
    with (
        pytest.raises(outputs.UserError, match="--noise_flagfile"),
        flagsaver.flagsaver(
            noise_flagfile=str(bad), study_dir=str(tmp_path / "s"), resnet_flagfile=""
        ),
    ):
        study.plans_from_flags()
    with (
        pytest.raises(outputs.UserError, match="no such flag file"),
        flagsaver.flagsaver(noise_flagfile=str(tmp_path / "missing.cfg")),
    ):
        study.plans_from_flags()


# ---------------------------------------------------------------------------
# The skip / resume / force rules with fake steps (no training).


class _FakeStep:
    """A step that writes metrics.json, counts its runs, and can be interrupted."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.calls = 0
        self.interrupt = False

    def __call__(self):
        self.calls += 1
        partial = os.path.join(self.run_dir, "partial.txt")
        with open(partial, "a") as f:
            f.write("epoch\n")
        if self.interrupt:
            raise KeyboardInterrupt
        # Like a real job's metrics.json, different on every run (its time).
        outputs.write_json(
            os.path.join(self.run_dir, "metrics.json"), {"time": time.time_ns()}
        )
        return {}


def _fake_plans(study_dir, settings):
    plans, fakes = [], {}
    for name in ("classifier", "fgsm"):
        step = next(s for s in study_job.STEPS if s.name == name)
        run_dir = os.path.join(study_dir, name)
        fakes[name] = fakes.get(name) or _FakeStep(run_dir)
        plans.append(
            study_job.Plan(step, f"{name}.cfg", run_dir, settings[name], fakes[name])
        )
    return plans, fakes


def _statuses(record):
    return {s["step"]: s["status"] for s in record["steps"]}


def test_skip_resume_force_and_dependencies(tmp_path, monkeypatch):
    monkeypatch.setattr(
        study_job.report, "write", lambda study_dir: {"md": "", "html": ""}
    )
    study_dir = str(tmp_path)
    settings = {"classifier": {"epochs": 1}, "fgsm": {"eps": 0.1}}
    plans, fakes = _fake_plans(study_dir, settings)
    run = study_job.run
    assert set(_statuses(run(plans, study_dir=study_dir)).values()) == {"ran"}
    assert set(_statuses(run(plans, study_dir=study_dir)).values()) == {"skipped"}
    assert _statuses(run(plans, study_dir=study_dir, force=True)) == {
        "classifier": "ran",
        "fgsm": "ran",
    }
    # A fresh run starts from an empty folder.
    assert (tmp_path / "fgsm" / "partial.txt").read_text() == "epoch\n"

    # Interrupted: the same settings continue in the same folder.
    fakes["fgsm"].interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run(plans, study_dir=study_dir, force={"fgsm"})
    assert study_job.read_record(str(tmp_path / "fgsm"))["state"] == "running"
    fakes["fgsm"].interrupt = False
    assert _statuses(run(plans, study_dir=study_dir))["fgsm"] == "resumed"
    assert (tmp_path / "fgsm" / "partial.txt").read_text() == "epoch\n" * 2

    # New classifier settings: the classifier reruns, and so does the attack
    # on it (its fingerprint holds the classifier's metrics.json digest).
    settings["classifier"] = {"epochs": 2}
    plans, _ = _fake_plans(study_dir, settings)
    assert set(_statuses(run(plans, study_dir=study_dir)).values()) == {"ran"}

    with pytest.raises(outputs.UserError, match="--rerun"):
        run(plans, study_dir=study_dir, force={"nonsense"})


def test_reference_notes_agree_or_say_why():
    noise_metrics = {
        "psnr_xy_db": {
            "test": {
                "clipped": {"mean": 20.33, "std": 0.35},
                "unclipped": {"mean": 19.999, "std": 0.108},
            }
        },
        "sigma_used": 0.1,
        "images": {"train": 50000, "test": 10000},
    }
    assert report._noise_reference_note(noise_metrics, clipped=False).startswith(
        "agrees"
    )
    assert report._noise_reference_note(noise_metrics, clipped=True).startswith(
        "clipping:"
    )
    config = {
        "arch": "resnet",
        "num_blocks": 8,
        "filters": 64,
        "downscale": 1,
        "epochs": 100,
        "learning_rate": 1e-3,
        "warmup_epochs": 0.5,
        "clipnorm": 1.0,
        "batch_size": 64,
        "augment": True,
        "seed": 0,
    }
    denoiser = {
        "config": config,
        "images": {"train": 50000, "test": 10000},
        "sigma": 0.1,
        "psnr_db": {"recovered": {"mean": 28.40}, "noisy": {"mean": 19.99}},
        "parameters": 10,
        "test_noise_seed": 1,
        "initialised_from": {"run": "/r/a", "epochs": 28, "train_seconds": 1800},
    }
    assert report._denoiser_reference_note("resnet", denoiser).startswith("agrees")
    denoiser["config"] = dict(config, epochs=28)
    denoiser["psnr_db"]["recovered"]["mean"] = 27.9
    assert "budget: 8 blocks x 64" in report._denoiser_reference_note(
        "resnet", denoiser
    )
    assert "(--init_from: 28 earlier epochs, 30.0 min)" in (
        report._denoiser_settings(denoiser)
    )
    universal = {
        "method": "deepfool",
        "settings": {"norm": "linf", "xi_times_255": 10.0},
        "images": {"train": 50000, "test": 10000},
        "fooling_rate_train": 0.66,
        "fooling_rate_test": 0.80,
    }
    # The reference's 65.17% is a training-set rate: the note compares it
    # with ours on the training images, not with the test-set rate.
    assert report._universal_reference_note(universal, None).startswith("agrees")
    universal["fooling_rate_train"] = 0.40
    assert "budget: linf xi = 10/255" in report._universal_reference_note(
        universal, None
    )


def test_sweep_table_and_minutes_count_reused_runs():
    sweep = {
        "xi": [2 / 255, 8 / 255],
        "norm": "linf",
        "level": 0.6517,
        "deepfool": {
            "train": [0.0, 0.5],
            "test": [0.1, 0.6],
            "seconds": [120.0, 60.0],
            "xi_reaching_level_train": None,
        },
        "sgd": {
            "train": [0.2, 0.9],
            "test": [0.3, 0.8],
            "seconds": [30.0, 30.0],
            "xi_reaching_level_train": 6 / 255,
        },
        "random": {"train": [0.0, 0.01], "test": [0.02, 0.1]},
    }
    kind, header, rows = report._sweep_table(sweep)
    assert kind == "table" and header == ["linf xi x 255", "2", "8"]
    assert ["sgd, train", "20.00%", "90.00%"] in rows
    assert ["random noise, test", "2.00%", "10.00%"] in rows
    assert ["deepfool, minutes", "2.0", "1.0"] in rows
    # The runs table counts the sweep's reused runs (sweep.json's
    # compute_seconds: 240 s), not the few seconds its last invocation took.
    sweep["compute_seconds"] = 240.0
    study = {
        "steps": [
            {
                "step": "universal_sweep",
                "app": "universal",
                "flagfile": "f.cfg",
                "status": "skipped",
            }
        ],
        "by_step": {"universal_sweep": {"record": {"seconds": 3.0}, "metrics": sweep}},
        "invocation_seconds": 3.0,
    }
    _, (_, _, rows), (_, items) = report._details_section(study)
    assert rows[0][0] == "universal_sweep" and rows[0][-1] == "4.0"
    assert "Total minutes of the steps (their last runs): 4.0; " in " ".join(items)
    text = report._sweep_budgets(sweep)
    assert "deepfool not within xi <= 8/255" in text and "sgd at xi = 6.00/255" in text
    sweep["images"] = {"train": 1000, "test": 768}
    assert report._sweep_budgets(sweep).startswith(
        "Sweep (v computed on 1000 training images; rates also on 768 test images):"
    )
