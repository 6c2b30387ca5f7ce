"""A run's .keras files, loaded in a fresh Python after `import cifar_denoise_adv`.

README promises that after the package import alone every `.keras` file an
app writes loads with `keras.saving.load_model`, and that the attack apps
take any classifier `.keras` as --classifier. Each app that exports a model
checks its tiny run's files with `assert_keras_files_reload`;
`tests/test_exports.py` checks that every such app does.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent

_CODE = textwrap.dedent(
    """
    import json
    import sys

    import cifar_denoise_adv
    import keras
    import numpy as np

    images = np.load(sys.argv[1])["images"]
    expected = json.loads(open(sys.argv[2]).read())
    for name in expected:
        got = keras.saving.load_model(name).predict(images, verbose=0)
        want = np.asarray(expected[name] if expected[name] is not None else got)
        print("loaded", name, got.shape[-1], float(np.abs(got - want).max()))
    # --classifier: the attack apps' loader, after the same import.
    from cifar_denoise_adv.adversarial import classifier

    for name in sys.argv[3:]:
        print("classifier", name, classifier.load_classifier(name).output_shape[-1])
    """
)


def _random(model) -> bool:
    """Whether the model draws noise at every call (its outputs differ)."""
    from cifar_denoise_adv.defense import pipeline

    return pipeline.noise_layer(model) is not None


def assert_keras_files_reload(folder, expected_names, classifiers=(), tmp_path=None):
    """Every .keras under `folder` loads in a fresh process, with the same outputs.

    Args:
      folder: a run folder (searched recursively).
      expected_names: paths relative to `folder` that must be among them.
      classifiers: relative paths also loaded as --classifier.
      tmp_path: where the probe images and expected outputs are written
        (default: `folder`'s parent).
    """
    folder = pathlib.Path(folder)
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.keras"))
    assert set(expected_names) <= set(found), found
    work = pathlib.Path(tmp_path or folder.parent)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.savez(work / "reload_images.npz", images=images)
    expected = {}
    for name in found:
        model = keras.saving.load_model(folder / name)
        outputs = None if _random(model) else model.predict(images, verbose=0)
        expected[str(folder / name)] = None if outputs is None else outputs.tolist()
    (work / "reload_expected.json").write_text(json.dumps(expected))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _CODE,
            str(work / "reload_images.npz"),
            str(work / "reload_expected.json"),
            *(str(folder / name) for name in classifiers),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, accepted = {}, []
    for line in result.stdout.splitlines():
        kind, name, width, *rest = line.split()
        if kind == "loaded":
            loaded[name] = float(rest[0])
        elif kind == "classifier" and width == "10":
            accepted.append(name)
    assert sorted(loaded) == sorted(expected), result.stdout
    assert all(difference < 1e-5 for difference in loaded.values()), loaded
    assert len(accepted) == len(classifiers), result.stdout
    return found
