"""Small statistics for accuracy estimates: binomial confidence intervals and their comparison."""

from __future__ import annotations

import math

from scipy.stats import norm

from stochdef.defenses._checks import check_positive_int, check_range


def wilson_interval(successes: int, trials: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / trials``.

    Better than the normal approximation near 0 and 1 (Brown, Cai & DasGupta 2001).

    Example:
        >>> low, high = wilson_interval(50, 100)
        >>> round(low, 3), round(high, 3)
        (0.404, 0.596)
    """
    check_positive_int("trials", trials)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials={trials}], got {successes}")
    check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two intervals share a point (the cross-check's agreement criterion)."""
    return a[0] <= b[1] and b[0] <= a[1]
