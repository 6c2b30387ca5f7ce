"""The study: every job of the two studies in order, resumable, then the report.

`run_study(config)` reads each step's flag file through its app's own
parser (`App.parse_flagfile`), with the step's folder `study_dir/<step>`,
the study's data and, for the attacks, the study's classifier on top; then
`run(plans, ...)` runs the jobs one after the other and writes `report.md`
and `report.html` (see `study.report`).

Skipping and resuming. Each step's settings (its job config, the data
source and the metrics of the steps it depends on) are its *fingerprint*.
A step records `study_step.json` in its run folder: `"state": "running"`
with the fingerprint before it starts and `"state": "done"` when it has
written its results. Then, on the next invocation:

- done, same fingerprint, results present: skipped;
- running, same fingerprint (the study was interrupted in this step):
  run again in the same folder, so a training job continues from its last
  completed epoch (`run_dir/backup`);
- anything else (new settings, forced): the folder, which the study made,
  is emptied and the step runs from scratch, so no output of other
  settings survives.

The study only deletes what it made. A step folder without the study's
record (a run of the user's, say `runs/classifier` under
`--study_dir=runs`) is never emptied: the study stops before running
anything, with one line naming the folder; with --force it moves that
folder aside (`<step>.moved-<time>`), untouched, and runs the step in a new
one. An empty folder is used as it is. The study holds an OS lock on
--study_dir while it runs (`core.runs.hold`), and each job its own on its
step folder.

A step that depends on another (the attacks on the classifier) has the
other's metrics.json in its fingerprint, so a retrained classifier makes
every attack rerun.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence

from cifar_denoise_adv import classify
from cifar_denoise_adv import defend
from cifar_denoise_adv import denoise
from cifar_denoise_adv import noise
from cifar_denoise_adv import sweep
from cifar_denoise_adv import targeted
from cifar_denoise_adv import universal
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import runs
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.study import folders
from cifar_denoise_adv.study import report
from cifar_denoise_adv.study import step_configs
from cifar_denoise_adv.study import timing

RECORD_FILE = "study_step.json"
STUDY_FILE = "study.json"


@dataclasses.dataclass(frozen=True)
class Step:
    """One job of the study: its name (= its folder) and the app that runs it."""

    name: str
    app: str
    question: str
    needs: tuple[str, ...] = ()
    result_file: str = "metrics.json"


# In the order they run; the attacks need the classifier, the defense needs
# the classifier and the ResNet denoiser.
STEPS = (
    Step("noise", "noise", "noise"),
    Step("resnet", "denoise", "denoisers"),
    Step("plain", "denoise", "denoisers"),
    Step("classifier", "classify", "classifier"),
    Step("fgsm", "targeted", "targeted", needs=("classifier",)),
    Step("iterative", "targeted", "targeted", needs=("classifier",)),
    Step("universal", "universal", "universal", needs=("classifier",)),
    Step("universal_deepfool", "universal", "universal", needs=("classifier",)),
    Step(
        "universal_sweep",
        "sweep",
        "universal",
        needs=("classifier",),
        result_file="sweep.json",
    ),
    Step("defend", "defend", "defense", needs=("classifier", "resnet")),
)
STEP_NAMES = tuple(step.name for step in STEPS)
APPS = {
    app.name: app
    for app in (
        noise.APP,
        denoise.APP,
        classify.APP,
        targeted.APP,
        universal.APP,
        sweep.APP,
        defend.APP,
    )
}


@dataclasses.dataclass(frozen=True)
class StudyConfig(config_lib.Config):
    """The study's settings (the `study` app's flags): one flag file per step."""

    study_dir: str = setting(
        "runs/study",
        "The study's folder; step <name> runs in <name>/.",
        path=True,
        defines_result=False,
    )
    data_dir: str = setting(
        "",
        "Local copy of CIFAR-10 for every step (see the apps' --data_dir). "
        f"Empty: ${config_lib.ENV_DATA_DIR} if set, else TFDS cifar10.",
        path=True,
    )
    # Step flag files are found as --flagfile= is (the working folder, then
    # the installed flags/), so they are not `path` settings: resolve() would
    # pin them to the working folder.
    noise_flagfile: str = setting("", "Flag file of the noise step.")
    resnet_flagfile: str = setting("", "Flag file of the ResNet denoiser step.")
    plain_flagfile: str = setting("", "Flag file of the plain denoiser step.")
    classifier_flagfile: str = setting("", "Flag file of the classifier step.")
    fgsm_flagfile: str = setting("", "Flag file of the targeted FGSM step.")
    iterative_flagfile: str = setting("", "Flag file of the targeted iterative step.")
    universal_flagfile: str = setting("", "Flag file of the universal (sgd) step.")
    universal_deepfool_flagfile: str = setting(
        "", "Flag file of the universal (DeepFool loop) step."
    )
    universal_sweep_flagfile: str = setting(
        "", "Flag file of the fooling-rate sweep step (the sweep app's)."
    )
    defend_flagfile: str = setting(
        "", "Flag file of the defense step (the ResNet denoiser before the classifier)."
    )
    precision: str = setting(
        precision.AUTO,
        "Each step's --precision, unless its flag file sets one. "
        + precision.CHOICE_HELP,
        choices=precision.CHOICES,
    )
    step_flags: tuple[str, ...] = setting(
        (),
        "NAME=VALUE flags for every step whose app has --NAME, after its flag "
        "file (e.g. epochs=1,max_train_images=64 for a quick trial).",
    )
    estimate: bool = setting(
        True,
        "Print each step's expected minutes on this machine (timed here) "
        "before the first, and the minutes left after each.",
        defines_result=False,
    )
    force: bool = setting(False, "Rerun every step, even up-to-date ones.")
    rerun: tuple[str, ...] = setting(
        (),
        "Steps to rerun even if up to date.",
        choices=STEP_NAMES,
    )

    def flagfile(self, step: Step) -> str:
        """The step's flag file ('' when the step is left out)."""
        return getattr(self, f"{step.name}_flagfile")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A configured step: where it runs, with what settings, and how.

    Attributes:
      step: the `Step`.
      flagfile: the step's flag file (for the report).
      run_dir: its folder, `study_dir/<step name>`.
      settings: JSON-able settings that define the result (job config, data).
      execute: runs the step's app code with its flags; returns its results.
      config: the step's job config (for the time estimate), if known.
    """

    step: Step
    flagfile: str
    run_dir: str
    settings: dict
    execute: Callable[[], dict]
    config: object = None


def fingerprint(plan: Plan, plans_by_name: dict[str, Plan]) -> dict:
    """What must be unchanged for the step's earlier result to stand."""
    upstream = {}
    for name in plan.step.needs:
        if name in plans_by_name:
            other = plans_by_name[name]
            upstream[name] = outputs.file_sha256(
                os.path.join(other.run_dir, other.step.result_file)
            )
    return outputs.normalized(
        {"app": plan.step.app, "settings": plan.settings, "upstream": upstream}
    )


