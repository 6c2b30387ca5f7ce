"""Validation curves of denoise runs and their gap at equal budgets."""

import pytest

from cifar_denoise_adv.denoising import compare


def _metrics(values, seconds, epochs=None):
    return {
        "epochs": epochs or len(values),
        "history": {"val_psnr": values},
        "epoch_train_seconds": seconds,
        "images": {"validation": 500},
    }


def test_validation_curve_counts_epochs_and_cumulative_minutes():
    curve = compare.validation_curve(_metrics([20.0, 22.0, 23.0], [60, 60, 120]))
    assert curve == {
        "epochs": [1, 2, 3],
        "minutes": [1.0, 2.0, 4.0],
        "values": [20.0, 22.0, 23.0],
    }
    # A resumed run's curve covers the epochs it recorded, numbered as such.
    resumed = compare.validation_curve(_metrics([24.0], [30], epochs=4))
    assert resumed["epochs"] == [4]
    assert compare.validation_curve({"epochs": 3, "history": {}})["values"] == []


def test_budget_gaps_at_equal_epochs_and_equal_minutes():
    fast = compare.validation_curve(_metrics([25.0, 27.0, 28.0], [60, 60, 60]))
    slow = compare.validation_curve(_metrics([20.0, 22.0], [120, 120]))
    gaps = compare.budget_gaps(fast, slow)
    assert gaps["epochs"] == 2
    assert gaps["gap_at_equal_epochs_db"] == pytest.approx(27.0 - 22.0)
    # 3 minutes: the fast run is at 28.0 dB; the slow one between 20 (2 min)
    # and 22 (4 min), at 21.0 dB.
    assert gaps["minutes"] == pytest.approx(3.0)
    assert gaps["gap_at_equal_minutes_db"] == pytest.approx(28.0 - 21.0)
    empty = compare.budget_gaps(fast, compare.validation_curve({"epochs": 1}))
    assert empty["epochs"] is None


def test_curves_figure_has_both_panels(tmp_path):
    figure = compare.curves_figure(
        {
            "resnet": _metrics([25.0, 27.0], [60, 60]),
            "plain": _metrics([20.0, 22.0], [90, 90]),
        }
    )
    assert len(figure.axes) == 2
    assert [line.get_label() for line in figure.axes[1].get_lines()] == [
        "resnet",
        "plain",
    ]
    assert compare.curves_figure({"x": {"epochs": 1}}) is None
