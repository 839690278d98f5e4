"""How the reports write figures: percentages, 95% intervals, p-values, dollars and durations."""
from __future__ import annotations

from typing import Sequence

from promptopt.progress import duration_text


def percent(value: float | None) -> str:
    """`36.0%`, or `n/a`."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def interval(bounds: Sequence[float]) -> str:
    """A 95% interval as `[28.1, 44.7]` (percent)."""
    low, high = bounds
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def p_value(value: float | None) -> str:
    """A p-value with four significant digits, or `n/a`."""
    return "n/a" if value is None else f"{value:.4g}"


def dollars(value: float) -> str:
    """`$0.0123`: list-price dollars to a hundredth of a cent."""
    return f"${value:.4f}"


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`, or `n/a`."""
    return "n/a" if seconds is None else duration_text(seconds)
