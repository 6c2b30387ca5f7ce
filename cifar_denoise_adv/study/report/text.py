"""Formatting for the report: dB, percent, durations, image counts, figure blocks."""

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


def precision(m: dict) -> str:
    """'precision mixed_bfloat16 (auto: this CPU has ...; on <CPU>)' of a run."""
    used = m.get("precision")
    if isinstance(used, dict) and "precision" in used:
        how = "auto: " if used.get("requested") == "auto" else ""
        return (
            f"precision {used['precision']} ({how}{used.get('reason', '')}; on "
            f"{used.get('device', 'an unrecorded device')})"
        )
    return f"precision {m.get('config', {}).get('precision', 'float32')}"


def duration(seconds: float | None) -> str:
    """'4.2 s', '45 s' under a minute, else '17.6 min' ('n/a' for None)."""
    if seconds is None:
        return "n/a"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def figures(step: dict, captions: dict) -> list:
    """Figure blocks for a step's existing figures, with captions."""
    return [
        ("figure", path, captions.get(name, name))
        for name, path in step["figures"].items()
    ]
