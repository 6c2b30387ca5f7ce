"""The figures every job draws: image grids, histograms, count matrices."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from cifar_denoise_adv.core import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(count, seed=0):
    return np.random.default_rng(seed).uniform(size=(count, 8, 8, 3))


def test_magnify_maps_zero_to_grey_and_clips():
    difference = np.array([[-1.0, -0.01, 0.0, 0.01, 1.0]])
    shown = plots.magnify(difference, 10.0)
    assert shown.shape == difference.shape
    np.testing.assert_allclose(shown, [[0.0, 0.4, 0.5, 0.6, 1.0]])


def test_image_grid_has_one_axis_per_image_with_its_caption():
    images = _images(6)
    rows = [list(images[0:3]), list(images[3:6])]
    captions = [["a", "b", "c"], ["d", "e", "f"]]
    figure = plots.image_grid(rows, captions, ["x", "y", "z"], title="grid")
    assert len(figure.axes) == 6
    assert [axis.get_xlabel() for axis in figure.axes] == list("abcdef")
    # Column titles on the first row only.
    assert [axis.get_title() for axis in figure.axes] == ["x", "y", "z", "", "", ""]
    assert figure.get_suptitle() == "grid"
    width, height = figure.get_size_inches()
    assert width == pytest.approx(3 * 1.9)
    assert height == pytest.approx((1.9 + 0.35) * 2 + 0.4)
    # Images are shown clipped to [0, 1].
    shown = figure.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(shown, images[0])


def test_image_grid_clips_out_of_range_pixels():
    image = np.full((4, 4, 3), 2.0)
    image[0, 0] = -1.0
    figure = plots.image_grid([[image]], [["c"]], ["t"])
    shown = np.asarray(figure.axes[0].get_images()[0].get_array())
    assert shown.min() == 0.0 and shown.max() == 1.0


def test_image_grid_refuses_ragged_or_empty_rows():
    images = _images(3)
    with pytest.raises(ValueError, match="one image per column"):
        plots.image_grid([], [], ["x"])
    with pytest.raises(ValueError, match="one image per column"):
        plots.image_grid(
            [[images[0], images[1]], [images[2]]], [["a", "b"], ["c"]], ["x", "y"]
        )
    with pytest.raises(ValueError):  # a caption missing
        plots.image_grid([[images[0], images[1]]], [["a"]], ["x", "y"])


def test_histogram_overlays_each_series_with_its_bins():
    rng = np.random.default_rng(0)
    series = {"noisy": rng.normal(20, 1, 50), "recovered": rng.normal(28, 1, 50)}
    figure = plots.histogram(series, "PSNR (dB)", title="t", bins=12)
    (axis,) = figure.axes
    assert len(axis.patches) == 2 * 12
    assert axis.get_xlabel() == "PSNR (dB)" and axis.get_ylabel() == "images"
    assert axis.get_title() == "t"
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert labels == ["noisy", "recovered"]
    heights = sum(patch.get_height() for patch in axis.patches)
    assert heights == 100  # every value counted once


def test_confusion_matrix_writes_every_count_and_shades_by_row():
    matrix = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    figure = plots.confusion_matrix(matrix, ["a", "b", "c"], title="m")
    axis, colorbar = figure.axes
    counts = [t.get_text() for t in axis.texts if isinstance(t, Text)]
    assert counts == [str(v) for v in matrix.ravel()]
    shares = np.asarray(axis.get_images()[0].get_array())
    np.testing.assert_allclose(shares[0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(shares[1], [0.0, 0.0, 0.0])  # an empty row
    np.testing.assert_allclose(shares[2], [0.25, 0.25, 0.5])
    assert [t.get_text() for t in axis.get_xticklabels()] == ["a", "b", "c"]
    assert axis.get_title() == "m"
    assert colorbar.get_ylabel() == "share of the row (true)"


def test_count_matrix_axes_name_what_rows_and_columns_are():
    matrix = np.arange(9).reshape(3, 3)
    figure = plots.confusion_matrix(matrix, ["a", "b", "c"])
    assert (figure.axes[0].get_ylabel(), figure.axes[0].get_xlabel()) == (
        "true",
        "predicted",
    )
    figure = plots.confusion_matrix(
        matrix, ["a", "b", "c"], row_label="prediction on x", column_label="on x + v"
    )
    assert figure.axes[0].get_ylabel() == "prediction on x"
    assert figure.axes[0].get_xlabel() == "on x + v"
    assert figure.axes[1].get_ylabel() == "share of the row (prediction on x)"
