"""The docs say what is true: every README figure is in BENCHMARKS.md, every
app a command, the common flags as README lists them, BUILD.md's modules once.
"""

import configparser
import dataclasses
import importlib
import pathlib
import pkgutil
import re

import pytest

import cifar_denoise_adv
from cifar_denoise_adv.study import __main__ as study

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BENCHMARKS = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
# A number, not part of a name, a flag file or a path (resnet_8, x64, 10/255's
# 255 is a number too: budgets are quoted that way in both files).
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*[a-z_])")


def _tables(text):
    """Markdown tables as lists of rows, each a list of cells."""
    tables, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _results_tables():
    """README's tables of measured results (a `minutes` or accuracy column)."""
    return [
        t
        for t in _tables(README)
        if {"minutes", "PSNR(x, y) test", "bare classifier"} & set(t[0])
    ]


def _in_benchmarks(number: str) -> bool:
    """The number is in BENCHMARKS.md, to the digits README gives."""
    if re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", BENCHMARKS):
        return True
    if "." not in number:
        return False
    # README may round: 82.3 for BENCHMARKS' 82.25.
    half = 0.5 * 10 ** -len(number.split(".")[1])
    return any(
        abs(float(found) - float(number)) <= half + 1e-9
        for found in re.findall(r"\d+\.\d+", BENCHMARKS)
        if len(found.split(".")[1]) > len(number.split(".")[1])
    )


def test_readme_has_three_results_tables():
    assert len(_results_tables()) == 3


@pytest.mark.parametrize("table", range(3))
def test_every_number_in_readmes_results_tables_is_in_benchmarks(table):
    rows = _results_tables()[table]
    missing = [
        (row[0][:40], number)
        for row in rows[2:]
        for cell in row[1:]
        if not cell.startswith("`")  # the flag file's name
        for number in NUMBER.findall(cell)
        if not _in_benchmarks(number)
    ]
    assert not missing, missing


def _apps():
    """{name: App} of every app module (`python -m cifar_denoise_adv.NAME`)."""
    found = {}
    for module in pkgutil.iter_modules(cifar_denoise_adv.__path__):
        if not module.ispkg:
            imported = importlib.import_module(f"cifar_denoise_adv.{module.name}")
            app = getattr(imported, "APP", None)
            if app is not None:
                found[module.name] = app
    found["study"] = study.APP
    return found


def test_every_app_is_a_console_script_and_readme_names_it():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = dict(line.replace(" ", "").split("=") for line in lines)
    apps = _apps()
    assert len(apps) == 10
    for name in apps:
        module = "study.__main__" if name == "study" else name
        command = "cifar-" + name.replace("_", "-")
        assert scripts.get(command) == f"cifar_denoise_adv.{module}:APP.main", name
        assert f"`{command}`" in README, command
    assert len(scripts) == len(apps)


def test_the_common_flags_are_as_readme_says():
    fields = {
        name: {f.name for f in dataclasses.fields(app.config)}
        for name, app in _apps().items()
    }
    reading = ["noise", "denoise", "classify", "targeted", "universal", "sweep"]
    reading.append("defend")
    listed = ", ".join(f"`{name}`" for name in reading)
    assert f"The seven that read CIFAR-10 ({listed})" in " ".join(README.split())
    for name in reading:
        assert {"data_dir", "run_dir", "seed"} <= fields[name], name
    assert "run_dir" in fields["compare"] and "data_dir" not in fields["compare"]
    assert "output" in fields["denoise_image"]
    assert {"data_dir", "study_dir"} <= fields["study"]


def test_build_md_lists_each_module_once():
    build = (ROOT / "BUILD.md").read_text(encoding="utf-8")
    modules = [
        row[0] for t in _tables(build) for row in t[2:] if row[0].endswith(".py`")
    ]
    assert len(modules) == len(set(modules)), sorted(modules)
