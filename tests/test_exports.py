"""Every .keras file an app writes loads in a fresh process after one import.

README promises that after `import cifar_denoise_adv` a run's model loads
with `keras.saving.load_model`, and the attack apps take any classifier
`.keras` as --classifier. Each app that exports a model (denoise, classify,
defend: model.keras and randomised.keras) runs here on tiny data; then a
fresh Python, which imports only `cifar_denoise_adv` and keras, loads every
`.keras` file found under the runs and compares its outputs with the
model's in this process.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from cifar_denoise_adv import classify
from cifar_denoise_adv import defend
from cifar_denoise_adv import denoise
from tests.conftest import write_cifar
from tests.test_package import ROOT
from tests.test_package import _python

EXPECTED = {
    "denoise/model.keras",
    "classify/model.keras",
    "defend/model.keras",
    "defend/randomised.keras",
}


def _run(app, *argv):
    app.APP.job(app.APP.parse([app.APP.name, *argv]), log=lambda message: None)


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    keras.utils.set_random_seed(0)
    data_dir, _ = write_cifar(root / "data", "python", per_file=8)
    data = f"--data_dir={data_dir}"
    _run(
        denoise,
        data,
        f"--run_dir={root / 'denoise'}",
        "--num_blocks=1",
        "--filters=4",
        "--downscale=2",
        "--batch_size=8",
        "--epochs=1",
        "--num_examples=2",
        "--validation_images=4",
    )
    _run(
        classify,
        data,
        f"--run_dir={root / 'classify'}",
        "--width=4",
        "--epochs=1",
        "--batch_size=8",
        "--learning_rate=1e-3",
        "--validation_images=4",
    )
    _run(
        defend,
        data,
        f"--run_dir={root / 'defend'}",
        f"--classifier={root / 'classify'}",
        f"--denoiser={root / 'denoise'}",
        "--num_images=4",
        "--adaptive_images=4",
        "--eot_images=2",
        "--epsilons=8/255",
        "--reference_epsilon=8/255",
        "--pgd_steps=1",
        "--eot_draws=1",
        "--eval_draws=1",
        "--targeted_steps=1",
        "--universal_train_images=8",
        "--universal_epochs=1",
        "--universal_batch_size=8",
        "--square_queries=1",
        "--square_images=2",
        "--batch_size=8",
        "--num_examples=1",
    )
    return root


def test_every_keras_file_an_app_writes_loads_in_a_fresh_process(app_runs):
    found = {p.relative_to(app_runs).as_posix() for p in app_runs.rglob("*.keras")}
    assert EXPECTED <= found, found
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    expected = {}
    for name in sorted(found):
        model = keras.saving.load_model(app_runs / name)
        if "randomised" not in name:  # fresh noise at every call
            expected[name] = model.predict(images, verbose=0)
    np.savez(app_runs / "expected.npz", images=images)
    (app_runs / "expected.json").write_text(
        json.dumps({name: value.tolist() for name, value in expected.items()})
    )
    code = textwrap.dedent(
        """
        import json
        import sys

        import cifar_denoise_adv
        import keras
        import numpy as np

        images = np.load("expected.npz")["images"]
        expected = json.load(open("expected.json"))
        for name in sys.argv[1:]:
            got = keras.saving.load_model(name).predict(images, verbose=0)
            want = np.asarray(expected.get(name, got))
            print(name, list(got.shape), float(np.abs(got - want).max()))
        """
    )
    result = _python(["-c", code, *sorted(found)], cwd=app_runs, pythonpath=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines()]
    assert sorted(line[0] for line in lines) == sorted(found)
    for name, shape, difference in ((n, " ".join(s), d) for n, *s, d in lines):
        width = 10 if name != "denoise/model.keras" else 3
        assert shape.endswith(f"{width}]"), (name, shape)
        assert float(difference) < 1e-5, name


@pytest.mark.parametrize("name", ["defend/model.keras", "defend/randomised.keras"])
def test_the_defended_exports_are_accepted_as_classifier_by_a_fresh_app(
    app_runs, name
):
    code = textwrap.dedent(
        f"""
        import cifar_denoise_adv
        from cifar_denoise_adv.adversarial import classifier

        model = classifier.load_classifier({str(app_runs / name)!r})
        print(model.name, model.output_shape)
        """
    )
    result = _python(code, cwd=app_runs, pythonpath=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(None, 10)" in result.stdout


def test_importing_the_package_registers_every_custom_keras_class():
    # The classes a saved model can name, in every module of the package: a
    # fresh process that imports only the package must know each of them.
    code = textwrap.dedent(
        """
        import ast, pathlib
        import cifar_denoise_adv
        import keras

        root = pathlib.Path(cifar_denoise_adv.__file__).parent
        missing = []
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    "register_keras_serializable" in ast.unparse(d)
                    for d in node.decorator_list
                ):
                    names = [
                        key for key in keras.saving.get_custom_objects()
                        if key.endswith(">" + node.name)
                    ]
                    if not names:
                        missing.append(f"{path.name}:{node.name}")
        print(" ".join(missing) or "none")
        """
    )
    result = _python(code, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["none"]
