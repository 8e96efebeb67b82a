"""Timestamp arithmetic shared by the stream handlers."""

from __future__ import annotations

from fractions import Fraction


def to_seconds(ts: int | None, tb: Fraction | None) -> float | None:
    """A timestamp in seconds; None when either part is unknown."""
    if ts is None or tb is None:
        return None
    return float(ts * tb)


def to_ticks(seconds: float, tb: Fraction) -> int:
    """Seconds in ticks of ``tb``, rounded to the nearest tick."""
    return round(Fraction(seconds).limit_denominator(1_000_000) / tb)
