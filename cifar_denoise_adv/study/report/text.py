"""Formatting for the report: dB, percent, minutes, image counts, figure blocks."""

from __future__ import annotations


def db(stats: dict | None) -> str:
    """'28.430 ± 1.270 dB' from {"mean", "std"}."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f} dB"


def percent(rate: float | None) -> str:
    """'65.17%' from 0.6517."""
    return "n/a" if rate is None else f"{100 * rate:.2f}%"


def sizes(images: dict | int) -> str:
    """'5085 train / 768 test' from {split: count}, or the count."""
    if isinstance(images, dict):
        return " / ".join(f"{count} {split}" for split, count in images.items())
    return str(images)


def minutes(seconds: float | None) -> str:
    """Seconds as minutes with one decimal ('n/a' for None)."""
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


def figures(step: dict, captions: dict) -> list:
    """Figure blocks for a step's existing figures, with captions."""
    return [
        ("figure", path, captions.get(name, name))
        for name, path in step["figures"].items()
    ]