def read_record(run_dir: str) -> dict | None:
    """The step's study_step.json, or None if missing or unreadable."""
    path = os.path.join(run_dir, RECORD_FILE)
    try:
        return outputs.read_json(path)
    except UserError:
        return None


def decide(plan: Plan, current: dict, forced: bool) -> str:
    """'skip', 'resume' or 'fresh' for a step (see the module docstring)."""
    if forced:
        return "fresh"
    record = read_record(plan.run_dir)
    if not record or record.get("fingerprint") != current:
        return "fresh"
    if record.get("state") == "running":
        return "resume"
    result = os.path.join(plan.run_dir, plan.step.result_file)
    if record.get("state") == "done" and os.path.isfile(result):
        return "skip"
    return "fresh"


def run_step(plan: Plan, current: dict, action: str, study_dir: str, log) -> dict:
    """Runs one step (fresh or resumed) with its record kept up to date.

    A fresh step empties its folder only if the study made it (its record
    is there); a folder the study did not make is moved aside whole.
    """
    if action == "fresh" and folders.not_made_by_study(plan.run_dir, RECORD_FILE):
        folders.move_aside(plan.run_dir, log)
    elif action == "fresh" and os.path.isdir(plan.run_dir):
        folders.empty(plan.run_dir, study_dir)
    outputs.make_run_dir(plan.run_dir)
    record_path = os.path.join(plan.run_dir, RECORD_FILE)
    record = {"step": plan.step.name, "flagfile": plan.flagfile}
    outputs.write_json(
        record_path, {**record, "state": "running", "fingerprint": current}
    )
    start = time.time()
    plan.execute()
    seconds = time.time() - start
    outputs.write_json(
        record_path,
        {
            **record,
            "state": "done",
            "fingerprint": current,
            "seconds": seconds,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    log(f"study: {plan.step.name} done in {seconds / 60:.1f} min")
    return {"seconds": seconds}


def run(
    plans: Sequence[Plan],
    *,
    study_dir: str,
    force: bool | Collection[str] = False,
    data_source: str = "",
    log: Callable[[str], None] = lambda message: None,
    estimator: Callable | None = None,
) -> dict:
    """Runs the planned steps in order (skipping the up-to-date ones), reports.

    Args:
      plans: the configured steps, in `STEPS` order.
      study_dir: the study's folder; each step's run folder is inside it.
      force: True reruns every step; a collection of names reruns those.
      data_source: how the data was chosen, for the report.
      log: receives progress lines.
      estimator: plan -> `estimate.Estimate` or None: logs the plan's
        minutes first and the minutes left after each step (`timing`).

    Returns:
      The study record written to study_dir/study.json (steps with their
      status: ran, resumed or skipped, and seconds).
    """
    with runs.hold(study_dir, "study_dir") as folder:
        return _run(plans, folder, force, data_source, log, estimator)


def _run(plans, study_dir: str, force, data_source: str, log, estimator) -> dict:
    start = time.time()
    by_name = {plan.step.name: plan for plan in plans}

    def forced(name: str) -> bool:
        return force is True or (not isinstance(force, bool) and name in force)

    folders.check(
        [plan.run_dir for plan in plans if not forced(plan.step.name)],
        study_dir,
        RECORD_FILE,
    )
    to_run = timing.to_run(
        plans, lambda p: decide(p, fingerprint(p, by_name), forced(p.step.name))
    )
    clock = timing.Clock(plans, to_run, estimator, log)
    statuses = []
    for plan in plans:
        current = fingerprint(plan, by_name)
        action = decide(plan, current, forced(plan.step.name))
        log(f"study: {plan.step.name} ({plan.flagfile}): {action}")
        entry = {
            "step": plan.step.name,
            "app": plan.step.app,
            "question": plan.step.question,
            "flagfile": plan.flagfile,
            "run_dir": os.path.relpath(plan.run_dir, study_dir),
            "status": {"skip": "skipped", "resume": "resumed", "fresh": "ran"}[action],
            "forced": forced(plan.step.name),
            "seconds_this_invocation": 0.0,
        }
        if action != "skip":
            entry["seconds_this_invocation"] = run_step(
                plan, current, action, study_dir, log
            )["seconds"]
            clock.step_done(plan.step.name, entry["seconds_this_invocation"])
        statuses.append(entry)
    study = {
        "study_dir": study_dir,
        "data_source": data_source,
        "steps": statuses,
        "not_configured": [n for n in STEP_NAMES if n not in by_name],
        "invocation_seconds": time.time() - start,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    outputs.write_json(os.path.join(study_dir, STUDY_FILE), study)
    paths = report.write(study_dir)
    log(f"study: wrote {paths['md']} and {paths['html']}")
    return study


def plans(config: StudyConfig, log) -> list[Plan]:
    """The configured steps, in order, each with its job's config.

    A step's config is its flag file read by its app's own parser, with
    the flags of `step_configs.overrides` on top; a bad flag file stops the
    study with one line naming it.
    """
    configured = [step for step in STEPS if config.flagfile(step)]
    step_flags = step_configs.parse(config, configured, APPS)
    result = []
    for step in configured:
        flagfile = config.flagfile(step)
        flag = f"{step.name}_flagfile={flagfile}"
        app = APPS[step.app]
        try:
            overrides = step_configs.overrides(config, step, step_flags, APPS)
            job_config = config_lib.resolve(app.parse_flagfile(flagfile, overrides))
        except UserError as error:
            raise UserError(f"--{flag}: {error}") from None
        step_configs.check(step, job_config, flag)
        settings = {"config": config_lib.identity(job_config)}
        execute = functools.partial(app.job, job_config, log)
        result.append(
            Plan(step, flagfile, overrides["run_dir"], settings, execute, job_config)
        )
    return result


def run_study(config: StudyConfig, log=lambda message: None) -> dict:
    """The `study` app's job: plans every configured step and runs them.

    Returns:
      The study record (see `run`).
    """
    config = config_lib.resolve(config)
    configured = plans(config, log)
    if not configured:
        raise UserError(
            "no step configured: give at least one --<step>_flagfile "
            "(see flags/study.cfg)."
        )
    return run(
        configured,
        study_dir=config.study_dir,
        force=True if config.force else set(config.rerun),
        data_source=f"local copy {config.data_dir}"
        if config.data_dir
        else "TFDS cifar10",
        log=log,
        estimator=timing.estimator(configured, config.data_dir)
        if config.estimate
        else None,
    )
