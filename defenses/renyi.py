"""Pinot et al.'s robustness bounds for noise injection (NeurIPS 2019), as small pure functions.

* Theorem 1 (Renyi robustness): noise ``X`` added after layer ``i`` makes ``x -> N(x)`` a probabilistic
  mapping whose outputs at two inputs ``alpha`` apart have Renyi divergence of order ``lambda`` at most
  ``epsilon``: :func:`gaussian_epsilon`, :func:`laplace_epsilon`, :func:`renyi_epsilon`, with the
  sensitivity of the layers before the noise from :mod:`stochdef.defenses.sensitivity`.
* Theorem 2 (risk gap): ``|Risk_alpha(M) - Risk(M)| <= 1 - e^{-epsilon} E_x[e^{-H(M(x))}]``:
  :func:`entropy`, :func:`risk_gap_bound`, :func:`guaranteed_accuracy_bound`.
* Theorem 3 (certificate of the averaged classifier): :func:`certify`, :func:`certified_epsilon`.

The Monte-Carlo estimates these need (label distributions of a model) live in
:mod:`stochdef.evaluations.reproduce.pinot`, which may run models through the EoT engine.

Renyi divergence of order ``lambda > 1``: ``D_lambda(P||Q) = 1/(lambda-1) log E_Q[(p/q)^lambda]``; it is
non-decreasing in ``lambda``, tends to KL as ``lambda -> 1`` and to ``D_inf = log sup p/q`` as
``lambda -> inf``. Theorems 1 and 2 hold for ``lambda >= 1`` (``1`` meaning KL); Theorem 3 needs
``lambda > 1``.
"""

from __future__ import annotations

import math

import torch

from .noise import DISTRIBUTIONS
from .sensitivity import norm_ratio
from .validation import check_choice, check_range

__all__ = [
    "certified_epsilon",
    "certify",
    "entropy",
    "gaussian_epsilon",
    "guaranteed_accuracy_bound",
    "input_epsilon",
    "input_radius",
    "laplace_epsilon",
    "renyi_epsilon",
    "risk_gap_bound",
]


# The norm on the noisy layer's output in which Theorem 1 needs the sensitivity, per distribution.
SENSITIVITY_NORM: dict[str, str] = {"gaussian": "l2", "laplace": "l1", "uniform": "l1", "exponential": "l1"}


def _check_lambda(lambda_: float, *, strict: bool = False) -> float:
    return check_range("lambda_", lambda_, low=1.0, low_open=strict)


def gaussian_epsilon(
    sensitivity: float, *, std: float | None = None, covariance: torch.Tensor | None = None, lambda_: float = 1.0
) -> float:
    """Theorem 1, Gaussian case: ``epsilon = lambda * Delta^2 / (2 * sigma_min(Sigma))``.

    Assumptions: ``X ~ N(0, Sigma)`` with ``Sigma`` non-degenerate (positive definite), added after
    layer ``i``; ``sensitivity`` is ``Delta = Delta_alpha^{A,2}(N_{|i})``, the largest l2 distance
    between the layer-``i`` outputs of two inputs at most ``alpha`` apart in the threat norm ``A``;
    ``lambda_ >= 1``. Then ``N_X^i`` is ``d_{R,lambda}``-``(alpha, epsilon)`` robust (the divergence of
    two Gaussians with means ``m1, m2`` is ``lambda/2 (m1-m2)^T Sigma^{-1} (m1-m2)``). Pass either
    ``std`` (``Sigma = std^2 I``; ``std=0`` means no noise: ``epsilon = inf`` unless ``Delta = 0``) or
    ``covariance``.

    Example:
        >>> gaussian_epsilon(1.0, std=0.5, lambda_=2.0)
        4.0
    """
    delta = check_range("sensitivity", sensitivity, low=0.0)
    lam = _check_lambda(lambda_)
    if (std is None) == (covariance is None):
        raise ValueError("pass exactly one of std and covariance")
    if covariance is not None:
        cov = torch.as_tensor(covariance, dtype=torch.float64)
        if cov.dim() != 2 or cov.shape[0] != cov.shape[1] or not torch.allclose(cov, cov.T):
            raise ValueError(f"covariance must be a symmetric square matrix, got shape {tuple(cov.shape)}")
        sigma_min = float(torch.linalg.eigvalsh(cov)[0])
        if not sigma_min > 0:
            raise ValueError(f"covariance must be positive definite (non-degenerate), smallest eigenvalue {sigma_min}")
    else:
        assert std is not None  # exactly one of std and covariance, checked above
        sigma_min = check_range("std", std, low=0.0) ** 2
    if delta == 0.0:
        return 0.0
    return math.inf if sigma_min == 0.0 else lam * delta**2 / (2.0 * sigma_min)


