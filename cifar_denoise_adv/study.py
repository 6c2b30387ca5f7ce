"""The `study` app: every job of the two studies in order, then one report.

Usage:
  python -m cifar_denoise_adv.study --flagfile=flags/study_cpu.cfg \
      --data_dir=path/to/cifar-10-batches-py

The study's flag file names one flag file per step (--noise_flagfile,
--resnet_flagfile, ..., an empty value leaves the step out). Each step is
its app's own code (`config_from_flags`, `run_from_flags`) run with that
flag file, with --run_dir set to --study_dir/<step>, --data_dir to the
study's, and --classifier (attacks) to the study's classifier run. A step
whose outputs exist and whose settings are unchanged is skipped; an
interrupted study continues the interrupted step; --force reruns every step,
--rerun=fgsm,universal the named ones. Writes report.md and report.html
(figures embedded) into --study_dir.
"""

import contextlib
import dataclasses
import os

from absl import app
from absl import flags
from absl.testing import flagsaver

from cifar_denoise_adv import classify
from cifar_denoise_adv import common_flags
from cifar_denoise_adv import denoise
from cifar_denoise_adv import noise
from cifar_denoise_adv import outputs
from cifar_denoise_adv import study_job
from cifar_denoise_adv import targeted
from cifar_denoise_adv import universal

APPS = {
    "noise": noise,
    "denoise": denoise,
    "classify": classify,
    "targeted": targeted,
    "universal": universal,
}

_STUDY_DIR = flags.DEFINE_string(
    "study_dir", "runs/study", "The study's folder; step <name> runs in <name>/."
)
_STEP_FLAGFILES = {
    step.name: flags.DEFINE_string(
        f"{step.name}_flagfile",
        "",
        f"Flag file of the {step.name} step ({step.app} app); empty: leave it out.",
    )
    for step in study_job.STEPS
}
_FORCE = flags.DEFINE_bool("force", False, "Rerun every step, even up-to-date ones.")
_RERUN = flags.DEFINE_list(
    "rerun", [], f"Steps to rerun even if up to date, of {study_job.STEP_NAMES}."
)
_OWN_FLAGS = {"study_dir", "force", "rerun"} | {
    f"{name}_flagfile" for name in study_job.STEP_NAMES
}


def _reset_app_flags() -> None:
    """Every app flag back to its default, so no step inherits another's."""
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if not module.startswith("cifar_denoise_adv."):
            continue
        for flag in module_flags:
            if flag.name not in _OWN_FLAGS:
                flag.unparse()


@contextlib.contextmanager
def step_flags(flagfile: str, overrides: dict[str, str], flag_name: str):
    """Parses a step's flag file (then `overrides`) for the duration of a block.

    The study's own flag values are restored afterwards.
    """
    with flagsaver.flagsaver():
        _reset_app_flags()
        argv = ["study", f"--flagfile={flagfile}"]
        argv += [f"--{name}={value}" for name, value in overrides.items()]
        try:
            flags.FLAGS(argv)
        except flags.Error as error:
            raise outputs.UserError(f"--{flag_name}={flagfile}: {error}") from None
        yield


def _settings(step: study_job.Step, module) -> dict:
    """The step's job config and inputs: what its result depends on."""
    config = module.config_from_flags()
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    data_dir = common_flags.data_dir_or_none()
    settings = {
        "config": config,
        "data": os.path.abspath(data_dir) if data_dir else "tfds cifar10",
    }
    if step.app in ("targeted", "universal"):
        if not common_flags.CLASSIFIER.value:
            raise outputs.UserError(
                f"--{step.name}_flagfile: no --classifier, and the study has no "
                "classifier step (--classifier_flagfile)."
            )
        settings["classifier"] = os.path.abspath(common_flags.CLASSIFIER.value)
    if step.app == "universal":
        settings["sweep_xi"] = universal.sweep_xi_from_flags()
        is_sweep = step.name == "universal_sweep"
        if is_sweep != bool(settings["sweep_xi"]):
            raise outputs.UserError(
                f"--{step.name}_flagfile: "
                + ("needs --sweep_xi." if is_sweep else "must not set --sweep_xi.")
            )
    return settings


def _plan(step: study_job.Step, study_dir: str, data_dir: str, log) -> study_job.Plan:
    flag_name = f"{step.name}_flagfile"
    flagfile = _STEP_FLAGFILES[step.name].value
    if not os.path.isfile(flagfile):
        raise outputs.UserError(f"--{flag_name}={flagfile}: no such flag file.")
    run_dir = os.path.join(study_dir, step.name)
    overrides = {"run_dir": run_dir, "data_dir": data_dir}
    if step.needs == ("classifier",) and _STEP_FLAGFILES["classifier"].value:
        overrides["classifier"] = os.path.join(study_dir, "classifier")
    module = APPS[step.app]
    with step_flags(flagfile, overrides, flag_name):
        settings = _settings(step, module)

    def execute() -> dict:
        with step_flags(flagfile, overrides, flag_name):
            return module.run_from_flags(log=log)

    return study_job.Plan(step, flagfile, run_dir, settings, execute)


def plans_from_flags(log=print) -> list[study_job.Plan]:
    """The configured steps, in order, from the study's flags."""
    study_dir = os.path.abspath(_STUDY_DIR.value)
    data_dir = common_flags.DATA_DIR.value
    return [
        _plan(step, study_dir, data_dir, log)
        for step in study_job.STEPS
        if _STEP_FLAGFILES[step.name].value
    ]


def run_from_flags(log=print) -> dict:
    """Runs the study the flags describe; returns the study record."""
    plans = plans_from_flags(log)
    if not plans:
        raise outputs.UserError(
            "no step configured: give at least one --<step>_flagfile "
            "(see flags/study.cfg)."
        )
    data_dir = common_flags.data_dir_or_none()
    return study_job.run(
        plans,
        study_dir=_STUDY_DIR.value,
        force=True if _FORCE.value else set(_RERUN.value),
        data_source=f"local copy {os.path.abspath(data_dir)}"
        if data_dir
        else "TFDS cifar10",
        log=log,
    )


def main(argv: list[str]) -> None:
    """Reads the flags once and runs the study."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run_from_flags()


if __name__ == "__main__":
    app.run(common_flags.exit_on_user_error(main))
