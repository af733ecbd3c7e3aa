"""Configuration checks for the defenses: each raises ``ValueError`` naming the argument and its value."""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it lies in the interval; e.g. ``low=0, low_open=True`` means ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})") from None
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got nan")
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        left = "-inf" if low is None else f"{low}"
        right = "inf" if high is None else f"{high}"
        interval = (
            f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"
        )
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return v


def check_positive_int(name: str, value: int, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_interval(name: str, low: float, high: float, *, minimum: float | None = None) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair with ``low <= high`` (and ``low >= minimum`` when given)."""
    low = check_range(f"{name}[0]", low, low=minimum)
    high = check_range(f"{name}[1]", high, low=minimum)
    if low > high:
        raise ValueError(f"{name} must have min <= max, got ({low}, {high})")
    return low, high
