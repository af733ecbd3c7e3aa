"""Pinot et al.'s Theorems 1-3 against hand computations and numerically integrated Renyi divergences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import nn

from stochdef.defenses.renyi import (
    certified_epsilon,
    certify,
    entropy,
    gaussian_epsilon,
    guaranteed_accuracy_bound,
    input_epsilon,
    input_radius,
    laplace_epsilon,
    renyi_epsilon,
    risk_gap_bound,
)
from stochdef.defenses.sensitivity import (
    identity_sensitivity,
    linear_sensitivity,
    norm_ratio,
    operator_norm_bound,
    sequential_sensitivity,
)

ORDERS = [1.01, 1.5, 2.0, 5.0, 20.0, 100.0]


def renyi_1d(log_p, log_q, lam: float, points: list[float]) -> float:  # type: ignore[no-untyped-def]
    """D_lambda(P||Q) = 1/(lam-1) log int exp(lam log p + (1-lam) log q), by quadrature.

    ``points`` (sorted) split the line and must include the integrand's peak, which is factored out.
    """

    def log_integrand(z: float) -> float:
        with np.errstate(invalid="ignore"):  # -inf + inf where both densities underflow: nan, dropped below
            return float(lam * log_p(z) + (1 - lam) * log_q(z))

    def integrand(z: float) -> float:
        v = log_integrand(z)
        return math.exp(v - top) if math.isfinite(v) else 0.0  # both densities underflow far out

    top = max(log_integrand(z) for z in points)
    value = sum(
        integrate.quad(integrand, a, b, limit=200, epsabs=0, epsrel=1e-10)[0]
        for a, b in itertools.pairwise([-math.inf, *points, math.inf])
    )
    return (top + math.log(value)) / (lam - 1)


# ---- Theorem 1 ------------------------------------------------------------------------------------------------


def test_gaussian_epsilon_hand_cases() -> None:
    assert gaussian_epsilon(1.0, std=1.0, lambda_=2.0) == 1.0  # 2 * 1 / (2 * 1)
    assert gaussian_epsilon(0.5, covariance=torch.diag(torch.tensor([4.0, 0.25])), lambda_=3.0) == pytest.approx(1.5)
    # [[2, 1], [1, 2]] has eigenvalues 1 and 3: 1.5 * 2^2 / (2 * 1) = 3.
    assert gaussian_epsilon(2.0, covariance=torch.tensor([[2.0, 1.0], [1.0, 2.0]]), lambda_=1.5) == pytest.approx(3.0)
    assert gaussian_epsilon(0.0, std=0.0) == 0.0 and gaussian_epsilon(0.1, std=0.0) == math.inf
    # l-inf attack of 0.1 on 100 inputs: Delta_2 = 0.1 * sqrt(100) = 1; std 0.5, KL: 1 / (2 * 0.25) = 2.
    assert input_epsilon(0.1, distribution="gaussian", std=0.5, norm="linf", dim=100) == pytest.approx(2.0)


@pytest.mark.parametrize("lam", ORDERS)
def test_gaussian_epsilon_is_the_exact_divergence_of_a_shift(lam: float) -> None:
    sigma, shift = 0.8, 0.6
    p, q = stats.norm(0, sigma), stats.norm(shift, sigma)
    mode = -(lam - 1) * shift  # where lam log p + (1 - lam) log q peaks
    exact = renyi_1d(p.logpdf, q.logpdf, lam, [mode, 0.0, shift])
    assert gaussian_epsilon(shift, std=sigma, lambda_=lam) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize(("lam", "shift"), list(itertools.product(ORDERS, [0.05, 0.5, 2.0])))
def test_laplace_epsilon_bounds_the_divergence_of_every_order(lam: float, shift: float) -> None:
    std = 0.9
    p, q = stats.laplace(0, std / math.sqrt(2)), stats.laplace(shift, std / math.sqrt(2))
    exact = renyi_1d(p.logpdf, q.logpdf, lam, [0.0, shift])
    bound = laplace_epsilon(shift, std=std)
    assert exact <= bound * (1 + 1e-9)
    assert renyi_epsilon(shift, distribution="laplace", std=std, lambda_=lam) == bound


def test_laplace_epsilon_is_tight_as_the_order_grows() -> None:
    # D_lambda -> D_inf = |shift| / b: the max-divergence bound cannot be improved uniformly in lambda.
    b, shift = 0.5, 1.0
    p, q = stats.laplace(0, b), stats.laplace(shift, b)
    assert renyi_1d(p.logpdf, q.logpdf, 2000.0, [0.0, shift]) == pytest.approx(shift / b, rel=2e-3)
    # d-dimensional iid noise: the divergence adds over coordinates, the bound is ||shift||_1 / b.
    shifts = [0.2, -0.7, 0.05]
    total = sum(renyi_1d(p.logpdf, stats.laplace(s, b).logpdf, 3.0, sorted([0.0, s])) for s in shifts)
    assert total <= laplace_epsilon(sum(map(abs, shifts)), std=b * math.sqrt(2))


def test_uniform_and_exponential_have_no_finite_level() -> None:
    for distribution in ("uniform", "exponential"):
        assert renyi_epsilon(0.1, distribution=distribution, std=1.0) == math.inf
        assert input_radius(1.0, distribution=distribution, std=1.0, norm="l2", dim=4) == 0.0


@pytest.mark.parametrize(("distribution", "norm"), [("gaussian", "l2"), ("gaussian", "linf"), ("laplace", "l1")])
def test_input_radius_inverts_input_epsilon(distribution: str, norm: str) -> None:
    kw = {"distribution": distribution, "std": 0.3, "norm": norm, "dim": 49, "lambda_": 2.0}
    for radius in (0.01, 0.2, 1.5):
        assert input_radius(input_epsilon(radius, **kw), **kw) == pytest.approx(radius, rel=1e-12)


# ---- sensitivities --------------------------------------------------------------------------------------------


def test_identity_sensitivity_is_attained() -> None:
    d = 16
    assert norm_ratio("linf", "l2", d) == 4.0 and norm_ratio("linf", "l1", d) == 16.0
    assert norm_ratio("l2", "l1", d) == 4.0 and norm_ratio("l1", "l2", d) == 1.0
    v = torch.full((d,), 0.3)  # a constant vector reaches the l-inf -> l2 and l2 -> l1 ratios
    assert float(v.norm(2)) == pytest.approx(identity_sensitivity(0.3, norm="linf", output_norm="l2", dim=d))
    assert float(v.norm(1)) == pytest.approx(identity_sensitivity(float(v.norm(2)), norm="l2", output_norm="l1", dim=d))


def _signs(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n)), dtype=torch.float64)


def test_operator_norm_bounds_against_brute_force() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, 7, dtype=torch.float64)
    vertices = _signs(7)  # the l-inf unit ball's extreme points: the exact l-inf -> q norm is a max over them
    for q, name in ((1, "l1"), (2, "l2"), (math.inf, "linf")):
        exact_inf = float(torch.linalg.vector_norm(vertices @ w.T, ord=q, dim=1).max())
        bound = operator_norm_bound(w, norm="linf", output_norm=name)
        assert bound >= exact_inf * (1 - 1e-12)
        if name == "linf":
            assert bound == pytest.approx(exact_inf)
        exact_l1 = float(torch.linalg.vector_norm(w, ord=q, dim=0).max())  # l1 ball: the basis vectors
        assert operator_norm_bound(w, norm="l1", output_norm=name) == pytest.approx(exact_l1)
    assert operator_norm_bound(w, norm="l2", output_norm="l2") == pytest.approx(float(np.linalg.svd(w.numpy())[1][0]))
    exact_l2_l1 = float((_signs(5) @ w).norm(dim=1).max())  # ||W||_{2->1} = max_s ||W^T s||_2 (duality)
    assert operator_norm_bound(w, norm="l2", output_norm="l1") >= exact_l2_l1 * (1 - 1e-12)
    assert linear_sensitivity(w, 0.5, norm="l2", output_norm="l2") == pytest.approx(0.5 * np.linalg.norm(w.numpy(), 2))


def test_sequential_sensitivity_bounds_the_network() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.LeakyReLU(0.1))
    with torch.no_grad():
        expected = 0.2 * float(torch.linalg.matrix_norm(net[1].weight, 2) * torch.linalg.matrix_norm(net[3].weight, 2))
    assert sequential_sensitivity(net, 0.2, norm="l2", output_norm="l2", dim=6) == pytest.approx(expected)
    x = torch.rand(20_000, 6)
    step = torch.randn_like(x)
    step = 0.2 * step / step.norm(dim=1, keepdim=True)
    with torch.no_grad():
        moved = (net(x + step) - net(x)).norm(dim=1).max()
    assert float(moved) <= expected
    assert sequential_sensitivity([], 0.1, norm="linf", output_norm="l1", dim=10) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="Conv2d"):
        sequential_sensitivity([nn.Conv2d(1, 1, 3)], 0.1, norm="l2", output_norm="l2", dim=9)


# ---- Theorem 2 ------------------------------------------------------------------------------------------------


def test_entropy_hand_cases() -> None:
    probs = torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]], dtype=torch.float64)
    assert entropy(probs).tolist() == pytest.approx([math.log(4), 0.0, 1.5 * math.log(2)])


def test_risk_gap_bound_limits_and_monotonicity() -> None:
    h = torch.tensor([0.0, 0.3, 1.2], dtype=torch.float64)
    floor = 1 - float(torch.exp(-h).mean())
    # no noise on a deterministic classifier that can change its prediction: epsilon = inf, no guarantee
    assert float(risk_gap_bound(math.inf, torch.zeros(5))) == 1.0
    assert float(guaranteed_accuracy_bound(0.97, math.inf, torch.zeros(5))) == 0.0
    # epsilon -> 0 with deterministic predictions: the gap vanishes like epsilon
    assert float(risk_gap_bound(1e-9, torch.zeros(5))) == pytest.approx(1e-9, rel=1e-6)
    # epsilon = 0: the bound keeps its entropy term 1 - E[e^{-H}] (it vanishes only when H = 0)
    assert float(risk_gap_bound(0.0, h)) == pytest.approx(floor)
    levels = torch.tensor([0.0, 1e-3, 0.1, 0.5, 1.0, 3.0, 10.0, math.inf], dtype=torch.float64)
    gaps = risk_gap_bound(levels, h)
    assert bool((gaps.diff() > 0).all()) and float(gaps[-1]) == 1.0
    guaranteed = guaranteed_accuracy_bound(0.9, levels, h)
    assert bool((guaranteed.diff() <= 0).all()) and float(guaranteed[0]) == pytest.approx(0.9 - floor)


# ---- Theorem 3 ------------------------------------------------------------------------------------------------


def test_certify_hand_cases() -> None:
    # epsilon' = 0.1 + log(100) / 100 = 0.146052; e^{2 epsilon'} = 1.339348; 1 + e^{epsilon'} = 2.157254.
    # row 1: 1.339348 * 0.05 + 0.02157254 = 0.08854 < 0.9; row 2: 1.339348 * 0.45 + 0.0215725 = 0.62428 > 0.5.
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.45, 0.05], [0.05, 0.9, 0.05]])
    assert certify(scores, epsilon=0.1, lambda_=101.0, delta=0.01).tolist() == [True, False, True]
    # [0.9, 0.1], lambda 11, delta 0.01: u* = (sqrt(1e-4 + 0.4 * 0.89) - 0.01) / 0.2, eps* = log u* - log(100)/10
    u_star = (math.sqrt(1e-4 + 0.4 * 0.89) - 0.01) / 0.2
    got = float(certified_epsilon(torch.tensor([[0.9, 0.1]]), lambda_=11.0, delta=0.01)[0])
    assert got == pytest.approx(math.log(u_star) - math.log(100) / 10)
    # second score 0: the condition is linear in u, u* = (E1 - delta) / delta
    got = float(certified_epsilon(torch.tensor([[0.5, 0.0, 0.0]]), lambda_=3.0, delta=0.1)[0])
    assert got == pytest.approx(math.log(4.0) - math.log(10) / 2)
    assert float(certified_epsilon(torch.tensor([[0.05, 0.05]]), lambda_=3.0, delta=0.1)[0]) == -math.inf


def test_certified_epsilon_is_the_threshold_of_certify() -> None:
    torch.manual_seed(0)
    scores = torch.softmax(3 * torch.randn(200, 5, dtype=torch.float64), dim=1)
    eps_star = certified_epsilon(scores, lambda_=30.0, delta=1e-3)
    for row, e in zip(scores, eps_star.tolist(), strict=True):
        if e > 1e-5:
            assert certify(row[None], epsilon=e - 1e-6, lambda_=30.0, delta=1e-3).item()
            assert not certify(row[None], epsilon=e + 1e-6, lambda_=30.0, delta=1e-3).item()
    assert (eps_star > 1e-5).sum() > 20


# ---- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: gaussian_epsilon(-1.0, std=1.0), "sensitivity"),
        (lambda: gaussian_epsilon(1.0, std=-1.0), "std"),
        (lambda: gaussian_epsilon(1.0, std=1.0, lambda_=0.5), "lambda_"),
        (lambda: gaussian_epsilon(1.0, covariance=torch.tensor([[1.0, 1.0], [1.0, 1.0]])), "covariance"),
        (lambda: laplace_epsilon(-0.1, std=1.0), "sensitivity"),
        (lambda: renyi_epsilon(0.1, distribution="cauchy", std=1.0), "distribution"),
        (lambda: input_epsilon(-0.1, distribution="gaussian", std=1.0, norm="l2", dim=4), "radius"),
        (lambda: input_epsilon(0.1, distribution="gaussian", std=1.0, norm="l3", dim=4), "norm"),
        (lambda: identity_sensitivity(-1.0, norm="l2", dim=3), "radius"),
        (lambda: risk_gap_bound(-0.5, torch.zeros(2)), "epsilon"),
        (lambda: guaranteed_accuracy_bound(1.5, 0.1, torch.zeros(2)), "accuracy"),
        (lambda: certify(torch.tensor([[0.9, 0.1]]), epsilon=0.1, lambda_=1.0, delta=0.1), "lambda_"),
        (lambda: certify(torch.tensor([[0.9, 0.1]]), epsilon=0.1, lambda_=2.0, delta=0.0), "delta"),
        (lambda: certified_epsilon(torch.tensor([[0.9, 0.1]]), lambda_=2.0, delta=1.0), "delta"),
        (lambda: certified_epsilon(torch.tensor([[0.9, 0.1]]), lambda_=0.9, delta=0.5), "lambda_"),
        (lambda: certify(torch.tensor([[1.9, 0.1]]), epsilon=0.1, lambda_=2.0, delta=0.1), "scores"),
        (lambda: certify(torch.tensor([[0.9, 0.1]]), epsilon=-0.1, lambda_=2.0, delta=0.1), "epsilon"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=argument):
        call()
