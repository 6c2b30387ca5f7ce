"""Applying a trained denoiser to image files of any size.

`run(config)` is the `denoise_image` app's job. Images are read as viewers
show them: the EXIF orientation of a phone photo is applied (as Pillow's
`ImageOps.exif_transpose` and every viewer apply it), and what the written
PNG cannot keep (an ICC colour profile, other EXIF data, 16-bit depth) is
said in the image's output line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from PIL import Image

from cifar_denoise_adv.core import arrays
from cifar_denoise_adv.core import config as config_lib
from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import export
from cifar_denoise_adv.core import keras_files
from cifar_denoise_adv.core import outputs
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core.config import setting
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import models  # noqa: F401 - registers the layers

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> what viewers do to the stored pixels, and the same on
# an [H, W, C] array (the transpositions of Pillow's ImageOps.exif_transpose).
ORIENTATIONS = {
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("turned 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1]),
    5: ("mirrored along the diagonal", lambda a: a.transpose(1, 0, 2)),
    6: ("turned 90 degrees clockwise", lambda a: np.rot90(a, -1)),
    7: (
        "mirrored along the other diagonal",
        lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    ),
    8: ("turned 90 degrees counter-clockwise", lambda a: np.rot90(a, 1)),
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class DenoiseImageConfig(config_lib.Config):
    """The model and the files (the `denoise_image` app's flags)."""

    model: str = setting(
        "",
        "Run folder, .keras file or SavedModel of a denoiser. A SavedModel is "
        "a program and is run: give only ones you trust.",
        path=True,
    )
    input: str = setting("", "A PNG/JPEG file, or a folder of them.", path=True)
    output: str = setting("", "Output PNG file, or folder.", path=True)
    overwrite: bool = setting(
        False,
        "Replace output files that exist already (never an input file).",
        replayed=False,
    )

    def validate(self):
        for name in ("model", "input", "output"):
            if not getattr(self, name):
                raise UserError(f"--{name} is required.")


def run(config: DenoiseImageConfig, log=lambda message: None) -> dict:
    """Denoises the input file(s); logs one line per image.

    Every output file is planned and checked before the model is loaded
    (`plan_outputs`): no input is ever replaced, and an existing file only
    with --overwrite.

    Returns:
      {"denoised": [files], "failed": {file: reason}}.
    """
    jobs = plan_outputs(config.input, config.output, config.overwrite)
    denoise = load_denoiser(config.model)
    results = denoise_files(denoise, jobs)
    failed = {source: error for source, error in results if error}
    for source, error in results:
        log(f"skipped {error}" if error else _denoised_line(source))
    done = len(results) - len(failed)
    log(f"{done} of {len(results)} images denoised into {config.output}")
    return {"denoised": [s for s, e in results if not e], "failed": failed}


def _denoised_line(source: str) -> str:
    """`denoised FILE`, with what reading changed and the PNG does not keep."""
    notes = metadata_notes(source)
    return f"denoised {source}" + (f": {'; '.join(notes)}" if notes else "")


def load_denoiser(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A denoising function from a run folder, a .keras file or a SavedModel.

    A run folder is read from its model.keras, or its saved_model/ when the
    Keras file is missing. A .keras file is loaded in Keras safe mode
    (`core.keras_files`); a SavedModel is a program and is run as it is.

    Returns:
      A function: float32 [B, H, W, 3] in [0, 1] -> denoised, in [0, 1].

    Raises:
      UserError: naming --model, when there is no model there, it cannot be
        loaded, or it is not a denoiser (which maps [B, H, W, 3] images to
        the same shape: a classifier run is refused).
    """
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")):
        keras_file = os.path.join(path, training.KERAS_FILE)
        saved_model = os.path.join(path, training.SAVED_MODEL_DIR)
        if os.path.isfile(keras_file):
            path = keras_file
        elif os.path.isdir(saved_model):
            path = saved_model
        else:
            raise UserError(
                f"--model={path}: holds neither {training.KERAS_FILE} nor "
                f"{training.SAVED_MODEL_DIR}/; expected a run folder of the "
                "denoise app, a .keras file or a SavedModel folder."
            )
    if path.endswith(".keras"):
        model = keras_files.load(path, "model", compile=False)
        _check_denoiser(path, model.inputs, model.outputs)
        return arrays.checking(lambda x: np.clip(model.predict(x, verbose=0), 0, 1))
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        # Keep the loaded object alive: its functions reference its variables.
        loaded = tf.saved_model.load(path)
        probe = np.zeros([1, 32, 32, 3], np.float32)
        try:
            output = export.serve(loaded, probe)
        except Exception as error:  # noqa: BLE001 - whatever a foreign program raises
            raise UserError(
                f"--model={path}: this SavedModel does not map [1, 32, 32, 3] images "
                f"({type(error).__name__}); expected a denoiser of the denoise app."
            ) from None
        _check_denoiser(path, [probe], [output])
        return arrays.checking(lambda x: np.clip(export.serve(loaded, x), 0, 1))
    raise UserError(
        f"--model={path}: not found, or not a run folder, .keras file or SavedModel."
    )


def _header(path: str):
    """(EXIF tags, ICC profile or None, PNG bit depth or None); empty if unreadable."""
    try:
        with Image.open(path) as image:
            exif, icc = dict(image.getexif()), image.info.get("icc_profile")
        with open(path, "rb") as f:
            start = f.read(25)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return {}, None, None
    depth = start[24] if start[:8] == _PNG_SIGNATURE and len(start) == 25 else None
    return exif, icc, depth


def exif_orientation(path: str) -> int:
    """The image's EXIF orientation, 1 to 8 (1: stored as shown, or no tag)."""
    orientation = _header(path)[0].get(EXIF_ORIENTATION, 1)
    return orientation if orientation in ORIENTATIONS else 1


def metadata_notes(path: str) -> list[str]:
    """What reading changed and what the written 8-bit PNG cannot keep.

    Returns:
      Short phrases for the image's output line: the EXIF orientation
      applied, and the ICC colour profile, other EXIF tags and 16-bit depth
      that the output leaves out; [] when there is nothing to say.
    """
    exif, icc, depth = _header(path)
    notes = []
    orientation = exif.get(EXIF_ORIENTATION, 1)
    if orientation in ORIENTATIONS:
        notes.append(
            f"EXIF orientation {orientation} applied "
            f"({ORIENTATIONS[orientation][0]}, as viewers show it)"
        )
    lost = []
    if icc:
        lost.append("its ICC colour profile (colours may differ in some viewers)")
    others = sum(tag != EXIF_ORIENTATION for tag in exif)
    if others:
        tags = "tag" if others == 1 else "tags"
        lost.append(f"{others} other EXIF {tags} (camera, date, place)")
    if depth == 16:
        lost.append("16-bit depth (written as 8-bit)")
    if lost:
        notes.append("not kept in the PNG: " + ", ".join(lost))
    return notes


def _check_denoiser(path: str, inputs: list, outputs_: list) -> None:
    """Refuses a model that does not map [B, H, W, 3] to the same shape."""
    shapes = [tuple(t.shape) for t in (*inputs, *outputs_)]
    if (
        len(inputs) == 1
        and len(outputs_) == 1
        and len(shapes[0]) == 4
        and shapes[0][-1] == 3
        and _same_shape(shapes[0], shapes[1])
    ):
        return
    shown = ", ".join(
        "[" + ", ".join("?" if d is None else str(d) for d in s) + "]" for s in shapes
    )
    raise UserError(
        f"--model={path}: maps {shown.replace(', [', ' to [', 1)}; expected a "
        "denoiser, which maps [B, H, W, 3] images to the same shape (a classify "
        "run is not one)."
    )


def _same_shape(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=True)
    )


def read_rgb_image(path: str) -> np.ndarray:
    """Reads a PNG or JPEG as float32 [H, W, 3] in [0, 1], as viewers show it.

    The EXIF orientation is applied (a phone photo stored 16x8 with
    orientation 6 comes back 8 wide and 16 high); 16-bit PNGs keep their
    precision; CMYK JPEGs and palette PNGs come back as RGB. JPEGs are
    decoded with libjpeg's accurate integer IDCT, as Pillow and viewers
    decode them (TF's default fast IDCT is off by a few levels, 12 on
    one test photo).

    Raises:
      UserError: naming the file, when it is not a readable PNG or JPEG or
        not a colour image.
    """
    try:
        # The decoders log C++ warnings on a damaged file before they raise.
        with console.cpp_warnings_hidden():
            content = tf.io.read_file(path)
            if tf.io.is_jpeg(content):
                pixels = tf.io.decode_jpeg(content, dct_method="INTEGER_ACCURATE")
                image = tf.image.convert_image_dtype(pixels, tf.float32)
            else:
                image = tf.io.decode_image(
                    content, channels=0, dtype=tf.float32, expand_animations=False
                )
    except (tf.errors.OpError, ValueError) as error:
        reason = console.op_error_message(error)
        message = f"{path}: cannot read it as a PNG or JPEG image ({reason})."
        raise UserError(message) from None
    channels = int(image.shape[-1])
    if channels != 3:
        kind = {1: "grayscale", 2: "grayscale with alpha", 4: "RGBA"}.get(channels)
        raise UserError(
            f"{path}: a {kind or f'{channels}-channel'} image; expected RGB "
            "(3 channels)."
        )
    # Samples are scaled to [0, 1] (8-bit and 16-bit alike).
    orient = ORIENTATIONS.get(exif_orientation(path), (None, lambda a: a))[1]
    return np.ascontiguousarray(orient(image.numpy()))


def write_png(path: str, image: np.ndarray) -> None:
    """Writes float [H, W, 3] in [0, 1] as an 8-bit PNG, atomically."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    encoded = tf.io.encode_png(pixels).numpy()
    with (
        outputs.atomic_path(path, suffix=".png") as temporary,
        open(temporary, "wb") as f,
    ):
        f.write(encoded)


def _output_names(names: list[str]) -> dict[str, str]:
    """Output file name per input name: stem.png, distinct for shared stems.

    photo.png and photo.jpg in one folder give photo.png and photo_jpg.png:
    only an exact ".png" keeps the plain name when several share a stem.
    """
    by_stem: dict[str, list[str]] = {}
    for name in names:
        by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
    result = {}
    for stem, group in by_stem.items():
        for name in group:
            extension = os.path.splitext(name)[1]
            plain = len(group) == 1 or extension == ".png"
            result[name] = f"{stem}.png" if plain else f"{stem}_{extension[1:]}.png"
    return result


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b) or (
        os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    )


def plan_outputs(
    input_path: str, output_path: str, overwrite: bool = False
) -> list[tuple[str, str]]:
    """(input file, output file) pairs, checked before anything is written.

    Args:
      input_path: an image file or a folder of them.
      output_path: the output file (for one image; an existing folder gets a
        file of the same stem) or folder (for a folder; made when written).
      overwrite: whether output files that exist may be replaced.

    Returns:
      The pairs, with distinct outputs for inputs that share a stem.

    Raises:
      UserError: naming --output, when an output would replace an input
        file (--output equal to --input, or the folder in place), when one
        exists already and `overwrite` is False, or when two would collide;
        naming --input when there is no image there.
    """
    if os.path.isdir(input_path):
        names = sorted(
            n
            for n in os.listdir(input_path)
            if n.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(input_path, n))
        )
        if not names:
            raise UserError(
                f"--input={input_path}: no {'/'.join(IMAGE_EXTENSIONS)} files in it."
            )
        if os.path.exists(output_path) and not os.path.isdir(output_path):
            raise UserError(
                f"--output={output_path}: a file; expected a folder for the "
                f"images of the folder --input={input_path}."
            )
        targets = _output_names(names)
        jobs = [
            (os.path.join(input_path, n), os.path.join(output_path, targets[n]))
            for n in names
        ]
        inputs = [os.path.join(input_path, n) for n in os.listdir(input_path)]
    elif os.path.isfile(input_path):
        target = output_path
        if os.path.isdir(output_path):
            base = os.path.splitext(os.path.basename(input_path))[0] + ".png"
            target = os.path.join(output_path, base)
        jobs, inputs = [(input_path, target)], [input_path]
    else:
        raise UserError(f"--input={input_path}: no such file or folder.")
    _check_targets(jobs, inputs, output_path, overwrite)
    return jobs


def _check_targets(jobs, inputs: list[str], output_path: str, overwrite: bool):
    for _, target in jobs:
        if any(_same_file(target, source) for source in inputs):
            raise UserError(
                f"--output={output_path}: would replace the input {target}; "
                "choose an --output outside the input files."
            )
    # A folder in the way is not replaced either: that image is skipped.
    existing = [t for _, t in jobs if os.path.isfile(t) or os.path.islink(t)]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(
            f"--output={output_path}: {existing[0]}{more} exist(s) already; choose "
            "another --output, or add --overwrite to replace them."
        )


def denoise_files(
    denoise: Callable[[np.ndarray], np.ndarray], jobs: list[tuple[str, str]]
) -> list[tuple[str, str | None]]:
    """Denoises each (input, output) pair of `plan_outputs`.

    Args:
      denoise: from `load_denoiser`.
      jobs: (input image file, output PNG file) pairs.

    Returns:
      [(input file, None if written else the error message)]; an image that
      cannot be read or whose output cannot be written is skipped, and the
      others go on.
    """
    results = []
    for source, target in jobs:
        try:
            image = read_rgb_image(source)
            write_png(target, denoise(image[None])[0])
            results.append((source, None))
        except UserError as error:
            results.append((source, str(error)))
        except OSError as error:
            results.append(
                (source, f"{target}: cannot write it ({error.strerror or error}).")
            )
    return results
