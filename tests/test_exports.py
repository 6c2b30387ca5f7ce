"""Every app that writes a .keras file has it reloaded in a fresh process.

The reload itself is `tests/reload.py`'s `assert_keras_files_reload`, run on
each app's tiny run where its other tests already made one (no extra
training here). This file checks that no app is left out and that the
package import registers every custom Keras class of the package.
"""

import ast
import textwrap

import pytest

from tests.reload import ROOT
from tests.test_package import _python

PACKAGE = ROOT / "cifar_denoise_adv"

# App -> the test module that reloads its run's .keras files (None: the app
# writes no .keras file).
EXPORTS = {
    "noise": None,  # noisy images as .npz
    "denoise": "tests/denoising/test_denoise.py",
    "compare": None,
    "denoise_image": None,  # PNG files
    "classify": "tests/adversarial/test_attack_apps.py",
    "targeted": None,
    "universal": None,
    "sweep": None,  # universal runs' perturbations as .npz
    "defend": "tests/defense/test_defend_app.py",
    "study": None,  # runs the apps above in step folders
}


def _apps():
    names = {p.stem for p in PACKAGE.glob("*.py") if "APP = " in p.read_text()}
    if (PACKAGE / "study" / "__main__.py").exists():
        names.add("study")
    return names


def test_every_app_is_listed():
    assert _apps() == set(EXPORTS)


@pytest.mark.parametrize("app", sorted(a for a, t in EXPORTS.items() if t))
def test_each_exporting_app_has_its_files_reloaded(app):
    source = (ROOT / EXPORTS[app]).read_text()
    assert "assert_keras_files_reload(" in source, app


def test_an_app_that_saves_keras_files_is_listed_as_exporting():
    # A job module that saves a Keras file (save_keras, a training run's
    # finish_training, the defense's pipeline_lib.export) belongs to an app
    # with a reload test.
    savers = set()
    for path in PACKAGE.rglob("*_job.py"):
        text = path.read_text()
        if any(
            call in text
            for call in ("save_keras(", "finish_training(", "pipeline_lib.export(")
        ):
            savers.add(path.stem.removesuffix("_job"))
    assert savers <= {a for a, t in EXPORTS.items() if t}, savers


def test_importing_the_package_registers_every_custom_keras_class():
    registered = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                "register_keras_serializable" in ast.unparse(d)
                for d in node.decorator_list
            ):
                registered.append(node.name)
    assert {"ClipPixels", "PixelNoise", "Shift", "PixelUnshuffle"} <= set(registered)
    code = textwrap.dedent(
        f"""
        import cifar_denoise_adv
        import keras

        known = {{key.split(">")[-1] for key in keras.saving.get_custom_objects()}}
        print(" ".join(sorted(set({registered!r}) - known)) or "none")
        """
    )
    result = _python(code, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["none"]
