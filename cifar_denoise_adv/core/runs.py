"""The run folder's guard: one live run per folder, and a record of its settings.

A run folder must describe the model inside it. Every job runs as

    with runs.claim(config, app, log) as held:
        inputs = load_and_check(config)  # reads; writes nothing in run_dir
        held.begin()                     # only now is the folder changed
        ...                              # train, attack, write outputs

- `claim` makes `--run_dir` (one line when it cannot: below a file, under
  /proc, not writable) and takes an OS file lock on `run_dir/.lock`, which
  the OS releases when the process ends however it ends, so a second
  process is refused while a live run holds the folder;
- it compares the settings that determine the result
  (`config_lib.identity`: data folder included; not the run folder,
  figures or verbosity) with those the folder's earlier run recorded in
  `run.json` (or, in a folder from before run.json, in its flags.cfg). The
  same settings resume or re-evaluate; other settings stop with one line
  listing each differing flag with its old and new value, unless
  --overwrite;
- the job then loads and checks its inputs (data, models, settings that
  need the data): a mistake there stops it before anything in the folder
  is removed or rewritten, so a typo beside --overwrite never costs the
  earlier run;
- `begin` removes, with --overwrite, the files the earlier run made, and
  no others, and writes `run.json` with the settings and
  `"state": "running"`; when the block ends without an exception, run.json
  says `"state": "done"` and lists the files the run made.

Files that were in the folder before a run began (a user's notes, the
study's step record) are listed in run.json as `foreign` and are never
removed. What a run made: for a finished run, the files it listed; for an
interrupted one, whatever appeared in the folder since it began. A run
that fails having made nothing takes its run.json (and the folder and
lock file, when it made them) away again; a run.json of a process that
died having made nothing (killed early, or an older version) is taken
over by the next run, which says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from collections.abc import Iterator

import filelock

from cifar_denoise_adv.core import apps
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import outputs
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

    On leaving, however the block ends, the lock file is removed (also one
    that a killed run left behind: the process holding the lock owns it),
    and so are the folder and its parents if this call made them and they
    are still empty: a refused or failed run leaves no trace of its own,
    and a finished, resumed or overwritten run leaves no `.lock`.

    Raises:
      UserError: naming `--flag`, when the folder cannot be made or written,
        or another live process holds it.
    """
    made = _missing_folders(folder)
    path = outputs.make_run_dir(folder, flag)
    lock_path = os.path.join(path, LOCK_FILE)
    lock = filelock.FileLock(lock_path)
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
        # Removed while still held: a process that opened the old file
        # finds it unlinked once it gets the lock, and tries again.
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)
        lock.release()
        for made_folder in made:  # deepest first; stops at the first non-empty
            try:
                os.rmdir(made_folder)
            except OSError:
                break


def _missing_folders(folder: str) -> list[str]:
    """The folders `make_run_dir(folder)` would make, deepest first."""
    missing = []
    path = os.path.abspath(os.path.expanduser(folder)) if folder else ""
    while path and not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


class Claim:
    """A held run folder whose earlier run is replaced only at `begin`.

    Attributes:
      run_dir: the folder's absolute path.
      begun: whether `begin` was called.
    """

    def __init__(self, config, app: str, run_dir: str, previous, log):
        self.run_dir = run_dir
        self.begun = False
        self._config = config
        self._app = app
        self._previous = previous
        self._log = log
        self._record: dict = {}

    def begin(self) -> str:
        """The job's inputs are checked: clears (--overwrite) and records the run.

        Call it once the job has loaded and checked everything it reads, and
        before it writes anything into the folder.

        Returns:
          The run folder's absolute path.
        """
        previous = self._previous
        if previous is not None and previous.get("abandoned"):
            self._log(
                f"--run_dir={self._config.run_dir}: the {previous.get('app')} run "
                f"recorded there (started {previous.get('started', '?')}) ended "
                "without making anything; this run takes its place"
            )
            previous = None
        elif previous is not None and self._config.overwrite:
            _remove_made(self.run_dir, previous)
            previous = None
        self._previous = previous
        self._record = {
            "app": self._app,
            "settings": _settings(self._config),
            "state": "running",
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "pid": os.getpid(),
            "foreign": _foreign(self.run_dir, previous),
        }
        outputs.write_json(os.path.join(self.run_dir, RUN_FILE), self._record)
        self.begun = True
        return self.run_dir

    def _finish(self) -> None:
        record = self._record
        record.update(
            state="done",
            finished=time.strftime("%Y-%m-%d %H:%M:%S"),
            made=sorted(_entries(self.run_dir) - set(record["foreign"])),
        )
        del record["pid"]
        outputs.write_json(os.path.join(self.run_dir, RUN_FILE), record)

    def _fail(self) -> None:
        """A fresh run that failed having made nothing leaves no run.json."""
        if not self.begun or self._previous is not None:
            return
        if not _entries(self.run_dir) - set(self._record["foreign"]):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.run_dir, RUN_FILE))


