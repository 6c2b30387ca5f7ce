"""The defense's figures: threat models told apart in accuracy_vs_eps.png."""

from cifar_denoise_adv.defense import figures

CURVES = {
    ("classifier", "white-box"): {"fgsm": [0.8, 0.1], "pgd": [0.8, 0.0]},
    ("denoised", "oblivious"): {"fgsm": [0.6, 0.5], "pgd": [0.6, 0.55]},
    ("denoised", "adaptive"): {"fgsm": [0.6, 0.2], "pgd": [0.6, 0.01]},
    ("randomised", "oblivious"): {"fgsm": [0.7, 0.6], "pgd": [0.7, 0.6]},
    ("randomised", "adaptive+EOT"): {"fgsm": [0.7, 0.3], "pgd": [0.7, 0.02]},
}


def test_each_threat_model_has_its_own_line_and_marker(monkeypatch):
    monkeypatch.setattr(figures, "curves", lambda *args: CURVES)
    figure = figures.accuracy_vs_epsilon(None, None, [8 / 255])
    handles, labels = figure.axes[1].get_legend_handles_labels()
    style = {
        label: (handle.get_linestyle(), handle.get_marker())
        for handle, label in zip(handles, labels, strict=True)
    }
    assert set(style) == {f"{p}, {t}" for p, t in CURVES}
    # Same pipeline (colour), other threat model: line AND marker differ, so
    # the short legend entries do not look alike.
    for pipeline, other in (("denoised", "adaptive"), ("randomised", "adaptive+EOT")):
        oblivious = style[f"{pipeline}, oblivious"]
        through = style[f"{pipeline}, {other}"]
        assert oblivious[0] != through[0] and oblivious[1] != through[1]
    assert style["classifier, white-box"] == style["denoised, adaptive"]
    assert "hollow squares = oblivious" in figure.get_suptitle()
