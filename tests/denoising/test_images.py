"""Image files as users have them: phone photos, CMYK, 16-bit, palette, tiny."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from PIL import ImageCms
from PIL import ImageOps

from cifar_denoise_adv import denoise_image
from cifar_denoise_adv.denoising import inference

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _exif(orientation, tags=None):
    exif = Image.Exif()
    exif[inference.EXIF_ORIENTATION] = orientation
    for tag, value in (tags or {}).items():
        exif[tag] = value
    return exif


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    """A .keras 'denoiser' that returns its input: the pixels stay checkable."""
    path = tmp_path_factory.mktemp("identity") / "identity.keras"
    keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()]).save(path)
    return path


def test_a_phone_photo_comes_out_as_the_user_sees_it(identity_model, tmp_path):
    # Stored 16 wide and 8 high, red left half, blue right half; orientation 6
    # tells viewers to turn it 90 degrees clockwise: 8 wide, 16 high, red on top.
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :8], stored[:, 8:] = RED, BLUE
    photo = tmp_path / "photo.jpg"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(stored).save(
        photo,
        quality=95,
        subsampling=0,  # no chroma blur across the halves
        exif=_exif(6, {0x010F: "PhoneMaker"}),  # the camera's make
        icc_profile=icc,
    )
    app = denoise_image.APP
    output = tmp_path / "photo_denoised.png"
    logged = []
    config = app.parse(
        ["prog", f"--model={identity_model}", f"--input={photo}", f"--output={output}"]
    )
    assert app.exit_status(app.job(config, logged.append)) == 0
    assert logged[0] == (
        f"denoised {photo}: EXIF orientation 6 applied (turned 90 degrees "
        "clockwise, as viewers show it); not kept in the PNG: its ICC colour "
        "profile (colours may differ in some viewers), 1 other EXIF tag (camera, "
        "date, place)"
    )
    with Image.open(output) as written:
        assert written.size == (8, 16)  # width, height as the viewer showed it
        assert inference.EXIF_ORIENTATION not in written.getexif()
        pixels = np.asarray(written.convert("RGB")).astype(int)
    assert np.abs(pixels[:8] - RED).max() <= 4
    assert np.abs(pixels[8:] - BLUE).max() <= 4
    # The same as Pillow, which applies the tag as viewers do.
    with Image.open(photo) as shown:
        expected = np.asarray(ImageOps.exif_transpose(shown)).astype(int)
    assert np.abs(pixels - expected).max() <= 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_pillow_applies_it(orientation, tmp_path):
    # A lossless PNG with the tag (eXIf chunk), so pixels compare exactly.
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = tmp_path / "tagged.png"
    Image.fromarray(stored).save(path, exif=_exif(orientation))
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image)) / 255.0
    np.testing.assert_allclose(inference.read_rgb_image(str(path)), expected, atol=1e-6)
    assert inference.exif_orientation(str(path)) == orientation


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_jpeg_reads_as_pillow_shows_it(orientation, tmp_path):
    # Gradients plus noise, chroma subsampled: TF's default fast IDCT is off
    # by up to 3 levels here; the accurate one matches Pillow's libjpeg exactly.
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:24, 0:40]
    smooth = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1)
    stored = np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255)
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored.astype(np.uint8)).save(
        path, quality=75, exif=_exif(orientation)
    )
    with Image.open(path) as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    read = inference.read_rgb_image(str(path))
    assert read.dtype == np.float32 and read.shape == shown.shape
    np.testing.assert_array_equal(np.round(read * 255).astype(np.uint8), shown)


def test_files_that_already_read_right_still_do(tmp_path):
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 256, (2, 2, 3)), np.ones((8, 8, 1)))
    rgb = blocks.astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    np.testing.assert_allclose(
        inference.read_rgb_image(str(tmp_path / "cmyk.jpg")), rgb / 255.0, atol=2 / 255
    )
    # 16-bit PNG: the precision beyond 8 bits is kept on reading, and the
    # output line says the 8-bit PNG does not keep it.
    deep = (np.arange(27).reshape(3, 3, 3) * 2000 + 7).astype(np.uint16)
    (tmp_path / "deep.png").write_bytes(tf.io.encode_png(deep).numpy())
    np.testing.assert_allclose(
        inference.read_rgb_image(str(tmp_path / "deep.png")), deep / 65535.0, atol=1e-7
    )
    assert inference.metadata_notes(str(tmp_path / "deep.png")) == [
        "not kept in the PNG: 16-bit depth (written as 8-bit)"
    ]
    palette = Image.fromarray(rgb).quantize(4)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_allclose(
        inference.read_rgb_image(str(tmp_path / "palette.png")),
        np.asarray(palette.convert("RGB")) / 255.0,
    )
    for shape in ((1, 1, 3), (5, 7, 3)):
        odd = rng.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(odd).save(tmp_path / "odd.png")
        np.testing.assert_allclose(
            inference.read_rgb_image(str(tmp_path / "odd.png")), odd / 255.0
        )
        assert inference.metadata_notes(str(tmp_path / "odd.png")) == []
