"""The study app: a tiny end-to-end study, skip/resume logic, the report's HTML."""

import base64
import dataclasses
import html.parser
import json
import os
import pathlib
import re
import time

import pytest

from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.study import __main__ as study
from cifar_denoise_adv.study import plan
from tests.conftest import write_cifar

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
        "--validation_images=4",
    ],
    "plain": ["--flagfile={dir}/resnet.cfg", "--arch=plain"],
    "classifier": [
        "--width=4",
        "--epochs=1",
        "--batch_size=8",
        "--learning_rate=1e-3",
        "--warmup_epochs=0.5",
        "--validation_images=4",
    ],
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
    "defend": [
        "--num_images=4",
        "--epsilons=2/255,8/255",
        "--reference_epsilon=8/255",
        "--pgd_steps=2",
        "--eot_draws=2",
        "--eval_draws=2",
        "--targeted_steps=2",
        "--universal_train_images=8",
        "--universal_epochs=1",
        "--universal_batch_size=8",
        "--square_queries=3",
        "--square_images=2",
        "--batch_size=8",
        "--num_examples=2",
    ],
}


def _write_step_flags(folder, name, lines):
    path = folder / f"{name}.cfg"
    body = "\n".join(line.format(dir=folder) for line in lines)
    app = next(step.app for step in plan.STEPS if step.name == name)
    path.write_text(f"# app: {app}. Tiny {name} step.\n{body}\n")
    return str(path)


def _run_study(context, *extra):
    # Through the study app's own flags, as on the command line.
    argv = ["study"] + [f"--{name}={value}" for name, value in context["flags"].items()]
    context["lines"] = []
    study.APP.job(study.APP.parse([*argv, *extra]), log=context["lines"].append)
    study_dir = pathlib.Path(context["flags"]["study_dir"])
    return json.loads((study_dir / "study.json").read_text())


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
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
    context["first_lines"] = context["lines"]
    return context


def test_the_study_prints_its_plan_and_the_minutes_left(tiny_study):
    lines = tiny_study["first_lines"]
    start = lines.index(
        "study: plan on this machine (expected minutes, from a few timed steps "
        "of each model here):"
    )
    steps = list(TINY_STEP_FLAGS)
    planned = lines[start + 1 : start + 2 + len(steps)]
    for name, line in zip([*steps, "all"], planned, strict=True):
        assert re.fullmatch(rf"  {name} +\d+\.\d min(  \(.+\))?", line), line
    # Each estimate says how it was reckoned, at this machine's precision.
    assert re.search(
        r"\(1 epochs x \d+ images at \d+ denoiser training images/s, \w+\)",
        planned[steps.index("resnet")],
    )
    assert "not estimated" not in "\n".join(planned)
    # The plan comes before the first step runs.
    first_step = next(i for i, x in enumerate(lines) if x.startswith("study: noise ("))
    assert start < first_step
    left = [line for line in lines if line.startswith("study: about ")]
    assert len(left) == len(steps) - 1  # none after the last step
    for count, line in zip(range(len(steps) - 1, 0, -1), left, strict=True):
        assert re.fullmatch(
            rf"study: about \d+\.\d minutes left \({count} steps?; the estimates "
            r"x\d+\.\d\d, the ratio of the time taken so far to its estimate\)",
            line,
        ), line


def _db(stats):
    """'28.430 ± 1.270 dB': three decimals, the std after ±."""
    return f"{stats['mean']:.3f} ± {stats['std']:.3f} dB"