def laplace_epsilon(sensitivity: float, *, std: float) -> float:
    """Theorem 1 for i.i.d. Laplace noise: ``epsilon = Delta_1 / b = sqrt(2) * Delta_1 / std``, every order.

    Assumptions: each coordinate of ``X`` is ``Laplace(0, b)`` independently, ``b = std / sqrt(2)``;
    ``sensitivity`` is ``Delta_1 = Delta_alpha^{A,1}(N_{|i})``, measured in the l1 norm on layer ``i``.

    Derivation: the densities of ``a + X`` and ``c + X`` have log-ratio
    ``sum_j (|z_j - c_j| - |z_j - a_j|) / b <= ||a - c||_1 / b`` (triangle inequality), with equality for
    ``z`` beyond both points in every coordinate. So the max-divergence is ``D_inf = ||a - c||_1 / b``,
    and since ``D_lambda`` is non-decreasing in ``lambda``, ``D_lambda <= ||a - c||_1 / b <= Delta_1 / b``
    for every ``lambda >= 1``. Theorem 1's general exponential-family formula with ``t(z) = |z|``
    (per coordinate), ``theta = -1/b`` and ``k = 0`` gives ``||theta||_2 Delta_2 = sqrt(d) Delta_2 / b``,
    never smaller, because ``||v||_1 <= sqrt(d) ||v||_2``.

    Example:
        >>> round(laplace_epsilon(0.5, std=2 ** 0.5), 6)
        0.5
    """
    delta = check_range("sensitivity", sensitivity, low=0.0)
    scale = check_range("std", std, low=0.0) / math.sqrt(2.0)
    if delta == 0.0:
        return 0.0
    return math.inf if scale == 0.0 else delta / scale


