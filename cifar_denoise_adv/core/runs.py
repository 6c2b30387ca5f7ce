"""The run folder's guard: one live run per folder, and a record of its settings.

A run folder must describe the model inside it. `claim(config, app)` is
where every job starts:

- it makes `--run_dir` (one line when it cannot: below a file, under /proc,
  not writable) and takes an OS file lock on `run_dir/.lock`, which the OS
  releases when the process ends however it ends, so a second process is
  refused while a live run holds the folder;
- it compares the settings that determine the result
  (`config_lib.identity`: data folder included; not the run folder,
  figures or verbosity) with those the folder's earlier run recorded in
  `run.json` (or, in a folder from before run.json, in its flags.cfg). The
  same settings resume or re-evaluate; other settings stop with one line
  listing each differing flag with its old and new value, unless
  --overwrite, which removes the files the earlier run made, and no
  others, and starts afresh;
- it writes `run.json` with the settings and `"state": "running"` before
  the job writes anything, and `"state": "done"` with the files the run
  made once the job has succeeded.

Files that were in the folder before a run began (a user's notes, the
study's step record) are listed in run.json as `foreign` and are never
removed. What a run made: for a finished run, the files it listed; for an
interrupted one, whatever appeared in the folder since it began.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Iterator

import filelock

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import workers
from cifar_denoise_adv.core.errors import UserError

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
_CONTROL = frozenset({RUN_FILE, LOCK_FILE})
# What the training and attack jobs wrote before run.json existed; a folder
# of that time (its flags.cfg says which app made it) loses only these
# with --overwrite.
_EARLIER_OUTPUTS = frozenset(
    {"backup", "tb", "saved_model", "model.keras", "metrics.json", "flags.cfg"}
)


@contextlib.contextmanager
def hold(folder: str, flag: str = "run_dir") -> Iterator[str]:
    """Makes `folder` and holds its OS lock; yields its absolute path.

    Raises:
      UserError: naming `--flag`, when the folder cannot be made or written,
        or another live process holds it.
    """
    path = outputs.make_run_dir(folder, flag)
    lock = filelock.FileLock(os.path.join(path, LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = _read_record(path) or {}
        who = f"a running {holder.get('app', '')} process".replace("  ", " ")
        if "pid" in holder:
            who += f" (pid {holder['pid']})"
        raise UserError(
            f"--{flag}={folder}: in use by {who}; wait for it to end or choose "
            f"another --{flag}."
        ) from None
    try:
        yield path
    finally:
        lock.release()


@contextlib.contextmanager
def claim(config, app: str, *, same_settings: bool = True) -> Iterator[str]:
    """Holds `config.run_dir` for one run of `app`, refusing other settings.

    Args:
      config: a resolved job config with `run_dir` and `overwrite`.
      app: the app's name, recorded with the settings.
      same_settings: False for a job that checks what it reuses itself (the
        fooling-rate sweep, whose every (method, xi) run is a guarded run of
        its own): other settings are then allowed.

    Yields:
      The run folder's absolute path. When the block ends without an
      exception, run.json says the run is done and lists what it made.

    Raises:
      UserError: one line, when the folder cannot be used, is held by a live
        process, or holds a run with other settings (without --overwrite).
    """
    settings = outputs.normalized(config_lib.identity(config))
    with hold(config.run_dir) as run_dir:
        previous = _earlier_run(run_dir, type(config))
        if previous is not None and config.overwrite:
            _remove_made(run_dir, previous)
            previous = None
        elif previous is not None and same_settings:
            _refuse_other_settings(config.run_dir, previous, app, settings)
        record = {
            "app": app,
            "settings": settings,
            "state": "running",
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "pid": os.getpid(),
            "foreign": _foreign(run_dir, previous),
        }
        path = os.path.join(run_dir, RUN_FILE)
        outputs.write_json(path, record)
        yield run_dir
        record.update(
            state="done",
            finished=time.strftime("%Y-%m-%d %H:%M:%S"),
            made=sorted(_entries(run_dir) - set(record["foreign"])),
        )
        del record["pid"]
        outputs.write_json(path, record)


def _entries(run_dir: str) -> set[str]:
    return set(os.listdir(run_dir)) - _CONTROL


def _read_record(run_dir: str) -> dict | None:
    try:
        record = outputs.read_json(os.path.join(run_dir, RUN_FILE))
    except UserError:
        return None
    return record if isinstance(record, dict) else None


def _earlier_run(run_dir: str, config_cls) -> dict | None:
    """The folder's earlier run: run.json, or a flags.cfg of before it, or None.

    A flags.cfg this program wrote (its first line names the app) stands
    for a run of before run.json; its settings are `None` when it no longer
    parses, which only --overwrite gets past.
    """
    record = _read_record(run_dir)
    if record is not None and "settings" in record:
        return record
    flagfile = os.path.join(run_dir, outputs.FLAGS_FILE)
    try:
        with open(flagfile, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("# app: "):
        return None  # not ours
    app = first[len("# app: ") :].split(".")[0].strip()
    try:
        earlier = apps.parse_args(config_cls, ["prog", f"--flagfile={flagfile}"])
        settings = outputs.normalized(config_lib.identity(config_lib.resolve(earlier)))
    except UserError:
        settings = None
    return {"app": app, "settings": settings, "state": "earlier", "foreign": []}


def _refuse_other_settings(run_dir: str, previous: dict, app: str, settings: dict):
    hint = (
        "choose another --run_dir, or add --overwrite to start this run afresh "
        "there (removes the files that run made, no others)."
    )
    if previous.get("app") != app:
        raise UserError(
            f"--run_dir={run_dir}: holds a run of the {previous.get('app')} app, "
            f"not of {app}; {hint}"
        )
    if previous["settings"] is None:
        raise UserError(
            f"--run_dir={run_dir}: holds a {app} run whose flags.cfg no longer "
            f"parses, so its settings are unknown; {hint}"
        )
    changed = differences(previous["settings"], settings)
    if changed:
        raise UserError(
            f"--run_dir={run_dir}: holds a {app} run with other settings "
            f"({'; '.join(changed)}); rerun with its settings (its flags.cfg) to "
            f"resume or re-evaluate it, {hint}"
        )


def differences(old: dict, new: dict) -> list[str]:
    """'--name old -> new' for each setting that differs, in `new`'s order."""
    names = list(new) + [name for name in old if name not in new]
    return [
        f"--{name} {_shown(old.get(name, '(unset)'))} -> "
        f"{_shown(new.get(name, '(unset)'))}"
        for name in names
        if old.get(name, "(unset)") != new.get(name, "(unset)")
    ]


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or '""'
    if value == "":
        return '""'
    return str(value)