def _percent(rate):
    """'65.17%': two decimals."""
    return f"{100 * rate:.2f}%"


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

    # Each figure in the format the report promises, spelled out here rather
    # than made by the report's own formatters.
    noise_metrics = _metrics(study_dir, "noise")
    expected = [
        _db(noise_metrics["psnr_xy_db"]["test"]["clipped"]),
        _db(noise_metrics["psnr_xy_db"]["test"]["unclipped"]),
        f"{noise_metrics['sigma_calibrated_clipped']:.5f}",
        f"noise seeds train {noise_metrics['noise_seed']['train']}, test "
        f"{noise_metrics['noise_seed']['test']}",
    ]
    for name in ("resnet", "plain"):
        m = _metrics(study_dir, name)
        expected += [_db(m["psnr_db"][k]) for k in ("recovered", "noisy", "gain")]
        expected.append(f"{m['parameters']:,}")
        expected.append(f"fixed noise (seed {m['test_noise_seed']})")
    classifier = _metrics(study_dir, "classifier")
    expected.append(_percent(classifier["test_accuracy"]))
    for name in ("fgsm", "iterative"):
        m = _metrics(study_dir, name)
        expected += [
            _percent(m["targeted_success_rate"]),
            _percent(m["untargeted_misclassification_rate"]),
            f"{m['linf_norm']['max']:.4f}",
            f"{m['l2_norm']['mean']:.4f}",
        ]
    for name in ("universal", "universal_deepfool"):
        m = _metrics(study_dir, name)
        expected += [
            _percent(m["fooling_rate_train"]),
            _percent(m["fooling_rate_test"]),
            # The headline quotes the unseen test images' rate, the training
            # images' rate beside it.
            f"{_percent(m['fooling_rate_test'])} ({_percent(m['fooling_rate_train'])})",
            f"chessboard {_percent(m['chessboard_fooling_rate_test'])}",
        ]
    defend = _metrics(study_dir, "defend")
    rows = {
        (r["pipeline"], r["threat_model"], r["attack"], r["epsilon"]): r
        for r in defend["rows"]
    }
    adaptive = rows[("denoised", "adaptive", "pgd", 8 / 255)]["accuracy"]
    oblivious = rows[("denoised", "oblivious", "pgd", 8 / 255)]["accuracy"]
    bare = rows[("classifier", "white-box", "pgd", 8 / 255)]["accuracy"]
    expected += [
        "6. The denoiser as a defense",
        f"{_percent(adaptive)} ({_percent(oblivious)}; {_percent(bare)})",
        "What the defense does and does not buy",
        # Two PGD steps are too few: the failed check is a warning.
        "WARNING: check 'attack settings' failed",
    ]
    # Every step's warnings, as its metrics.json has them (the tiny
    # classifier is about at chance: the attacks on it warn so).
    warned = [
        f"{step}: {line}"
        for step in TINY_STEP_FLAGS
        for line in _metrics(study_dir, step).get("warnings", [])
    ]
    assert any(w.startswith("fgsm: the classifier is right on only") for w in warned)
    expected += warned
    assert defend["classifier"] == os.path.join(study_dir, "classifier")
    assert defend["denoiser"] == os.path.join(study_dir, "resnet")
    # The references and the explanation of the differences.
    expected += ["19.997 ± 0.110 dB", "28.430 ± 1.270 dB", "28.170 ± 1.230 dB"]
    expected += [
        "65.17% (training set)",
        "clipping:",
        "data size: 16 train / 4 test images",
    ]
    # In the HTML, numeric cells join their words with no-break spaces.
    shown = page.replace("\u00a0", " ")
    for text in expected:
        assert text in md, text
        assert html_escape(text) in shown, text
    assert "\n## Warnings\n" in md and "<h2>Warnings</h2>" in page
    assert "20 train and 4 test images" in md  # data size stated (noise step)
    # The denoisers' validation curves and their gap at equal budgets.
    assert (pathlib.Path(study_dir) / "denoisers_validation.png").stat().st_size
    assert "Validation PSNR, ResNet - plain (held-out training images" in md
    assert "![validation PSNR against epochs" in md
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
    # Noise 1, denoisers 2 x 2, classifier 1, attacks 2 x 2, universal 2 x 3,
    # the denoisers' validation curves 1, defense 2.
    assert len(images) == 19
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
    rerun = {"universal", "noise"}
    unchanged = {p: t for p, t in before.items() if p.parent.name not in rerun}
    assert len(unchanged) == len(TINY_STEP_FLAGS) - len(rerun)

    # One rerun: a new budget for the universal perturbation (its flag file
    # changed) and --rerun=noise (unchanged, forced); the rest is up to date.
    universal_file = pathlib.Path(tiny_study["flags"]["universal_flagfile"])
    universal_file.write_text(universal_file.read_text().replace("8/255", "6/255"))
    second = _run_study(tiny_study, "--rerun=noise")
    status = {s["step"]: s["status"] for s in second["steps"]}
    assert status.pop("universal") == "ran"
    assert status.pop("noise") == "ran"
    assert set(status.values()) == {"skipped"}
    # Skipped steps were not touched; the rerun ones wrote new results.
    assert {p: p.stat().st_mtime_ns for p in unchanged} == unchanged
    for name in rerun:
        path = study_dir / name / "metrics.json"
        assert path.stat().st_mtime_ns != before[path], name
    assert _metrics(study_dir, "universal")["settings"]["xi_times_255"] == 6
    md = (study_dir / "report.md").read_text()
    assert md.count("skipped: outputs exist and its flags are unchanged") == len(
        TINY_STEP_FLAGS
    ) - len(rerun)
    assert md.count("| ran |") == len(rerun)
    assert "| linf 6/255 |" in md


