"""The study's step folders: which it may empty, and moving the others aside.

The study only deletes what it made. A step folder holds the study's record
(`study_step.json`) from the moment the study first runs the step there;
a folder without it (a run of the user's, say `runs/classifier` under
`--study_dir=runs`) is never emptied: the study stops before running
anything (`check`), or with --force moves it aside whole (`move_aside`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from collections.abc import Sequence

from cifar_denoise_adv.core.errors import UserError


def not_made_by_study(run_dir: str, record_file: str) -> bool:
    """Whether `run_dir` holds something but not the study's record of the step."""
    return (
        os.path.lexists(run_dir)
        and not os.path.isfile(os.path.join(run_dir, record_file))
        and (not os.path.isdir(run_dir) or bool(os.listdir(run_dir)))
    )


def check(run_dirs: Sequence[str], study_dir: str, record_file: str) -> None:
    """Stops before any step runs if one of `run_dirs` was not made by the study.

    Raises:
      UserError: one line naming the first such folder and what to do.
    """
    for run_dir in run_dirs:
        if not_made_by_study(run_dir, record_file):
            raise UserError(
                f"--study_dir={study_dir}: {run_dir} was not made by the study "
                f"(no {record_file}) and the study never empties such a folder; "
                "choose another --study_dir, or add --force to move it aside "
                f"(to {os.path.basename(run_dir)}.moved-<time>, untouched) and "
                "run the step afresh."
            )


def move_aside(run_dir: str, log: Callable[[str], None]) -> str:
    """Renames `run_dir` to `<run_dir>.moved-<time>`, its content untouched."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, count = f"{run_dir}.moved-{stamp}", 1
    while os.path.lexists(target):
        count += 1
        target = f"{run_dir}.moved-{stamp}-{count}"
    os.rename(run_dir, target)
    log(f"study: {run_dir} was not made by the study; moved aside to {target}")
    return target


def empty(run_dir: str, study_dir: str) -> None:
    """Removes a step folder the study made (it must lie inside study_dir)."""
    inside = os.path.commonpath([os.path.abspath(run_dir), os.path.abspath(study_dir)])
    if inside != os.path.abspath(study_dir) or os.path.samefile(run_dir, study_dir):
        raise UserError(f"{run_dir}: refusing to empty a folder outside it.")
    shutil.rmtree(run_dir)