def renyi_epsilon(sensitivity: float, *, distribution: str, std: float, lambda_: float = 1.0) -> float:
    """Theorem 1's ``epsilon`` for ``distribution`` noise of standard deviation ``std``.

    ``sensitivity`` must be measured in ``SENSITIVITY_NORM[distribution]`` on the noisy layer (l2 for
    Gaussian, l1 for Laplace). Uniform and centred-exponential noise get ``inf`` for any positive
    sensitivity: a shifted copy has mass where the original has none, so their Renyi divergence is
    infinite and the theorem guarantees nothing.

    Example:
        >>> renyi_epsilon(0.0, distribution="uniform", std=1.0), renyi_epsilon(0.1, distribution="uniform", std=1.0)
        (0.0, inf)
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if distribution == "gaussian":
        return gaussian_epsilon(sensitivity, std=std, lambda_=lambda_)
    _check_lambda(lambda_)
    if distribution == "laplace":
        return laplace_epsilon(sensitivity, std=std)
    check_range("std", std, low=0.0)
    return 0.0 if check_range("sensitivity", sensitivity, low=0.0) == 0.0 else math.inf


def input_epsilon(radius: float, *, distribution: str, std: float, norm: str, dim: int, lambda_: float = 1.0) -> float:
    """Theorem 1 for noise on the input (``N_{|0}`` the identity) against a ``norm`` attack of size ``radius``.

    The identity's sensitivity is ``radius * norm_ratio(norm, SENSITIVITY_NORM[distribution], dim)``
    (exact); e.g. Gaussian noise against l-inf attacks: ``epsilon = lambda * d * radius^2 / (2 std^2)``.

    Example:
        >>> input_epsilon(0.5, distribution="gaussian", std=0.5, norm="l2", dim=784)
        0.5
    """
    radius = check_range("radius", radius, low=0.0)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    delta = radius * norm_ratio(norm, SENSITIVITY_NORM[distribution], dim)
    return renyi_epsilon(delta, distribution=distribution, std=std, lambda_=lambda_)


def input_radius(epsilon: float, *, distribution: str, std: float, norm: str, dim: int, lambda_: float = 1.0) -> float:
    """The inverse of :func:`input_epsilon`: the attack size at which input noise reaches level ``epsilon``.

    ``0`` for uniform/exponential noise and for ``std = 0`` (no positive radius has a finite level).

    Example:
        >>> input_radius(0.5, distribution="gaussian", std=0.5, norm="l2", dim=784)
        0.5
    """
    eps = check_range("epsilon", epsilon, low=0.0)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    std = check_range("std", std, low=0.0)
    lam = _check_lambda(lambda_)
    ratio = norm_ratio(norm, SENSITIVITY_NORM[distribution], dim)
    if distribution == "gaussian":
        return math.sqrt(2.0 * std**2 * eps / lam) / ratio
    if distribution == "laplace":
        return eps * std / (math.sqrt(2.0) * ratio)
    return 0.0


# ---- Theorem 2: the adversarial risk gap -----------------------------------------------------------------


def entropy(probs: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Shannon entropy ``H(p) = -sum_i p_i log p_i`` in nats along ``dim`` (with ``0 log 0 = 0``).

    Example:
        >>> round(float(entropy(torch.tensor([0.5, 0.5]))), 6) == round(math.log(2), 6)
        True
    """
    if not probs.is_floating_point() or bool((probs < 0).any()) or not bool(torch.isfinite(probs).all()):
        raise ValueError("probs must be finite, non-negative floating-point probabilities")
    logs = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
    return -(probs * logs).sum(dim=dim)


def risk_gap_bound(epsilon: float | torch.Tensor, entropies: torch.Tensor) -> torch.Tensor:
    """Theorem 2: ``|Risk_alpha(M) - Risk(M)| <= 1 - e^{-epsilon} E_x[e^{-H(M(x))}]``.

    Assumptions: ``M`` is ``d_{R,lambda}``-``(alpha, epsilon)`` robust for some ``lambda >= 1`` (e.g. by
    Theorem 1); ``entropies`` holds ``H(M(x))``, the entropy of the predicted-label distribution, for a
    sample of inputs ``x`` (the mean over them estimates ``E_x``). ``epsilon`` may be a tensor of levels
    (one per radius); ``inf`` gives the vacuous bound 1. At ``epsilon = 0`` the bound is
    ``1 - E_x[e^{-H}]``, which vanishes only for deterministic predictions (``H = 0``).

    Example:
        >>> risk_gap_bound(torch.tensor([0.0, 1.0]), torch.zeros(3))
        tensor([0.0000, 0.6321], dtype=torch.float64)
    """
    eps = torch.as_tensor(epsilon, dtype=torch.float64)
    if bool(torch.isnan(eps).any()) or bool((eps < 0).any()):
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    h = torch.as_tensor(entropies, dtype=torch.float64).detach().cpu()
    if h.numel() == 0 or bool((h < 0).any()) or not bool(torch.isfinite(h).all()):
        raise ValueError("entropies must be a non-empty tensor of finite entropies >= 0")
    return 1.0 - torch.exp(-eps.cpu()) * torch.exp(-h).mean()