def test_a_bad_step_flag_file_names_the_flag(tiny_study, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("--no_such_flag=1\n")
    config = plan.StudyConfig(noise_flagfile=str(bad), study_dir=str(tmp_path / "s"))
    with pytest.raises(UserError, match="--noise_flagfile.*--no_such_flag"):
        plan.plans(config, log=lambda message: None)
    config = plan.StudyConfig(noise_flagfile=str(tmp_path / "missing.cfg"))
    with pytest.raises(UserError, match="no such flag file"):
        plan.plans(config, log=lambda message: None)
    # An attack step needs a classifier: the study's classifier step, or its own.
    fgsm = tmp_path / "fgsm.cfg"
    fgsm.write_text("--attack=fgsm\n")
    config = plan.StudyConfig(fgsm_flagfile=str(fgsm), study_dir=str(tmp_path / "s"))
    with pytest.raises(UserError, match="--fgsm_flagfile.*no --classifier"):
        plan.plans(config, log=lambda message: None)
    defend = tmp_path / "defend.cfg"
    defend.write_text("--classifier=somewhere\n")
    config = plan.StudyConfig(defend_flagfile=str(defend), study_dir=str(tmp_path))
    with pytest.raises(UserError, match="--defend_flagfile.*no --denoiser"):
        plan.plans(config, log=lambda message: None)
    with pytest.raises(UserError, match="no step configured"):
        plan.run_study(plan.StudyConfig(study_dir=str(tmp_path / "s")))


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
        step = next(s for s in plan.STEPS if s.name == name)
        run_dir = os.path.join(study_dir, name)
        fakes[name] = fakes.get(name) or _FakeStep(run_dir)
        plans.append(
            plan.Plan(step, f"{name}.cfg", run_dir, settings[name], fakes[name])
        )
    return plans, fakes


def _statuses(record):
    return {s["step"]: s["status"] for s in record["steps"]}


def test_skip_resume_force_and_dependencies(tmp_path, monkeypatch):
    monkeypatch.setattr(plan.report, "write", lambda study_dir: {"md": "", "html": ""})
    study_dir = str(tmp_path)
    settings = {"classifier": {"epochs": 1}, "fgsm": {"eps": 0.1}}
    plans, fakes = _fake_plans(study_dir, settings)
    run = plan.run
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
    assert plan.read_record(str(tmp_path / "fgsm"))["state"] == "running"
    fakes["fgsm"].interrupt = False
    assert _statuses(run(plans, study_dir=study_dir))["fgsm"] == "resumed"
    assert (tmp_path / "fgsm" / "partial.txt").read_text() == "epoch\n" * 2

    # New classifier settings: the classifier reruns, and so does the attack
    # on it (its fingerprint holds the classifier's metrics.json digest).
    settings["classifier"] = {"epochs": 2}
    plans, _ = _fake_plans(study_dir, settings)
    assert set(_statuses(run(plans, study_dir=study_dir)).values()) == {"ran"}

    # Unknown step names are refused when the study's config is made.
    with pytest.raises(UserError, match="--rerun"):
        plan.StudyConfig(rerun=("classifier", "nonsense"))


def _tree(folder):
    return {
        os.path.relpath(os.path.join(root, name), folder): open(
            os.path.join(root, name), "rb"
        ).read()
        for root, _, names in os.walk(folder)
        for name in names
    }


def test_a_folder_the_study_did_not_make_is_kept_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(plan.report, "write", lambda study_dir: {"md": "", "html": ""})
    study_dir = str(tmp_path)
    mine = tmp_path / "classifier"  # a run of the user's: runs/classifier
    (mine / "backup").mkdir(parents=True)
    (mine / "notes.md").write_bytes(b"my notes\x00\xff")
    (mine / "model.keras").write_bytes(b"weights")
    (mine / "backup" / "training_metadata.json").write_text('{"epoch": 3}')
    before = _tree(mine)
    settings = {"classifier": {"epochs": 1}, "fgsm": {"eps": 0.1}}
    plans, fakes = _fake_plans(study_dir, settings)

    with pytest.raises(UserError) as error:
        plan.run(plans, study_dir=study_dir)
    message = str(error.value)
    assert "\n" not in message and str(mine) in message
    assert "was not made by the study" in message and "--force" in message
    assert _tree(mine) == before
    assert fakes["classifier"].calls == fakes["fgsm"].calls == 0  # nothing ran
    assert os.listdir(tmp_path) == ["classifier"]  # not even a lock file

    # --force moves it aside, untouched, and runs the step in a new folder.
    record = plan.run(plans, study_dir=study_dir, force=True)
    assert set(_statuses(record).values()) == {"ran"}
    moved = [n for n in os.listdir(tmp_path) if n.startswith("classifier.moved-")]
    assert len(moved) == 1 and _tree(tmp_path / moved[0]) == before
    assert plan.read_record(str(mine))["state"] == "done"


def test_an_empty_step_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(plan.report, "write", lambda study_dir: {"md": "", "html": ""})
    (tmp_path / "classifier").mkdir()
    settings = {"classifier": {"epochs": 1}, "fgsm": {"eps": 0.1}}
    plans, _ = _fake_plans(str(tmp_path), settings)
    assert set(_statuses(plan.run(plans, study_dir=str(tmp_path))).values()) == {"ran"}


def _step_flagfile(folder, name, *lines):
    path = folder / f"{name}.cfg"
    # No "# app:" first line: any step's app reads it.
    path.write_text("\n".join(["# a step of the test.", *lines]) + "\n")
    return str(path)


def test_the_studys_precision_reaches_steps_whose_flag_file_sets_none(tmp_path):
    config = plan.StudyConfig(
        study_dir=str(tmp_path / "study"),
        precision="float32",
        noise_flagfile=_step_flagfile(tmp_path, "noise", "--sigma=0.1"),
        resnet_flagfile=_step_flagfile(tmp_path, "resnet", "--epochs=2"),
        # Set by an included file: the step keeps it.
        plain_flagfile=_step_flagfile(
            tmp_path, "plain", f"--flagfile={tmp_path}/pinned.cfg", "--arch=plain"
        ),
        classifier_flagfile=_step_flagfile(tmp_path, "classifier", "--epochs=1"),
        fgsm_flagfile=_step_flagfile(tmp_path, "fgsm", "--precision=auto"),
    )
    _step_flagfile(tmp_path, "pinned", "--precision=auto")
    configs = {p.step.name: p.config for p in plan.plans(config, log=print)}
    assert not hasattr(configs["noise"], "precision")
    assert configs["resnet"].precision == "float32"
    assert configs["classifier"].precision == "float32"
    assert configs["plain"].precision == "auto"
    assert configs["fgsm"].precision == "auto"
    # The default: auto everywhere.
    default = plan.plans(dataclasses.replace(config, precision="auto"), log=print)
    assert {p.config.precision for p in default if p.step.name != "noise"} == {"auto"}


def test_step_flags_reach_every_step_that_has_the_flag(tmp_path):
    config = plan.StudyConfig(
        study_dir=str(tmp_path / "study"),
        resnet_flagfile=_step_flagfile(tmp_path, "resnet", "--epochs=20"),
        classifier_flagfile=_step_flagfile(tmp_path, "classifier", "--epochs=30"),
        fgsm_flagfile=_step_flagfile(tmp_path, "fgsm", "--num_images=400"),
        step_flags=("epochs=1", "max_train_images=256", "num_images=8"),
    )
    configs = {p.step.name: p.config for p in plan.plans(config, log=print)}
    assert configs["resnet"].epochs == configs["classifier"].epochs == 1
    assert configs["resnet"].max_train_images == 256
    assert configs["fgsm"].num_images == 8
    # Each bad entry: one line naming --step_flags.
    for entry, expected in (
        ("epochs", "expected NAME=VALUE"),
        ("run_dir=x", "the study sets --run_dir of each step itself"),
        ("sweep_xi=0.1", "--sweep_xi is a flag of none of the configured"),
        ("epochs=0", "--epochs"),
    ):
        bad = dataclasses.replace(config, step_flags=(entry,))
        with pytest.raises(UserError, match=expected) as error:
            plan.plans(bad, log=print)
        assert "\n" not in str(error.value)
