"""The package layout keeps its promises: who imports whom, module sizes, docs.

Reads the source, imports nothing from the package: a forbidden import fails
here even when it is hidden inside a function.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cifar_denoise_adv"
MAX_MODULE_LINES = 400
# Longer caps where a concern is whole and splitting it would split one list
# every consumer reads (the attack registry: one entry per attack).
WHOLE_CONCERNS = {
    "adversarial/attacks/registry.py": 500,
    # The study's step list, its settings and the loop that runs the steps:
    # one concern until the steps become data (issue 26, item 3).
    "study/plan.py": 410,
}

# Concern -> concerns it must not import (the apps and `study` sit above all).
FORBIDDEN = {
    "core": {"denoising", "adversarial", "defense", "study"},
    "denoising": {"adversarial", "defense", "study"},
    "adversarial": {"denoising", "defense", "study"},
    "defense": {"study"},
}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _concern(path: pathlib.Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else "app"


def _imported_concerns(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    concerns = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "cifar_denoise_adv" and len(parts) > 1:
            concerns.add(parts[1])
    return concerns


def test_the_checker_reads_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from cifar_denoise_adv.adversarial import attacks\n"
        "import cifar_denoise_adv.study.plan\n"
    )
    assert _imported_concerns(module) == {"adversarial", "study"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_dependency_rule(path):
    concern = _concern(path)
    forbidden = FORBIDDEN.get(concern, set()) & _imported_concerns(path)
    assert not forbidden, f"{concern} must not import {sorted(forbidden)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_short(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    cap = WHOLE_CONCERNS.get(str(path.relative_to(PACKAGE)), MAX_MODULE_LINES)
    assert lines <= cap, f"{lines} lines: split it by concern"


def test_apps_are_where_users_call_them():
    for app in (
        "noise",
        "denoise",
        "compare",
        "denoise_image",
        "classify",
        "targeted",
        "universal",
        "sweep",
        "defend",
    ):
        source = (PACKAGE / f"{app}.py").read_text(encoding="utf-8")
        assert "APP = apps.App(" in source, app
        assert 'if __name__ == "__main__":' in source, app
    assert "APP = apps.App(" in (PACKAGE / "study" / "__main__.py").read_text()


def test_build_md_module_map_matches_the_tree():
    text = (ROOT / "BUILD.md").read_text(encoding="utf-8")
    section = text.split("## Module layout", 1)[1].split("\n## ", 1)[0]
    first_cells = [
        line.split("|")[1] for line in section.splitlines() if line.startswith("| `")
    ]
    documented = set(re.findall(r"`([\w/]+\.py)`", " ".join(first_cells)))
    actual = {
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if p.name != "__init__.py" or p.parent.name == "attacks"
    }
    actual -= {"__init__.py"}
    assert documented == actual, (
        f"missing from BUILD.md: {sorted(actual - documented)}; "
        f"not in the tree: {sorted(documented - actual)}"
    )