def _settings(config) -> dict:
    return outputs.normalized(config_lib.identity(config))


@contextlib.contextmanager
def claim(
    config,
    app: str,
    log: Callable[[str], None] = lambda message: None,
) -> Iterator[Claim]:
    """Holds `config.run_dir` for one run of `app`, refusing other settings.

    Nothing in the folder is removed or rewritten until the job calls
    `Claim.begin` (see the module docstring).

    Args:
      config: a resolved job config with `run_dir` and `overwrite`.
      app: the app's name, recorded with the settings.
      log: receives one line per setting the config ignores though it was
        set (`config_lib.ignored_notes`), and the line said when a run.json
        of a dead run that made nothing is taken over.

    Yields:
      The `Claim`. When the block ends without an exception, run.json says
      the run is done and lists what it made.

    Raises:
      UserError: one line, when the folder cannot be used, is held by a live
        process, or holds a run with other settings (without --overwrite).
      RuntimeError: when the block ends without having called `begin` (a
        job that writes nothing is a bug).
    """
    with hold(config.run_dir) as run_dir:
        for line in config_lib.ignored_notes(config):
            log(f"note: {line}")
        previous = _earlier_run(run_dir, type(config))
        if previous is not None and previous.get("state") == "running":
            # We hold the lock: the process that wrote it is gone.
            previous["abandoned"] = not _made(run_dir, previous)
        if (
            previous is not None
            and not previous.get("abandoned")
            and not config.overwrite
        ):
            _refuse_other_settings(config.run_dir, previous, app, _settings(config))
        held = Claim(config, app, run_dir, previous, log)
        try:
            yield held
        except BaseException:
            held._fail()
            raise
        if not held.begun:
            raise RuntimeError(f"the {app} job never called Claim.begin")
        held._finish()


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
            f"({'; '.join(changed)}); {_replay_hint(run_dir, previous, settings)}, "
            f"{hint}"
        )


def _replay_hint(run_dir: str, previous: dict, settings: dict) -> str:
    """How to rerun the earlier run's settings: its flags.cfg, or its values.

    A run writes flags.cfg only when it finishes, so a killed or running one
    has none: its settings are in run.json, and the flags that differ, with
    their old values, make the command resume it.
    """
    flagfile = os.path.join(run_dir, outputs.FLAGS_FILE)
    if previous.get("state") in ("done", "earlier") and os.path.isfile(flagfile):
        return f"rerun with --flagfile={flagfile} to re-evaluate it"
    old = previous["settings"]
    values = " ".join(
        _as_flag(name, old.get(name))
        for name in list(settings) + [n for n in old if n not in settings]
        if old.get(name, "(unset)") != settings.get(name, "(unset)")
    )
    what = "resume" if previous.get("state") == "running" else "re-evaluate"
    return (
        f"to {what} it, rerun this command with {values} (its settings, recorded "
        f"in {os.path.join(run_dir, RUN_FILE)})"
    )


def _as_flag(name: str, value) -> str:
    """A recorded setting as the flag that sets it."""
    if value is None:
        return f"--{name} unset"
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    return f"--{name}={_shown(value)}"


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
