"""denoise_image never destroys input, and refuses what is not a denoiser."""

import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_denoise_adv import denoise_image
from cifar_denoise_adv.core.errors import UserError
from cifar_denoise_adv.denoising import inference
from cifar_denoise_adv.denoising import models


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    models.build_denoiser(num_blocks=1, filters=4, use_skips=True).save(path)
    return str(path)


def _image(seed, size=(12, 10)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def _png(path, seed=0):
    path.write_bytes(tf.io.encode_png(_image(seed)).numpy())
    return path


def _jpg(path, seed=0):
    path.write_bytes(tf.io.encode_jpeg(_image(seed)).numpy())
    return path


def _run(denoiser, **settings):
    argv = ["denoise_image", f"--model={denoiser}"]
    argv += [f"--{name}={value}" for name, value in settings.items()]
    app = denoise_image.APP
    logged = []
    record = app.job(app.parse(argv), log=logged.append)
    return app.exit_status(record), logged


def _snapshot(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))}


def test_output_equal_to_the_input_file_leaves_it_unchanged(denoiser, tmp_path):
    photo = _png(tmp_path / "photo.png")
    before = photo.read_bytes()
    with pytest.raises(UserError, match="would replace the input"):
        _run(denoiser, input=photo, output=photo, overwrite=True)
    assert photo.read_bytes() == before


def test_a_folder_in_place_never_replaces_an_input(denoiser, tmp_path):
    _png(tmp_path / "a.png", 1)
    _jpg(tmp_path / "b.jpg", 2)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match=r"^--output=.*would replace the input .*a.png"):
        _run(denoiser, input=tmp_path, output=tmp_path, overwrite=True)
    assert _snapshot(tmp_path) == before


def test_a_folder_in_place_may_add_new_files(denoiser, tmp_path):
    _jpg(tmp_path / "b.jpg", 2)
    before = _snapshot(tmp_path)
    status, _ = _run(denoiser, input=tmp_path, output=tmp_path)
    assert status == 0
    assert sorted(os.listdir(tmp_path)) == ["b.jpg", "b.png"]
    assert (tmp_path / "b.jpg").read_bytes() == before["b.jpg"]


def test_an_existing_output_is_replaced_only_with_overwrite(denoiser, tmp_path):
    photo = _png(tmp_path / "photo.png")
    existing = tmp_path / "out.png"
    existing.write_bytes(b"my earlier result")
    with pytest.raises(UserError, match=r"out.png exist\(s\) already.*--overwrite"):
        _run(denoiser, input=photo, output=existing)
    assert existing.read_bytes() == b"my earlier result"
    status, _ = _run(denoiser, input=photo, output=existing, overwrite=True)
    assert status == 0
    assert inference.read_rgb_image(str(existing)).shape == (12, 10, 3)


def test_inputs_sharing_a_stem_keep_distinct_outputs(denoiser, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "photo.png", 1)
    _jpg(folder / "photo.jpg", 2)
    status, logged = _run(denoiser, input=folder, output=tmp_path / "out")
    assert status == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["photo.png", "photo_jpg.png"]
    assert logged[-1].startswith("2 of 2 images denoised")


def test_a_bad_output_path_skips_that_image_and_goes_on(denoiser, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "a.png", 1)
    _png(folder / "b.png", 2)
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)  # a folder where a.png should go
    status, logged = _run(denoiser, input=folder, output=out)
    assert status == 1
    assert any(
        "skipped" in line and "a.png: cannot write it" in line for line in logged
    )
    assert os.path.isfile(out / "b.png") and os.path.isdir(out / "a.png")
    assert logged[-1].startswith("1 of 2 images denoised")


def _classifier():
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_a_classifier_run_is_not_a_denoiser(tmp_path):
    run_dir = tmp_path / "classifier_run"
    run_dir.mkdir()
    _classifier().save(run_dir / "model.keras")
    with pytest.raises(UserError) as error:
        inference.load_denoiser(str(run_dir))
    message = str(error.value)
    assert message.startswith(f"--model={run_dir / 'model.keras'}: maps [?, 32, 32, 3]")
    assert "to [?, 10]; expected a denoiser" in message


def test_a_classifier_saved_model_is_not_a_denoiser(tmp_path):
    path = tmp_path / "saved_model"
    _classifier().export(str(path), format="tf_saved_model", verbose=False)
    with pytest.raises(UserError, match="to \\[1, 10\\]; expected a denoiser"):
        inference.load_denoiser(str(path))


def test_a_model_with_code_or_a_truncated_file_is_one_line(denoiser, tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Lambda(lambda x: x * 1.0)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match="contains Python code.*was not loaded"):
        inference.load_denoiser(str(tmp_path / "lambda.keras"))
    content = pathlib.Path(denoiser).read_bytes()
    (tmp_path / "cut.keras").write_bytes(content[: len(content) // 2])
    with pytest.raises(UserError, match="^--model=.*cut.keras: not a whole .keras"):
        inference.load_denoiser(str(tmp_path / "cut.keras"))
