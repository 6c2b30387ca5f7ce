"""Quantities in pixel units: the one range check, for the flags and the Python API.

Every budget, step size, radius and noise level of the toolkit is measured
on images in [0, 1] ("[0, 1] pixel units"). The apps' flags (through
`core.config`) and the library functions (the attacks, the noise
functions) check such a value here, so both refuse the same values with
the same words; only the name differs (`--xi` for a flag, `xi` for an
argument).

The meaningful range depends on what the number measures:

- per-pixel quantities (L-inf budgets, radii and steps, noise std): at most 1,
  the whole pixel range; a larger value is read as 0-255 units
  (`--xi=10` meant 10/255);
- an L2 norm over an image of D values: at most sqrt(D), the L2 distance
  from an all-black to an all-white image (sqrt(32 * 32 * 3) = 55.4 for
  CIFAR-10): a larger ball holds every image, so the budget means nothing;
  a larger value is read as 0-255 units too. Between 1 and sqrt(D) an L2
  value is legitimate and accepted.
"""

from __future__ import annotations

import math

from cifar_denoise_adv.core.errors import UserError

IMAGE_VALUES = 32 * 32 * 3  # values in one CIFAR-10 image
NORMS = ("linf", "l2")


def largest(norm: str = "linf", size: int = IMAGE_VALUES) -> float:
    """The largest meaningful value of a pixel quantity measured in `norm`.

    Args:
      norm: "linf" for per-pixel quantities, "l2" for the L2 norm of a
        perturbation of `size` values.
      size: values in one image (its perturbation); 3072 for CIFAR-10.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    return 1.0 if norm == "linf" else math.sqrt(size)


def _shape_text(size: int) -> str:
    return "a 32x32x3 image" if size == IMAGE_VALUES else f"{size} values"


def check_pixel_value(
    value,
    name: str,
    *,
    norm: str = "linf",
    size: int = IMAGE_VALUES,
    allow_zero: bool = True,
) -> float:
    """Checks a quantity in [0, 1] pixel units against its meaningful range.

    Args:
      value: the number (a budget, radius, step size or noise std).
      name: what the message calls it, as the user wrote it: `--xi` for a
        flag, `xi` for a function argument.
      norm: how it is measured: "linf" (per pixel: at most 1) or "l2" (the
        L2 norm of a perturbation of `size` values: at most sqrt(size)).
      size: values in one image, for "l2".
      allow_zero: False when 0 is refused (a budget or step that must move).

    Returns:
      The value as a float.

    Raises:
      UserError (a ValueError): one line naming `name`, when the value is
        not a finite number, negative (or zero when not allowed), or above
        the range, in which case it says the value looks like 0-255 units
        and how to write it (`10/255`).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(
            f"{name}={value!r}: expected a number in [0, 1] pixel units."
        ) from None
    high = largest(norm, size)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(
            f"{name}={number:g}: expected a finite value {bound} in [0, 1] pixel units."
        )
    if number > high:
        if norm == "linf":
            unit = "expected [0, 1] pixel units"
        else:
            unit = (
                f"an L2 norm in [0, 1] pixel units is at most sqrt({size}) = "
                f"{high:.4g} for {_shape_text(size)} (black to white)"
            )
        raise UserError(
            f"{name}={number:g}: {unit}; {number:g} looks like 0-255 units: "
            f"write {number:g}/255 (= {number / 255:.5g})."
        )
    return number


def check_fraction(
    value, name: str, *, high: float = 1.0, allow_zero: bool = True
) -> float:
    """Checks a fraction in [0, high] (a rate, an overshoot, a probability).

    Raises:
      UserError: one line naming `name`; a value in (1, 100] is said to look
        like a percentage, with the fraction to write instead.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(
            f"{name}={value!r}: expected a fraction in [0, {high:g}]."
        ) from None
    bad = (
        not math.isfinite(number)
        or number < 0
        or number > high
        or (number == 0 and not allow_zero)
    )
    if bad:
        low = "(0" if not allow_zero else "[0"
        hint = ""
        if 1 < number <= 100 and number / 100 <= high:
            hint = f"; {number:g} looks like a percentage: write {number / 100:g}"
        raise UserError(
            f"{name}={number:g}: expected a fraction in {low}, {high:g}]{hint}."
        )
    return number
