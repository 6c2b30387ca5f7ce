"""What an app says about its flags: --help, and the flags it refuses.

absl's global registry holds, beside an app's own flags, the ones
TensorFlow and absltest define for tests, TPUs and logging; absl's help
lists them all under file paths. An app answers --help itself (its flags
grouped by the config class that declares them, budgets in 255ths), and
refuses a flag that is neither its own nor absl.app's in one line, naming
the module that defines it or the app flag closest to a typo.
"""

from __future__ import annotations

import difflib
import inspect
import textwrap
from collections.abc import Sequence

from absl import flags

from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core.errors import UserError

# absl.app's own flags an app keeps (debugging and profiling, listed by
# --helpfull); every other flag that absl or TensorFlow define (tests, TPUs,
# logging) is refused and kept out of the help.
ABSL_FLAGS_KEPT = (
    "flagfile",
    "only_check_args",
    "pdb",
    "pdb_post_mortem",
    "profile_file",
    "run_with_pdb",
    "run_with_profiling",
    "use_cprofile_for_profiling",
)
HELP_FLAGS = {"help": False, "helpshort": False, "?": False, "helpfull": True}


def refuse_foreign_flags(argv: Sequence[str], own: Sequence[str], app_name: str):
    """Refuses every flag in `argv` that is neither the app's nor absl.app's.

    absl's global registry also holds the flags TensorFlow and absltest
    define for tests, TPUs and logging (`--test_tmpdir`, `--hbm_oom_exit`);
    an app would accept them and do nothing.

    Raises:
      UserError: one line naming the first such flag (see
        `unknown_flag_message`).
    """
    accepted = set(own) | set(ABSL_FLAGS_KEPT) | set(HELP_FLAGS)
    for name in _flag_names(argv, flags.FLAGS):
        if name not in accepted and not (
            name.startswith("no") and name[2:] in accepted
        ):
            raise UserError(unknown_flag_message(name, own, app_name))


def help_requested(argv: Sequence[str]) -> bool | None:
    """None, or whether the full help is asked for (--helpfull)."""
    for arg in argv:
        if arg == "--":
            break
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in HELP_FLAGS and value.lower() != "false":
            return HELP_FLAGS[name]
    return None


def _default_text(field, kind: str, element) -> str:
    default = field.default
    if kind == "tuple":
        return ",".join(config_lib.shown(v, field) for v in default) or '""'
    if element is bool:
        return "true" if default else "false"
    if default is None:
        return "unset"
    if default == "":
        return '""'
    return config_lib.shown(default, field)


def _flag_help(field, kind: str, element, help_text: str) -> list[str]:
    bool_flag = element is bool and kind != "tuple"
    name = f"--[no]{field.name}" if bool_flag else f"--{field.name}"
    default = _default_text(field, kind, element)
    return _wrap(f"  {name} (default: {default})", help_text)


def help_text(
    config_cls, flag_values: flags.FlagValues, usage: str | None, full: bool = False
) -> str:
    """--help: the app's docstring, then its flags in groups.

    A group is the config class that first declares its settings (the app's
    own first, then the settings every training or attack job has, then
    those of every run), headed by that class's first docstring line; each
    default is shown in its setting's unit (`2/255`).

    Args:
      config_cls: the app's config class.
      flag_values: a registry holding its flags (their help with units).
      usage: the app module's docstring (its first line says what it does).
      full: also list absl's debugging flags (--helpfull).
    """
    lines = [(usage or config_cls.__doc__ or "").strip(), ""]
    groups: dict[type, list[str]] = {}
    for field, kind, element in config_lib.fields(config_cls):
        # The class that first declares the setting: a subclass that only
        # changes a default (classify's --epochs) keeps it in its group.
        owner = next(
            c
            for c in reversed(config_cls.__mro__)
            if field.name in inspect.get_annotations(c)
        )
        groups.setdefault(owner, []).extend(
            _flag_help(field, kind, element, flag_values[field.name].help)
        )
    for owner in sorted(groups, key=config_cls.__mro__.index):
        heading = (owner.__doc__ or owner.__name__).strip().splitlines()[0]
        lines += [heading, *groups[owner], ""]
    lines.append("Flag files and help:")
    lines += _flag_help_lines(full)
    return "\n".join(lines).rstrip() + "\n"


def _flag_help_lines(full: bool) -> list[str]:
    lines = [
        "  --flagfile=PATH",
        "      Read flags from this file (one per line, # comments); a later flag",
        "      overrides it. Files of the installed flags/ folder are found by name.",
        "  --help, --helpfull",
        "      This help; --helpfull adds absl's debugging flags.",
    ]
    if full:
        for name in ABSL_FLAGS_KEPT[1:]:
            flag = flags.FLAGS._flags().get(name)  # noqa: SLF001
            if flag is not None:
                lines += _wrap(f"  --{name}", flag.help)
    return lines


def _wrap(head: str, text: str) -> list[str]:
    return [head] + textwrap.wrap(
        text, width=80, initial_indent="      ", subsequent_indent="      "
    )


# Flags that moved from one app to another: {flag: the app that has it now}.
MOVED_FLAGS = {"sweep_xi": "sweep"}  # once a mode of the universal app


def unknown_flag_message(name: str, own: Sequence[str], app_name: str) -> str:
    """One line for --name, which the app does not have: what it is instead.

    A flag that TensorFlow or absl define for their tests, TPUs or logging
    is named as such; a near miss of one of the app's flags (`--epoch`)
    gets "did you mean --epochs?".
    """
    for candidate in (name, name[2:] if name.startswith("no") else None):
        module = candidate and flags.FLAGS.find_module_defining_flag(candidate)
        if module and candidate not in own:
            return (
                f"--{name}: not a flag of the {app_name} app but one of {module}, "
                "which the apps do not use (see --help)."
            )
    moved_to = MOVED_FLAGS.get(name)
    if moved_to and moved_to != app_name:
        return (
            f"--{name}: not a flag of the {app_name} app; it is one of the "
            f"{moved_to} app: python -m cifar_denoise_adv.{moved_to} (see --help)."
        )
    close = difflib.get_close_matches(name, sorted(own), n=1, cutoff=0.6)
    if not close and name.startswith("no"):
        close = difflib.get_close_matches(name[2:], sorted(own), n=1, cutoff=0.6)
    hint = f"; did you mean --{close[0]}?" if close else ""
    return f"--{name}: not a flag of the {app_name} app{hint} (see --help)."


def _flag_names(argv: Sequence[str], flag_values: flags.FlagValues) -> list[str]:
    """The flag names `argv` sets (`--name=v`, `--name v`, `--[no]name`)."""
    names, value_next = [], False
    for arg in argv:
        if value_next:
            value_next = False
            continue
        if arg == "--":
            break
        if not arg.startswith("-") or arg[1:2] in ("", *"0123456789."):
            continue  # a value (`--seed -1`), not a flag
        name, has_value, _ = arg.lstrip("-").partition("=")
        names.append(name)
        flag = flag_values._flags().get(name)  # noqa: SLF001 - absl has no getter
        value_next = not has_value and flag is not None and not flag.boolean
    return names
