"""Numbers as people read them: every table and line of the project formats through here.

Accuracies to 0.01% (one image in 10,000), hyperparameters to 3 significant digits (finer than any
search distinguishes), losses to 3 decimals, durations as a clock. A missing value (None or NaN)
is "-".
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def missing(value: object) -> bool:
    return value is None or (isinstance(value, Real) and not isinstance(value, Integral) and math.isnan(value))


def percent(fraction: float | None) -> str:
    """0.92741 -> '92.74%'."""
    return "-" if missing(fraction) else f"{100 * fraction:.2f}%"


def number(value: object) -> str:
    """A hyperparameter or metric value: 0.0012345 -> '0.00123', 12.3456 -> '12.3', 64 -> '64'."""
    if missing(value):
        return "-"
    if isinstance(value, bool) or isinstance(value, Integral):
        return str(value)
    if isinstance(value, Real):
        return f"{value:.3g}"
    return str(value)


def counted(n: int, noun: str) -> str:
    """(1, 'trial') -> '1 trial', (1000, 'trial') -> '1,000 trials'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def loss(value: float | None) -> str:
    return "-" if missing(value) else f"{value:.3f}"


def clock(seconds: float | None) -> str:
    """3725 -> '1:02:05'; unknown (None or NaN) -> '?'."""
    if missing(seconds):
        return "?"
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
