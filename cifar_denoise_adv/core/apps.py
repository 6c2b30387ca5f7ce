"""What every absl app shares: flags from a config class, flag files, errors.

An app is a config class and a job function. `run_app` defines one flag per
config field (the field's name, default and help), parses the command line,
builds the config (range checks included) and calls the job; a user's
mistake ends in one line on stderr and exit status 2. `parse_args` does the
same parsing into a fresh flag registry, without touching absl's global
one: the study and the tests use it to read a step's flag file.

Flag files: `--flagfile=PATH` may name a file relative to the working folder,
a file of the installed `flags/` folder by name (`--flagfile=resnet.cfg`),
and a flag file's own `--flagfile=` lines resolve relative to the file that
holds them, so a flag file works from any folder.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import warnings
from collections.abc import Callable
from collections.abc import Sequence

from absl import app
from absl import flags

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import flag_help
from cifar_denoise_adv.core.errors import UserError

FLAG_DIR_ENV = "CIFAR_DENOISE_ADV_FLAGS"


class _NumberParser(flags.ArgumentParser):
    """Floats written as numbers or fractions (`10/255`)."""

    def __init__(self, name: str):
        self._name = name

    def parse(self, argument):
        if argument is None or isinstance(argument, float | int):
            return None if argument is None else float(argument)
        try:
            return config_lib.parse_number(argument, self._name)
        except UserError as error:
            raise ValueError(str(error).split(": ", 1)[-1]) from None

    def flag_type(self):
        return "float"


def define_flags(config_cls, flag_values: flags.FlagValues, module_name: str) -> None:
    """One flag per field of `config_cls`, with its default and help."""
    for field, kind, element in config_lib.fields(config_cls):
        meta = field.metadata
        help_text = meta["help"]
        if meta["choices"]:
            shown = (choice or '""' for choice in meta["choices"])
            help_text += f" One of: {', '.join(shown)}."
        if meta["unit"] == config_lib.PIXEL:
            help_text += " [0, 1] pixel units; a/b fractions allowed (10/255)."
        elif meta["unit"] == config_lib.LP:
            help_text += (
                " [0, 1] pixel units in the --norm norm (linf: at most 1; l2: at "
                "most sqrt(32*32*3) = 55.4); a/b fractions allowed (10/255)."
            )
        elif meta["unit"] == config_lib.FRACTION:
            help_text += " A fraction (0.2, not 20)."
        common = dict(flag_values=flag_values, module_name=module_name)
        name, default = field.name, field.default
        if kind == "tuple":
            flags.DEFINE_list(
                name, [str(v) for v in default] or None, help_text, **common
            )
        elif element is bool:
            flags.DEFINE_bool(name, default, help_text, **common)
        elif element is int:
            flags.DEFINE_integer(name, default, help_text, **common)
        elif element is float:
            flags.DEFINE(
                _NumberParser(name),
                name,
                default,
                help_text,
                serializer=flags.ArgumentSerializer(),
                **common,
            )
        else:
            flags.DEFINE_string(name, default, help_text, **common)


def _values(config_cls, flag_values: flags.FlagValues) -> dict:
    return {
        field.name: flag_values[field.name].value
        for field, _, _ in config_lib.fields(config_cls)
    }


def installed_flag_dir() -> str:
    """The folder of the flag files shipped with the package."""
    override = os.environ.get(FLAG_DIR_ENV)
    if override:
        return override
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    packaged = os.path.join(here, "flags")
    if os.path.isdir(packaged):
        return packaged
    return os.path.join(os.path.dirname(here), "flags")  # a source checkout


def find_flagfile(path: str, relative_to: str | None = None) -> str:
    """The flag file that `path` names, as an absolute path.

    A flag file's own `--flagfile=` line (`relative_to` is that file's
    folder) is looked up beside that file, never in the working folder, so
    the same file means the same flags from any folder; a command line's is
    looked up in the working folder. Either then falls back on the installed
    flag files, by name (`resnet.cfg`, or `flags/resnet.cfg` from another
    folder).

    Raises:
      UserError: naming the file, when none of those exists.
    """
    expanded = os.path.expanduser(path)
    candidates = []
    if os.path.isabs(expanded):
        candidates.append(expanded)
    else:
        if relative_to is not None:
            candidates.append(os.path.join(relative_to, expanded))
        else:
            candidates.append(os.path.abspath(expanded))
        candidates.append(os.path.join(installed_flag_dir(), expanded))
        # 'flags/resnet.cfg' from another folder: the installed copy.
        candidates.append(
            os.path.join(installed_flag_dir(), os.path.basename(expanded))
        )
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise UserError(
        f"--flagfile={path}: no such flag file (looked in "
        f"{', '.join(dict.fromkeys(os.path.dirname(c) or '.' for c in candidates))})."
    )


def expand_flagfiles(
    argv: Sequence[str],
    relative_to: str | None = None,
    _seen: tuple = (),
    *,
    app: str | None = None,
) -> list[str]:
    """Argv with every --flagfile replaced by the file's flags, recursively.

    Args:
      argv: the arguments (no program name).
      relative_to: the folder of the flag file that holds `argv`, if any.
      app: the app the flags are for: a flag file whose first line names
        another app (`# app: denoise.`) is refused, naming the file.
    """
    expanded = []
    for arg in argv:
        if arg.startswith(("--flagfile=", "-flagfile=")):
            path = find_flagfile(arg.split("=", 1)[1], relative_to)
            if path in _seen:
                raise UserError(f"--flagfile={path}: includes itself.")
            _check_flagfile_app(path, app)
            expanded += expand_flagfiles(
                _read_flagfile(path), os.path.dirname(path), (*_seen, path), app=app
            )
        else:
            expanded.append(arg)
    return expanded


def flagfile_app(path: str) -> str | None:
    """The app a flag file names on its first line (`# app: NAME.`), if any."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return None  # _read_flagfile says what is wrong with it
    if not first.startswith("# app: "):
        return None
    return first[len("# app: ") :].split(".")[0].split()[0] or None


