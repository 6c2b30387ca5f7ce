"""Figures of the adversarial study: an attacked image, the fooling-rate sweep."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from cifar_denoise_adv.adversarial import figures

NAMES = [f"class{i}" for i in range(10)]
RED = to_rgba("tab:red")
BLUE = to_rgba("tab:blue")
GREY = to_rgba("tab:gray")


def _bar_colors(axis):
    """{class name: bar colour}, the top bar first."""
    labels = [t.get_text() for t in axis.get_yticklabels()]
    colors = [patch.get_facecolor() for patch in axis.patches]
    return dict(reversed(list(zip(labels, colors, strict=True))))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _probabilities(top):
    """The given classes' probabilities, the rest shared smaller and distinct."""
    rest = [c for c in range(10) if c not in top]
    weights = np.arange(1, len(rest) + 1, dtype=float)
    p = np.zeros(10)
    p[rest] = (1 - sum(top.values())) * weights / weights.sum()
    for c, value in top.items():
        p[c] = value
    return p


def _example(**overrides):
    rng = np.random.default_rng(0)
    original = rng.uniform(size=(8, 8, 3))
    arguments = dict(
        original=original,
        adversarial=np.clip(original + 0.02, 0, 1),
        probabilities_before=_probabilities({3: 0.55, 7: 0.15, 2: 0.1}),
        probabilities_after=_probabilities({5: 0.5, 3: 0.2, 1: 0.1}),
        class_names=NAMES,
        true_label=3,
        target_label=5,
        scale=25.0,
        title="attacked",
    )
    arguments.update(overrides)
    return figures.adversarial_example(**arguments)


def test_adversarial_example_has_three_images_and_two_bar_charts():
    figure = _example()
    image_axes, before, after = figure.axes[:3], figure.axes[3], figure.axes[4]
    assert [axis.get_title() for axis in figure.axes[:5]] == [
        "original: class3",
        "perturbed",
        "perturbation x25 + 0.5",
        "before: top 3 + target",
        "after: top 3",
    ]
    assert figure.get_suptitle() == "attacked"
    assert all(axis.get_images() for axis in image_axes)
    # The most likely class on top, the target red, the true class blue.
    assert _bar_colors(after) == {"class5": RED, "class3": BLUE, "class1": GREY}
    assert list(_bar_colors(after)) == ["class5", "class3", "class1"]
    # Before: the target is not in the top 3, and is shown all the same.
    assert _bar_colors(before) == {
        "class3": BLUE,
        "class7": GREY,
        "class2": GREY,
        "class5": RED,
    }
    target_text = f"{_probabilities({3: 0.55, 7: 0.15, 2: 0.1})[5]:.2f}"
    assert target_text in [text.get_text() for text in before.texts]
    # The legend names the colours.
    legend = [text.get_text() for text in after.get_legend().get_texts()]
    assert legend == ["target (class5)", "true class (class3)", "other classes"]
    # The perturbation is RGB: no grey colour bar beside it, its scale in
    # words under it (+-0.5 / 25 = +-0.02 = 5.1/255).
    assert len(figure.axes) == 5
    assert image_axes[2].get_xlabel() == (
        "each channel x25: mid-grey 0,\nblack/white -/+5.1/255"
    )


def test_untargeted_example_shows_the_true_class_in_blue():
    figure = _example(target_label=None)
    assert _bar_colors(figure.axes[3]) == {
        "class3": BLUE,
        "class7": GREY,
        "class2": GREY,
    }
    assert _bar_colors(figure.axes[4]) == {
        "class5": GREY,
        "class3": BLUE,
        "class1": GREY,
    }
    legend = figure.axes[4].get_legend().get_texts()
    assert [text.get_text() for text in legend] == [
        "true class (class3)",
        "other classes",
    ]


def test_universal_perturbation_per_channel_matches_its_colour_bar():
    v = np.zeros((4, 4, 3))
    v[..., 0], v[..., 2] = 4 / 255, -2 / 255
    figure = figures.universal_perturbation(v, scale=0.5 / (8 / 255))
    rgb, red, green, blue, colorbar_axis = figure.axes
    assert rgb.get_title() == "v in RGB (max |v| = 4.0/255)"
    assert "each channel" in rgb.get_xlabel()  # its scale, in words
    # One diverging scale for the three channel panels, the colour bar's.
    for axis, value in ((red, 4.0), (green, 0.0), (blue, -2.0)):
        (image,) = axis.get_images()
        assert image.get_clim() == pytest.approx((-8.0, 8.0))
        assert np.asarray(image.get_array()) == pytest.approx(np.full((4, 4), value))
    assert colorbar_axis.get_ylim() == pytest.approx((-8.0, 8.0))
    assert "1/255" in colorbar_axis.get_ylabel()


def test_adversarial_example_refuses_bad_input():
    with pytest.raises(ValueError):  # images of different shapes
        _example(adversarial=np.zeros((4, 4, 3)))
    with pytest.raises(IndexError):  # a class the names do not have
        _example(true_label=12)


def _sweep():
    return {
        "xi": [2 / 255, 4 / 255, 8 / 255],
        "norm": "linf",
        "level": 0.6517,
        "deepfool": {"train": [0.1, 0.5, 0.9], "test": [0.1, 0.4, 0.8]},
        "sgd": {"train": [0.2, 0.6, 0.95], "test": [0.2, 0.5, 0.9]},
        "random": {"train": [0.0, 0.0, 0.1], "test": [0.0, 0.05, 0.1]},
    }


def test_fooling_sweep_draws_each_method_and_split_and_the_level():
    figure = figures.fooling_sweep(_sweep())
    (axis,) = figure.axes
    labels = [line.get_label() for line in axis.get_lines()]
    assert labels == [
        "deepfool (train)",
        "deepfool (test)",
        "sgd (train)",
        "sgd (test)",
        "random (train)",
        "random (test)",
        "65.17% (reference rate)",
    ]
    sgd_train = axis.get_lines()[2]
    np.testing.assert_allclose(sgd_train.get_xdata(), [2, 4, 8])
    np.testing.assert_allclose(sgd_train.get_ydata(), [20, 60, 95])
    assert axis.get_ylim() == (0, 100)
    assert axis.get_xlabel() == "xi x 255 (linf radius)"


def test_fooling_sweep_without_a_method_or_level_leaves_them_out():
    results = _sweep()
    del results["deepfool"], results["level"]
    (axis,) = figures.fooling_sweep(results).axes
    assert len(axis.get_lines()) == 4


def test_fooling_sweep_refuses_bad_input():
    results = _sweep()
    results["sgd"]["train"] = [0.1]  # one rate for three budgets
    with pytest.raises(ValueError):
        figures.fooling_sweep(results)
    with pytest.raises(KeyError):
        figures.fooling_sweep({"sgd": _sweep()["sgd"]})  # no xi
