"""The binomial intervals of ``evaluations/stats.py``: scipy computes them; these tests hold them to scipy and to
brute-force inversions of the tests that define them (no statsmodels), and check the argument errors."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from stochdef.evaluations.stats import (
    clopper_pearson_interval,
    intervals_overlap,
    median_interval,
    two_proportion_tolerance,
    wilson_interval,
    z_value,
)

CASES = [(0, 20), (3, 20), (17, 40), (100, 100), (55, 300), (1, 1)]


def _bisect(inside, low: float, high: float) -> float:
    """The boundary between ``inside(low)`` and ``not inside(high)`` (or the reverse), to 1e-12."""
    a, b = (low, high)
    flip = inside(a)
    for _ in range(60):
        mid = (a + b) / 2
        if inside(mid) == flip:
            a = mid
        else:
            b = mid
    return (a + b) / 2


def _wilson_brute(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The p whose score test does not reject: |k/n - p| <= z sqrt(p (1 - p) / n), found by bisection."""
    z, phat = z_value(confidence), k / n

    def accepted(p: float) -> bool:
        return abs(phat - p) <= z * math.sqrt(p * (1 - p) / n)

    low = 0.0 if k == 0 else _bisect(accepted, 0.0, phat)
    high = 1.0 if k == n else _bisect(accepted, phat, 1.0)
    return low, high


def _binom_tail(k: int, n: int, p: float, *, upper: bool) -> float:
    """P(X >= k) (upper) or P(X <= k), X ~ Binomial(n, p), summed term by term."""
    terms = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in terms)


def _clopper_pearson_brute(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The p that neither one-sided exact test rejects at (1 - confidence) / 2, found by bisection."""
    half = (1 - confidence) / 2
    low = 0.0 if k == 0 else _bisect(lambda p: _binom_tail(k, n, p, upper=True) <= half, 0.0, k / n)
    high = 1.0 if k == n else _bisect(lambda p: _binom_tail(k, n, p, upper=False) > half, k / n, 1.0)
    return low, high


@pytest.mark.parametrize(("k", "n"), CASES)
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_intervals_match_brute_force_inversions(k: int, n: int, confidence: float) -> None:
    assert wilson_interval(k, n, confidence=confidence) == pytest.approx(_wilson_brute(k, n, confidence), abs=1e-9)
    assert clopper_pearson_interval(k, n, confidence=confidence) == pytest.approx(
        _clopper_pearson_brute(k, n, confidence), abs=1e-9
    )


@pytest.mark.parametrize(("k", "n"), CASES)
def test_intervals_are_scipys(k: int, n: int) -> None:
    result = stats.binomtest(k, n)
    for ours, method in ((wilson_interval, "wilson"), (clopper_pearson_interval, "exact")):
        ref = result.proportion_ci(confidence_level=0.9, method=method)
        assert ours(k, n, confidence=0.9) == (ref.low, ref.high)
        assert all(type(v) is float for v in ours(k, n))  # plain floats: they go to JSON


def test_wilson_covers_at_about_the_nominal_rate() -> None:
    # 95% Wilson at n = 50, p = 0.3: its exact coverage, summed over every outcome, is within 2 points of 95%
    n, p = 50, 0.3
    coverage = sum(
        math.comb(n, k) * p**k * (1 - p) ** (n - k)
        for k in range(n + 1)
        if (ci := wilson_interval(k, n))[0] <= p <= ci[1]
    )
    assert abs(coverage - 0.95) < 0.02


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n must be"):
        clopper_pearson_interval(0, 0)
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson_interval(1, 10, confidence=1.0)


def test_median_interval_covers_the_median() -> None:
    import torch

    # 4000 samples of size 41 from an exponential with median log 2; coverage >= 95% nominal. With 4000 trials
    # the observed coverage of a 95% interval has sd sqrt(.95 * .05 / 4000) = 0.0034: allow 5 sd below.
    gen = torch.Generator().manual_seed(0)
    draws = torch.empty(4000, 41).exponential_(generator=gen)
    covered = sum(lo <= math.log(2) <= hi for lo, hi in (median_interval(row.tolist()) for row in draws))
    assert covered / 4000 >= 0.95 - 5 * 0.0034
    assert median_interval([1.0, 2.0]) == (-math.inf, math.inf)


def test_two_proportion_tolerance_and_overlap() -> None:
    pooled = (30 + 36 + 2) / (100 + 120 + 4)
    expected = 3.0 * math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 120))
    assert two_proportion_tolerance(30, 100, 36, 120, z=3.0) == pytest.approx(expected)
    assert two_proportion_tolerance(0, 10, 0, 10) > 0
    assert intervals_overlap((0.0, 0.1), (0.1, 0.2)) and not intervals_overlap((0.0, 0.1), (0.11, 0.2))