def _made(run_dir: str, previous: dict) -> set[str]:
    entries = _entries(run_dir)
    if previous.get("state") == "done":
        return entries & set(previous.get("made", []))
    if previous.get("state") == "earlier":
        return entries & _EARLIER_OUTPUTS
    return entries - set(previous.get("foreign", []))  # interrupted


def _foreign(run_dir: str, previous: dict | None) -> list[str]:
    """What was in the folder before this run (and no run of ours made)."""
    if previous is None:
        return sorted(_entries(run_dir))
    return sorted(_entries(run_dir) - _made(run_dir, previous))


def _remove_made(run_dir: str, previous: dict) -> None:
    """--overwrite: removes what the earlier run made, never anything else."""
    for name in sorted(_made(run_dir, previous)):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(run_dir, RUN_FILE))


def guarded(app: str, *, same_settings: bool = True):
    """Decorates a job `run(config, ...)` so that it runs under `claim`.

    The config is resolved first (absolute paths), as the job does itself.
    A non-chief worker of a --strategy=multi_worker run claims and writes a
    temporary folder of its own instead of run_dir (`workers.worker_config`).
    A --precision this machine cannot run is refused before the claim, so
    the folder keeps no run.json with settings that a corrected rerun would
    be refused for (after joining the cluster, so that the other workers
    stop too).
    """

    def decorate(job):
        @functools.wraps(job)
        def wrapped(config, *args, **kwargs):
            config = config_lib.resolve(config)
            with workers.worker_config(config) as config:
                if hasattr(config, "precision"):
                    precision.check_precision(config.precision)
                with claim(config, app, same_settings=same_settings):
                    return job(config, *args, **kwargs)

        return wrapped

    return decorate
