"""Job settings: one frozen dataclass per job, the single source of truth.

Each field of a job's config is one setting: its name is the flag's name,
its default is the flag's default, and its help text, range and unit live in
the field's metadata (`setting(...)`). The apps define their flags from the
dataclass (`core.apps`), a run writes `flags.cfg` from the config it used
(`flag_lines`), and replaying that file gives the same config back. Range
checks run when a config is made, so the Python API and the apps refuse the
same values with the same message.

Pixel quantities (`unit=PIXEL`: noise levels, L-inf budgets, step sizes)
are in [0, 1] pixel units; their flags also accept fractions such as
`10/255`. A value above 1 is refused with a hint that it looks like 0-255
units. `unit=LP` marks a budget measured in the norm the config's `norm`
field names: at most 1 for linf, at most sqrt(32 * 32 * 3) = 55.4 for l2
(`core.units`, which the Python API checks with too). `unit=FRACTION`
marks a rate in [0, 1]: a value such as 20 is said to look like a
percentage.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing

from cifar_denoise_adv.core import units
from cifar_denoise_adv.core.errors import UserError

PIXEL = "pixel"  # [0, 1] pixel units; flags accept a/b fractions
LP = "lp"  # pixel units in the norm of the config's `norm` field
FRACTION = "fraction"  # a rate in [0, 1]; 20 is said to look like 20%
SEED_MAX = 2**32 - 1  # numpy's and keras.utils.set_random_seed's limit
ENV_DATA_DIR = "CIFAR10_DIR"


def setting(
    default,
    help: str,  # noqa: A002 - the absl name
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] | None = None,
    unit: str | None = None,
    path: bool = False,
    defines_result: bool = True,
    replayed: bool = True,
):
    """A config field: default, help text and the range every value must meet.

    Args:
      default: the default value (also the flag's default).
      help: one-line help, shown by `--help`.
      low: smallest allowed value (inclusive unless `low_open`).
      high: largest allowed value (inclusive).
      low_open: `low` itself is refused (e.g. a learning rate > 0).
      choices: the allowed strings.
      unit: `PIXEL` for [0, 1] pixel units (fractions like 10/255 accepted;
        values > 1 refused as 0-255 units); `LP` for a budget in the norm
        the config's `norm` field names (l2: up to sqrt(3072)); `FRACTION`
        for a rate (the message spots percentages).
      path: a file or folder; made absolute by `resolve`.
      defines_result: False for settings that do not change the result
        (output folder, figures, verbosity); left out of `identity`.
      replayed: False for a one-off request (--overwrite) that flags.cfg
        must not repeat when it is replayed.
    """
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "low": low,
            "high": high,
            "low_open": low_open,
            "choices": choices,
            "unit": unit,
            "path": path,
            "defines_result": defines_result,
            "replayed": replayed,
        },
    )


def derived(source, name: str, prefix: str, **changes):
    """A setting of another job's config, under this config's own name.

    The help (after `prefix`), the range, the unit and the default come from
    `source`'s field `name`, so a job that runs another job's attack (the
    defend job, the targeted and universal settings) states them once;
    `changes` names what differs (`default=...`, `unit=...`, `low=...`).
    """
    field = {f.name: f for f in dataclasses.fields(source)}[name]
    help_text = f"{prefix} (--{name} of {source.__name__}): {field.metadata['help']}"
    metadata = {**field.metadata, "help": help_text}
    default = changes.pop("default", field.default)
    unknown = set(changes) - set(metadata)
    assert not unknown, f"not a setting's metadata: {sorted(unknown)}"
    metadata.update(changes)
    return dataclasses.field(default=default, metadata=metadata)


def parse_number(text: str, name: str) -> float:
    """'10/255', '0.04' or '1e-3' as a float; UserError naming --name otherwise."""
    try:
        numerator, _, denominator = str(text).partition("/")
        value = float(numerator) / (float(denominator) if denominator else 1.0)
    except (ValueError, ZeroDivisionError):
        raise UserError(
            f"--{name}={text}: expected a number or a fraction such as 10/255."
        ) from None
    return value


def _number(value) -> str:
    """Whole numbers in full (a seed), others short (0.95, 1e-05)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def shown(value, field: dataclasses.Field | None = None) -> str:
    """A setting's value as a user writes it: pixel budgets as `8/255`.

    A value in pixel units (`unit=PIXEL` or `LP`) that is a whole number of
    255ths is shown as that fraction; other numbers short (0.02, 1e-05).
    """
    unit = field.metadata.get("unit") if field is not None else None
    if isinstance(value, float) and unit in (PIXEL, LP):
        steps = value * 255
        if steps > 0 and math.isclose(steps, round(steps), abs_tol=1e-6):
            return f"{round(steps)}/255"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return _number(value)
    return str(value)


def _range_text(meta: dict) -> str:
    low, high = meta["low"], meta["high"]
    parts = []
    if low is not None:
        parts.append(f"> {_number(low)}" if meta["low_open"] else f">= {_number(low)}")
    if high is not None:
        parts.append(f"<= {_number(high)}")
    return " and ".join(parts)


def _check_field(field: dataclasses.Field, value, hint, config) -> None:
    meta, name = field.metadata, field.name
    if value is None or "help" not in meta:
        return
    if meta["choices"] is not None and value not in meta["choices"]:
        raise UserError(
            f"--{name}={value}: expected one of {', '.join(meta['choices'])}."
        )
    if hint in (int, float) and isinstance(value, bool):
        raise UserError(f"--{name}={value}: expected a number.")
    if hint is int and int(value) != value:
        raise UserError(f"--{name}={value}: expected a whole number.")
    if meta["unit"] in (PIXEL, LP):
        norm = getattr(config, "norm", "linf") if meta["unit"] == LP else "linf"
        units.check_pixel_value(
            value,
            f"--{name}",
            norm=norm if norm in units.NORMS else "linf",
            allow_zero=not meta["low_open"],
        )
    if meta["unit"] == FRACTION:
        units.check_fraction(
            value,
            f"--{name}",
            high=1.0 if meta["high"] is None else meta["high"],
            allow_zero=not meta["low_open"],
        )
    if hint in (int, float) or (isinstance(value, int | float) and hint is not bool):
        low, high = meta["low"], meta["high"]
        bad = (
            not math.isfinite(float(value))
            or (low is not None and (value <= low if meta["low_open"] else value < low))
            or (high is not None and value > high)
        )
        if bad:
            raise UserError(f"--{name}={_number(value)}: expected {_range_text(meta)}.")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _base_type(hint):
    """(kind, element type): kind is 'scalar', 'optional' or 'tuple'."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        return "tuple", args[0]
    if args and type(None) in args:
        return "optional", next(a for a in args if a is not type(None))
    return "scalar", hint


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every job config: checks each field's range when made."""

    def __post_init__(self):
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            kind, element = _base_type(hints[field.name])
            value = getattr(self, field.name)
            if kind == "tuple":
                for item in value:
                    _check_field(field, item, element, self)
            else:
                _check_field(field, value, element, self)
        self.validate()

    def validate(self) -> None:
        """Checks between fields; subclasses raise UserError naming the flags."""

    def ignored(self) -> dict[str, str]:
        """{setting: why} for the settings this config's mode does not use.

        A setting whose help begins with one choice of another setting
        ("deepfool: ..." beside --method=deepfool|sgd, "resnet9: ..." beside
        --arch) serves that choice only; subclasses add the rest (classify's
        --warmup_epochs under --schedule=triangle). `ignored_notes` names
        those set away from their default.
        """
        found = {}
        for mode in dataclasses.fields(self):
            value = getattr(self, mode.name)
            for choice in mode.metadata.get("choices") or ():
                for field in dataclasses.fields(self):
                    serves = field.metadata.get("help", "").lower()
                    if choice and choice != value and serves.startswith(f"{choice}:"):
                        found[field.name] = (
                            f"only --{mode.name}={choice} uses it, not "
                            f"--{mode.name}={value}"
                        )
        return found


def log_clamped(config: Config, counts: dict[str, int], log) -> None:
    """Logs "note: ..." for each --max_<split>_images above {flag: images found}."""
    for flag, found in counts.items():
        wanted = getattr(config, flag)
        line = clamped(flag, wanted, found, flag.split("_")[1])
        if line:
            log(f"note: {line}")


def clamped(flag: str, wanted: int, found: int, split: str) -> str | None:
    """The line naming a count larger than the images there are, or None.

    E.g. "--max_test_images=5000: the data has only 768 test images; all 768
    are used". `wanted` 0 means all; `found` < 0 means unknown.
    """
    if not wanted or found < 0 or wanted <= found:
        return None
    return (
        f"--{flag}={wanted}: the data has only {found} {split} images; all {found} "
        "are used"
    )


def ignored_notes(config: Config) -> list[str]:
    """One line per setting the config ignores but that is not at its default.

    A value left at its default says nothing; one that was changed (on the
    command line, in a flag file, in Python) and then ignored is a silent
    change unless it is named: "--warmup_epochs=5 is ignored: ...".
    """
    by_name = {field.name: field for field in dataclasses.fields(config)}
    lines = []
    for name, why in config.ignored().items():
        field, value = by_name[name], getattr(config, name)
        if value != field.default:
            if isinstance(value, tuple):
                shown_value = ",".join(shown(v, field) for v in value)
            else:
                shown_value = shown(value, field)
            lines.append(f"--{name}={shown_value} is ignored: {why}")
    return lines


def fields(config_cls) -> list[tuple[dataclasses.Field, str, type]]:
    """(field, kind, element type) of each setting of a config class."""
    hints = _hints(config_cls)
    return [(f, *_base_type(hints[f.name])) for f in dataclasses.fields(config_cls)]


def identity(config: Config) -> dict:
    """The settings that determine a run's result (not folders or figures)."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.metadata.get("defines_result", True)
    }


def resolve(config: Config) -> Config:
    """The config with absolute paths, and data_dir from $CIFAR10_DIR if empty.

    Idempotent; jobs call it first, so flags.cfg and metrics.json record
    paths that replay from any folder.
    """
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "data_dir" and not value:
            value = os.environ.get(ENV_DATA_DIR, "")
        if field.metadata.get("path") and value:
            value = os.path.abspath(os.path.expanduser(value))
        if value != getattr(config, field.name):
            changes[field.name] = value
    return dataclasses.replace(config, **changes) if changes else config


def _serialize(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def flag_lines(config: Config) -> list[str]:
    """The config as flag-file lines that replay it exactly (`--name=value`)."""
    lines = []
    for field, kind, _ in fields(type(config)):
        value = getattr(config, field.name)
        if value is None or not field.metadata.get("replayed", True):
            continue
        if isinstance(value, bool):
            lines.append(f"--{'' if value else 'no'}{field.name}")
        elif kind == "tuple":
            lines.append(f"--{field.name}={','.join(_serialize(v) for v in value)}")
        else:
            lines.append(f"--{field.name}={_serialize(value)}")
    return lines


def from_values(config_cls, values: dict):
    """A config from parsed flag values; list flags become tuples of numbers."""
    converted = {}
    for field, kind, element in fields(config_cls):
        if field.name not in values:
            continue
        value = values[field.name]
        if kind == "tuple":
            value = () if value is None else value
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            value = tuple(
                _element(str(item).strip(), element, field.name)
                for item in items
                if str(item).strip()
            )
        converted[field.name] = value
    return config_cls(**converted)


def _element(text: str, element, name: str):
    if element is float:
        return parse_number(text, name)
    if element is int:
        number = parse_number(text, name)
        if number != int(number):
            raise UserError(f"--{name}={text}: expected whole numbers.")
        return int(number)
    return text


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """Settings of every job: where it writes, what data it reads, its seed."""

    run_dir: str = setting(
        "",
        "Folder for this run's outputs (created if missing).",
        path=True,
        defines_result=False,
    )
    data_dir: str = setting(
        "",
        "Local copy of CIFAR-10: the folder cifar-10-batches-py/ or "
        "cifar-10-batches-bin/, a folder holding one, or an official .tar.gz "
        f"archive. Empty: ${ENV_DATA_DIR} if set, else TFDS cifar10.",
        path=True,
    )
    seed: int = setting(
        0, "Seed for shuffling, initialisation and noise.", low=0, high=SEED_MAX
    )
    overwrite: bool = setting(
        False,
        "Start this run afresh in --run_dir even if it holds a run with other "
        "settings: the files that run made are removed, no others.",
        defines_result=False,
        replayed=False,
    )
