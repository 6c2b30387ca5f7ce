"""Reading the two runs the defense is made of, and checking their kind.

A classifier maps [B, 32, 32, 3] images to [B, 10] logits; a denoiser maps
[B, H, W, 3] images to images of the same shape. A model of the wrong kind
for its flag stops the job with one line that says what it is and what was
expected.
"""

from __future__ import annotations

import os

import keras

from cifar_denoise_adv.adversarial import airbench  # noqa: F401 - registers layers
from cifar_denoise_adv.adversarial import classifier as classifier_lib
from cifar_denoise_adv.core import keras_files
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import precision
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models  # noqa: F401 - registers the layers

NUM_CLASSES = 10
PRECISIONS = precision.CHOICES  # --precision
EXPECTED = {
    "classifier": (
        "a classifier [B, 32, 32, 3] -> [B, 10] logits: the run folder of a "
        "`classify` run, or its model.keras"
    ),
    "denoiser": (
        "a denoiser [B, H, W, 3] -> [B, H, W, 3]: the run folder of a `denoise` "
        "run, or its model.keras"
    ),
}


def keras_file(path: str) -> str:
    """The model.keras of a run folder, or `path` itself when it is a file."""
    if os.path.isdir(path):
        return os.path.join(path, training.KERAS_FILE)
    return path


def run_folder(path: str) -> str:
    """The run folder of a run folder or of a model file inside one."""
    return path if os.path.isdir(path) else os.path.dirname(path)


def load_model(path: str, flag: str) -> keras.Model:
    """The Keras model behind --flag=path (a run folder or a .keras file).

    Raises:
      UserError: naming the flag, when there is no model there or it cannot
        be read as a Keras model (`keras_files.load`: truncated, corrupt, or
        holding code that Keras safe mode does not run).
    """
    what = EXPECTED[flag]
    if not path:
        raise UserError(f"--{flag} is required: {what}.")
    file = keras_file(path)
    if not os.path.isfile(file):
        raise UserError(
            f"--{flag}={path}: no {training.KERAS_FILE} there; expected {what}."
        )
    return keras_files.load(file, flag, compile=False)


def _shape_text(shape) -> str:
    return "[" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(shape)) + "]"


def describe(model: keras.Model) -> str:
    """'[B, None, None, 3] -> [B, 10]': what a model maps to what."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return f"{len(model.inputs)} inputs -> {len(model.outputs)} outputs"
    return (
        f"{_shape_text(model.inputs[0].shape)} -> {_shape_text(model.outputs[0].shape)}"
    )


def _kind(model: keras.Model) -> str | None:
    """'classifier', 'denoiser' or None, from the input and output shapes."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    given, made = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(given) != 4 or given[-1] != 3:
        return None
    fits_32 = all(d in (None, 32) for d in given[1:3])
    if len(made) == 2 and made[-1] == NUM_CLASSES and fits_32:
        return "classifier"
    if len(made) == 4 and made[1:] == given[1:]:
        return "denoiser"
    return None


def check_kind(model: keras.Model, path: str, flag: str) -> keras.Model:
    """`model` if it is of the kind `flag` needs; else one line saying why not."""
    kind = _kind(model)
    if kind == flag:
        return model
    found = f"a {kind}" if kind else "neither a classifier nor a denoiser"
    raise UserError(
        f"--{flag}={path}: this model maps {describe(model)}, {found}; expected "
        f"{EXPECTED[flag]}."
    )


def load_checked(path: str, flag: str, log=lambda message: None) -> keras.Model:
    """`load_model` then `check_kind`: the model --flag names, of its kind.

    A classifier then goes through the attacks' contract check
    (`classifier.check_classifier`): one ending in a softmax comes back as
    its logits model, which `log` says.
    """
    model = check_kind(load_model(path, flag), path, flag)
    if flag == "classifier":
        model = classifier_lib.check_classifier(model, f"--{flag}={path}", log)
    return model


def denoiser_sigma(path: str) -> float | None:
    """The noise sigma a denoise run was trained at (its metrics.json), if known."""
    metrics = os.path.join(run_folder(path), outputs.METRICS_FILE)
    if not os.path.isfile(metrics):
        return None
    sigma = outputs.read_json(
        metrics, f"the {outputs.METRICS_FILE} of a denoise run"
    ).get("sigma")
    return float(sigma) if isinstance(sigma, int | float) else None


def run_digest(path: str) -> str | None:
    """sha256 of the run's metrics.json: which trained model was used."""
    return outputs.file_sha256(os.path.join(run_folder(path), outputs.METRICS_FILE))


def in_precision(requested: str, loaded, log):
    """The two models in the precision --precision=requested means for each here.

    Returns:
      ((classifier, denoiser), {"classifier": record, "denoiser": record}).
    """
    converted, used = [], {}
    for name, model in zip(("classifier", "denoiser"), loaded, strict=True):
        trained = precision.trained_precision(model)
        chosen = precision.choose_for_model(requested, trained)
        log(f"{name} {chosen.line()}")
        if chosen.precision != trained or requested != precision.AUTO:
            model = precision.with_precision(model, chosen.precision)
        converted.append(model)
        used[name] = chosen.record()
    return tuple(converted), used
