"""Pixel units: one range check per norm, with the line a user needs."""

import math

import pytest

from cifar_denoise_adv.core import units
from cifar_denoise_adv.core.errors import UserError


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as error:
        call(*args, **kwargs)
    return str(error.value)


def test_a_per_pixel_value_in_0_255_units_gets_the_fraction_to_write():
    assert _message(units.check_pixel_value, 10, "xi") == (
        "xi=10: expected [0, 1] pixel units; 10 looks like 0-255 units: write "
        "10/255 (= 0.039216)."
    )
    assert units.check_pixel_value(10 / 255, "xi") == pytest.approx(0.0392157)
    assert units.check_pixel_value(1, "--sigma") == 1.0


def test_an_l2_budget_may_exceed_1_up_to_the_black_to_white_distance():
    assert units.largest("l2") == pytest.approx(math.sqrt(3072))  # 55.43
    assert units.check_pixel_value(2.0, "--xi", norm="l2") == 2.0
    assert units.check_pixel_value(55.4, "--xi", norm="l2") == 55.4
    assert _message(units.check_pixel_value, 100, "--xi", norm="l2") == (
        "--xi=100: an L2 norm in [0, 1] pixel units is at most sqrt(3072) = 55.43 "
        "for a 32x32x3 image (black to white); 100 looks like 0-255 units: write "
        "100/255 (= 0.39216)."
    )
    # Other image sizes (the Python API takes any): the bound follows the size.
    assert "sqrt(192) = 13.86 for 192 values" in _message(
        units.check_pixel_value, 20, "xi", norm="l2", size=192
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (-0.1, "--xi=-0.1: expected a finite value >= 0 in [0, 1] pixel units."),
        (float("nan"), "--xi=nan: expected a finite value >= 0"),
        (float("inf"), "--xi=inf: expected a finite value >= 0"),
        ("ten", "--xi='ten': expected a number in [0, 1] pixel units."),
    ],
)
def test_values_that_are_not_a_size_are_refused(value, expected):
    assert _message(units.check_pixel_value, value, "--xi").startswith(expected)


def test_zero_is_refused_where_the_quantity_must_move():
    assert units.check_pixel_value(0, "xi") == 0.0
    assert _message(units.check_pixel_value, 0, "--step", allow_zero=False) == (
        "--step=0: expected a finite value > 0 in [0, 1] pixel units."
    )


def test_a_fraction_written_as_a_percentage_gets_the_fraction_to_write():
    assert _message(units.check_fraction, 20, "--delta") == (
        "--delta=20: expected a fraction in [0, 1]; 20 looks like a percentage: "
        "write 0.2."
    )
    assert _message(units.check_fraction, 50, "--dropout", high=0.9) == (
        "--dropout=50: expected a fraction in [0, 0.9]; 50 looks like a "
        "percentage: write 0.5."
    )
    assert _message(units.check_fraction, -1, "overshoot") == (
        "overshoot=-1: expected a fraction in [0, 1]."
    )
    assert units.check_fraction(0.02, "overshoot") == 0.02