# Apps whose settings include another app's, so that app's flag files are
# theirs too (the sweep runs the universal job at each budget).
_READS_FLAGFILES_OF = {"sweep": ("universal",)}


def _check_flagfile_app(path: str, app: str | None) -> None:
    other = flagfile_app(path)
    if app is None or other is None or other in _READS_FLAGFILES_OF.get(app, ()):
        return
    if other != app:
        raise UserError(
            f"--flagfile={path}: a flag file of the {other} app (its first line "
            f"says so), not of the {app} app; run it with python -m "
            f"cifar_denoise_adv.{other}."
        )


def _read_flagfile(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--flagfile={path}: cannot read it ({error}).") from None
    return [
        line.strip()
        for line in lines
        if line.strip() and not line.strip().startswith(("#", "//"))
    ]


def _flag_error(error: flags.Error, app_name: str, own: Sequence[str]) -> UserError:
    message = str(error).splitlines()[0]
    if isinstance(error, flags.UnrecognizedFlagError):
        name = getattr(error, "flagname", "") or message
        return UserError(flag_help.unknown_flag_message(name, own, app_name))
    return UserError(message)


def parse_args(config_cls, argv: Sequence[str], app_name: str | None = None):
    """The config that `argv` (program name first) describes, checked.

    Uses a fresh flag registry: nothing global is read or changed.

    Args:
      config_cls: the job's config class.
      argv: the command line, program name first.
      app_name: the app; a flag file of another app is then refused.

    Raises:
      UserError: naming the flag, for an unknown flag, a bad value or a
        value out of range; naming the flag file, for another app's.
    """
    flag_values = flags.FlagValues()
    define_flags(config_cls, flag_values, module_name=app_name or "this")
    argv = [argv[0], *expand_flagfiles(argv[1:], app=app_name)]
    own = [field.name for field, _, _ in config_lib.fields(config_cls)]
    try:
        rest = flag_values(argv)
    except flags.Error as error:
        raise _flag_error(error, app_name or "this", own) from None
    if len(rest) > 1:
        raise UserError(f"unexpected arguments: {' '.join(rest[1:])}")
    return config_lib.from_values(config_cls, _values(config_cls, flag_values))


def parse_flagfile(
    config_cls, path: str, overrides: dict | None = None, app_name: str | None = None
):
    """The config of a flag file, then `overrides` ({flag: value}) on top."""
    argv = ["prog", f"--flagfile={path}"]
    argv += [f"--{name}={value}" for name, value in (overrides or {}).items()]
    return parse_args(config_cls, argv, app_name)


def exit_on_user_error(main: Callable) -> Callable:
    """Wraps an app's main: a user's mistake ends in one line, status 2.

    Library code raises `UserError` (or `DataError`) with a message that
    names the flag or file and what was expected. Other exceptions keep
    their traceback: they are bugs.
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped


@dataclasses.dataclass(frozen=True)
class App:
    """An absl app: a config class (its flags) and a job (what it runs).

    Attributes:
      name: the app's name, as users call it (`python -m cifar_denoise_adv.NAME`).
      config: the job's config class; one flag per field.
      job: `job(config, log)` runs the job and returns its record.
      exit_status: maps the job's record to the process's exit status.
    """

    name: str
    config: type
    job: Callable
    exit_status: Callable[[object], int] = lambda record: 0

    def parse(self, argv: Sequence[str]):
        """The config a command line (program name first) describes."""
        return parse_args(self.config, argv, self.name)

    def parse_flagfile(self, path: str, overrides: dict | None = None):
        """The config of a flag file, with `overrides` ({flag: value}) on top."""
        return parse_flagfile(self.config, path, overrides, self.name)

    def main(self) -> None:
        """Runs the app on sys.argv (the console script's and `-m`'s entry)."""
        run_app(self.config, self.job, self.name, self.exit_status, self._doc())

    def _doc(self) -> str | None:
        """The docstring of the module that defines this app (its usage)."""
        for name, module in list(sys.modules.items()):
            if name.startswith(__package__.split(".")[0]) and (
                getattr(module, "APP", None) is self
            ):
                return module.__doc__
        return None


def _warning_line(message, category, filename, lineno, file=None, line=None):
    """A Python warning as one line on stderr (`warning: ...`), no source line.

    E.g. an attack given a model without gradient (`attacks.contract`).
    """
    del category, filename, lineno, file, line
    print(f"warning: {message}", file=sys.stderr)


def help_text(config_cls, usage: str | None, full: bool = False) -> str:
    """The app's --help (see `flag_help.help_text`)."""
    flag_values = flags.FlagValues()
    define_flags(config_cls, flag_values, "help")
    return flag_help.help_text(config_cls, flag_values, usage, full)


def run_app(
    config_cls,
    job: Callable,
    app_name: str,
    exit_status: Callable[[object], int] = lambda record: 0,
    usage: str | None = None,
) -> None:
    """The absl app of a job: flags from `config_cls`, then `job(config)`.

    Defines the flags on absl's global registry, expands flag files (one
    of another app is refused), answers --help itself (the app's flags,
    grouped), refuses any flag that is not the app's own or absl.app's
    (TensorFlow's and absltest's test and TPU flags), builds the config and
    calls `job(config, log=print)`.
    """
    define_flags(config_cls, flags.FLAGS, sys.argv[0])
    main_module = sys.modules.get("__main__")
    usage = (main_module.__doc__ if main_module is not None else None) or usage
    own = [field.name for field, _, _ in config_lib.fields(config_cls)]

    @exit_on_user_error
    def parse(argv):
        expanded = expand_flagfiles(argv[1:], app=app_name)
        full = flag_help.help_requested(expanded)
        if full is not None:
            print(help_text(config_cls, usage, full), end="")
            sys.exit(0)
        flag_help.refuse_foreign_flags(expanded, own, app_name)
        try:
            return flags.FLAGS([argv[0], *expanded])
        except flags.Error as error:
            raise _flag_error(error, app_name, own) from None

    @exit_on_user_error
    def main(argv):
        if len(argv) > 1:
            raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
        config = config_lib.from_values(config_cls, _values(config_cls, flags.FLAGS))
        console.quiet_python_logs()  # after app.run added absl's log handler
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            return exit_status(job(config, log=print))

    app.run(main, flags_parser=parse)
