"""The flags the study gives each step after its flag file, and its checks.

The step's folder and the study's data; the study's classifier and denoiser
for the steps that need them; the study's --precision where the step's flag
file sets none; and --step_flags (NAME=VALUE for every step whose app has
--NAME), checked in one line each.
"""

from __future__ import annotations

import dataclasses
import os

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.core.errors import UserError

# Set by the study for each step: --step_flags cannot name them.
_STUDY_SETS = ("run_dir", "data_dir", "classifier", "denoiser", "flagfile")


def parse(config, configured, apps_by_name: dict) -> dict[str, str]:
    """--step_flags as {name: value}, each name a flag of a configured step.

    Raises:
      UserError: naming --step_flags, for an entry that is not NAME=VALUE,
        names a flag the study sets itself, or a flag of no configured step.
    """
    known = {
        field.name
        for step in configured
        for field in dataclasses.fields(apps_by_name[step.app].config)
    }
    found = {}
    for entry in config.step_flags:
        name, equals, value = entry.partition("=")
        name = name.strip().lstrip("-")
        if not equals or not name:
            raise UserError(
                f"--step_flags={entry}: expected NAME=VALUE (e.g. epochs=1)."
            )
        if name in _STUDY_SETS:
            raise UserError(
                f"--step_flags={entry}: the study sets --{name} of each step itself."
            )
        if name not in known:
            raise UserError(
                f"--step_flags={entry}: --{name} is a flag of none of the configured "
                "steps' apps."
            )
        found[name] = value
    return found


def sets_precision(flagfile: str) -> bool:
    """Whether a step's flag file (or one it includes) sets --precision."""
    lines = apps.expand_flagfiles([f"--flagfile={flagfile}"])
    return any(line.startswith(("--precision=", "-precision=")) for line in lines)


def overrides(config, step, step_flags: dict, apps_by_name: dict) -> dict:
    """The flags the study gives a step after its flag file."""
    run_dir = os.path.join(config.study_dir, step.name)
    names = {field.name for field in dataclasses.fields(apps_by_name[step.app].config)}
    found = {name: v for name, v in step_flags.items() if name in names}
    if "precision" in names and not sets_precision(config.flagfile(step)):
        found.setdefault("precision", config.precision)
    found.update(run_dir=run_dir, data_dir=config.data_dir)
    if "classifier" in step.needs and config.classifier_flagfile:
        found["classifier"] = os.path.join(config.study_dir, "classifier")
    if "resnet" in step.needs and config.resnet_flagfile:
        found["denoiser"] = os.path.join(config.study_dir, "resnet")
    return found


def check(step, config, flag: str) -> None:
    """Refuses a step config the study cannot run (one line naming --flag)."""
    if (
        step.app in ("targeted", "universal", "sweep", "defend")
        and not config.classifier
    ):
        raise UserError(
            f"--{flag}: no --classifier, and the study has no classifier step "
            "(--classifier_flagfile)."
        )
    if step.app == "defend" and not config.denoiser:
        raise UserError(
            f"--{flag}: no --denoiser, and the study has no ResNet denoiser step "
            "(--resnet_flagfile)."
        )
