"""Small pure statistics for evaluations: binomial confidence intervals, a median interval, a tolerance.

* :func:`wilson_interval`, :func:`clopper_pearson_interval`: intervals for a proportion (robust accuracy,
  success rate) from ``successes`` out of ``n`` independent trials; scipy computes them
  (``scipy.stats.binomtest(...).proportion_ci``), this module only checks the arguments.
* :func:`intervals_overlap`: the agreement rule of the cross-check.
* :func:`median_interval`: a distribution-free interval for a median (binomial order statistics).
* :func:`two_proportion_tolerance`: how far two observed rates may differ when the true rates are equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from scipy import stats as _stats

Interval = tuple[float, float]


def _check(successes: int, n: int, confidence: float) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def z_value(confidence: float) -> float:
    """The two-sided standard-normal quantile, e.g. 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _binomial_interval(successes: int, n: int, confidence: float, method: str) -> Interval:
    _check(successes, n, confidence)
    ci = _stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method=method)
    return float(ci.low), float(ci.high)


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion (``scipy.stats.binomtest(...).proportion_ci``).

    >>> tuple(round(v, 4) for v in wilson_interval(8, 10))
    (0.4902, 0.9433)
    >>> wilson_interval(0, 20)[0]
    0.0
    """
    return _binomial_interval(successes, n, confidence, "wilson")


def clopper_pearson_interval(successes: int, n: int, *, confidence: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval for a binomial proportion (``binomtest(...).proportion_ci``, "exact").

    >>> tuple(round(v, 4) for v in clopper_pearson_interval(8, 10))
    (0.4439, 0.9748)
    """
    return _binomial_interval(successes, n, confidence, "exact")


def intervals_overlap(a: Interval, b: Interval) -> bool:
    """True when the closed intervals ``a`` and ``b`` share a point.

    >>> intervals_overlap((0.1, 0.3), (0.3, 0.5)), intervals_overlap((0.1, 0.2), (0.3, 0.5))
    (True, False)
    """
    return a[0] <= b[1] and b[0] <= a[1]


def median_interval(values: Sequence[float], *, confidence: float = 0.95) -> Interval:
    """Distribution-free interval for the median: order statistics ``(v_(j), v_(n+1-j))``.

    ``j`` is the largest rank with ``P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2``, so the interval
    covers the true median with probability at least ``confidence``. Too few values give ``(-inf, inf)``.

    >>> median_interval(list(range(1, 101)))
    (40.0, 61.0)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    if n == 0:
        raise ValueError("values must not be empty")
    alpha = 1 - confidence
    j = int(_stats.binom.ppf(alpha / 2, n, 0.5))  # smallest k with P(B <= k) >= alpha / 2
    while j > 0 and _stats.binom.cdf(j - 1, n, 0.5) > alpha / 2:
        j -= 1
    if j < 1:
        return -math.inf, math.inf
    return ordered[j - 1], ordered[n - j]


def two_proportion_tolerance(s1: int, n1: int, s2: int, n2: int, *, z: float = 4.0) -> float:
    """``z`` standard errors of the difference of two rates under a common rate (Agresti-Caffo smoothed).

    The pooled rate ``(s1 + s2 + 2) / (n1 + n2 + 4)`` keeps the tolerance positive at rates 0 and 1.

    >>> round(two_proportion_tolerance(50, 100, 50, 100), 4)
    0.2828
    """
    _check(s1, n1, 0.5)
    _check(s2, n2, 0.5)
    pooled = (s1 + s2 + 2) / (n1 + n2 + 4)
    return z * math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