def guaranteed_accuracy_bound(accuracy: float, epsilon: float | torch.Tensor, entropies: torch.Tensor) -> torch.Tensor:
    """Lower bound on the accuracy under any attack of radius ``alpha``: ``max(0, accuracy - gap)``.

    ``accuracy`` is ``1 - Risk(M)``, the expected single-draw accuracy of ``M``; ``gap`` is
    :func:`risk_gap_bound` (Theorem 2, same assumptions). This is the curve of the paper's Figure 1 (b), (c).

    Example:
        >>> guaranteed_accuracy_bound(0.9, torch.tensor([0.0, math.inf]), torch.zeros(4))
        tensor([0.9000, 0.0000], dtype=torch.float64)
    """
    acc = check_range("accuracy", accuracy, low=0.0, high=1.0)
    return (acc - risk_gap_bound(epsilon, entropies)).clamp(min=0.0)


# ---- Theorem 3: the certificate of the averaged classifier ------------------------------------------------


def _top2(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.dim() != 2 or s.shape[1] < 2:
        raise ValueError(f"scores must have shape (batch, K) with K >= 2, got {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()) or bool((s > 1).any()):
        raise ValueError("scores must lie in [0, 1] (expected outputs of M, e.g. label frequencies or softmax)")
    top = s.topk(2, dim=1).values
    return top[:, 0], top[:, 1]


def certified_epsilon(scores: torch.Tensor, *, lambda_: float, delta: float) -> torch.Tensor:
    """Per row, the supremum of the ``epsilon`` for which Theorem 3 certifies the averaged classifier.

    Theorem 3: let ``M`` take values in ``[0, 1]^K`` and be ``d_{R,lambda}``-``(alpha, epsilon)`` robust with
    ``lambda > 1``; let ``delta* in (0, 1)`` and ``epsilon' = epsilon + log(1/delta*) / (lambda - 1)``. If
    ``E[y_k*] > e^{2 epsilon'} max_{i != k*} E[y_i] + (1 + e^{epsilon'}) delta*`` (``E`` over ``y ~ M(x)``),
    then ``f(x) = argmax_k E[y_k]`` is constant on the ``alpha``-ball around ``x``. (The paper writes
    ``R^K``; the ``delta*`` term comes from converting Renyi to ``(epsilon', delta*)`` robustness and bounding
    expected outputs that lie in ``[0, 1]``.) ``scores[b]`` holds ``E[y]`` for input ``b``.

    Only ``k* = argmax`` can pass. With ``u = e^{epsilon'}`` the condition is
    ``E2 u^2 + delta u + delta - E1 < 0`` (``E1``, ``E2`` the two largest scores), i.e. ``u < u*``, the
    positive root; so the certificate holds at level ``epsilon`` iff
    ``epsilon < log(u*) - log(1/delta*)/(lambda-1)``, which this returns (``-inf`` when ``E1 <= delta*``).
    Negative values mean no certificate at any level.

    Example:
        >>> round(float(certified_epsilon(torch.tensor([[0.9, 0.1]]), lambda_=11.0, delta=0.01)[0]), 4)
        0.6157
    """
    lam = _check_lambda(lambda_, strict=True)
    d = check_range("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    e1, e2 = _top2(scores)
    disc = torch.sqrt(d * d + 4.0 * e2 * (e1 - d))
    root = torch.where(e2 > 0, (disc - d) / (2.0 * e2).clamp(min=1e-300), (e1 - d) / d)
    log_root = torch.where(e1 > d, root.clamp(min=1e-300).log(), torch.full_like(root, -math.inf))
    return log_root - math.log(1.0 / d) / (lam - 1.0)


def certify(scores: torch.Tensor, *, epsilon: float, lambda_: float, delta: float) -> torch.Tensor:
    """Theorem 3's condition (see :func:`certified_epsilon`) checked directly, per row: a bool tensor.

    Example:
        >>> certify(torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.45, 0.05]]), epsilon=0.1, lambda_=101.0, delta=0.01)
        tensor([ True, False])
    """
    eps = check_range("epsilon", epsilon, low=0.0)
    lam = _check_lambda(lambda_, strict=True)
    d = check_range("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    e1, e2 = _top2(scores)
    eps_prime = eps + math.log(1.0 / d) / (lam - 1.0)
    return e1 > math.exp(2.0 * eps_prime) * e2 + (1.0 + math.exp(eps_prime)) * d
