"""The alpha-sensitivity of the layers before an injected noise (Pinot et al. 2019, Definition 4).

``Delta_alpha^{A,B}(f) = sup_{||x - y||_A <= alpha} ||f(x) - f(y)||_B``: how far (in the norm ``B`` on the
noisy layer) two inputs at most ``alpha`` apart (in the threat norm ``A``) can be pushed by ``f``.
Theorem 1 needs it with ``B = l2`` for Gaussian noise and ``B = l1`` for Laplace noise
(:data:`stochdef.defenses.renyi.SENSITIVITY_NORM`). Norms are ``"l1"``, ``"l2"``, ``"linf"``.

* :func:`identity_sensitivity`: input injection, exact: ``alpha * d^{max(0, 1/q - 1/p)}``; so l-inf to l2
  costs ``sqrt(d)`` and l-inf to l1 costs ``d``.
* :func:`linear_sensitivity`: ``alpha`` times an upper bound on the operator norm ``||W||_{p -> q}``.
* :func:`sequential_sensitivity`: a chain of Linear layers and 1-Lipschitz activations (the layers
  before a noise layer put at position ``i`` of an MLP), by composing the per-layer bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .validation import check_choice, check_int, check_range

__all__ = ["identity_sensitivity", "linear_sensitivity", "norm_ratio", "operator_norm_bound", "sequential_sensitivity"]


NORMS: tuple[str, ...] = ("l1", "l2", "linf")
_P = {"l1": 1.0, "l2": 2.0, "linf": math.inf}
_DUAL = {"l1": "linf", "l2": "l2", "linf": "l1"}
# Coordinate-wise activations that are 1-Lipschitz in every l_p norm.
ONE_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Hardtanh, nn.ReLU6, nn.Identity, nn.Flatten, nn.Unflatten)


def norm_ratio(from_norm: str, to_norm: str, dim: int) -> float:
    """``sup_{v != 0} ||v||_to / ||v||_from`` in ``R^dim``: ``dim^{max(0, 1/q - 1/p)}`` (1 when ``q >= p``).

    Example:
        >>> norm_ratio("linf", "l2", 784), norm_ratio("l2", "linf", 784)
        (28.0, 1.0)
    """
    p = _P[check_choice("norm", from_norm, NORMS)]
    q = _P[check_choice("output_norm", to_norm, NORMS)]
    dim = check_int("dim", dim)
    return float(dim ** max(0.0, 1.0 / q - 1.0 / p))


def identity_sensitivity(radius: float, *, norm: str, output_norm: str = "l2", dim: int) -> float:
    """Sensitivity of the identity (noise on the input): ``radius * norm_ratio(norm, output_norm, dim)``.

    Exact: the ratio is attained by a constant-magnitude vector (``p > q``) or a basis vector (``p <= q``).

    Example:
        >>> identity_sensitivity(0.1, norm="linf", output_norm="l2", dim=100)
        1.0
    """
    return check_range("radius", radius, low=0.0) * norm_ratio(norm, output_norm, dim)


def _vector_norm(v: torch.Tensor, norm: str, dim: int) -> torch.Tensor:
    return torch.linalg.vector_norm(v, ord=_P[norm], dim=dim)


def operator_norm_bound(weight: torch.Tensor, *, norm: str = "l2", output_norm: str = "l2") -> float:
    """An upper bound on ``||W||_{p -> q} = sup_{||v||_p <= 1} ||W v||_q``, exact where it is cheap.

    Exact for ``p = l1`` (the largest column ``q``-norm), for ``q = linf`` (the largest row norm in the dual
    of ``p``) and for ``l2 -> l2`` (the largest singular value). Otherwise (``l2 -> l1``, ``linf -> l2``,
    ``linf -> l1``, whose exact values are hard to compute in general) the smaller of two bounds: the
    ``q``-norm of the rows' dual norms (Hoelder per output), and
    ``norm_ratio(p, l2) * sigma_max(W) * norm_ratio(l2, q)``.

    Example:
        >>> operator_norm_bound(torch.tensor([[3.0, 0.0], [0.0, -4.0]]))
        4.0
    """
    check_choice("norm", norm, NORMS)
    check_choice("output_norm", output_norm, NORMS)
    w = torch.as_tensor(weight).detach().to(torch.float64).cpu()
    if w.dim() != 2:
        raise ValueError(f"weight must be a matrix (out_features, in_features), got shape {tuple(w.shape)}")
    if norm == "l1":
        return float(_vector_norm(w, output_norm, 0).max())
    rows = _vector_norm(w, _DUAL[norm], 1)  # |w_i . v| <= ||w_i||_{p*} ||v||_p
    if output_norm == "linf":
        return float(rows.max())
    spectral = float(torch.linalg.matrix_norm(w, ord=2))
    if norm == "l2" and output_norm == "l2":
        return spectral
    via_l2 = norm_ratio(norm, "l2", w.shape[1]) * spectral * norm_ratio("l2", output_norm, w.shape[0])
    return min(float(_vector_norm(rows, output_norm, 0)), via_l2)


def linear_sensitivity(weight: torch.Tensor, radius: float, *, norm: str = "l2", output_norm: str = "l2") -> float:
    """Sensitivity of ``x -> W x + b``: ``radius * ||W||_{p -> q}`` (bounded by :func:`operator_norm_bound`).

    Example:
        >>> round(linear_sensitivity(torch.eye(3), 0.5, norm="linf", output_norm="l1"), 6)
        1.5
    """
    radius = check_range("radius", radius, low=0.0)
    return radius * operator_norm_bound(weight, norm=norm, output_norm=output_norm)


def sequential_sensitivity(
    layers: Iterable[nn.Module], radius: float, *, norm: str, output_norm: str = "l2", dim: int
) -> float:
    """An upper bound on the sensitivity of a chain of layers (an MLP truncated before its noise layer).

    ``dim`` is the number of input features. Linear layers contribute their operator norm (the first
    from ``norm`` to ``output_norm``, later ones within ``output_norm``); ReLU, LeakyReLU (slope <= 1),
    Tanh, Hardtanh, ReLU6, Flatten and Identity are 1-Lipschitz coordinate-wise in every l_p norm.
    Any other layer raises ``TypeError`` (pass the sensitivity yourself). An empty chain is the identity.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]]))
        >>> sequential_sensitivity(net, 0.1, norm="l2", output_norm="l2", dim=4)
        0.2
    """
    radius = check_range("radius", radius, low=0.0)
    current, width = check_choice("norm", norm, NORMS), check_int("dim", dim)
    check_choice("output_norm", output_norm, NORMS)
    for layer in _leaves(layers):
        if isinstance(layer, nn.Linear):
            radius *= operator_norm_bound(layer.weight, norm=current, output_norm=output_norm)
            current, width = output_norm, layer.out_features
        elif isinstance(layer, nn.LeakyReLU) and abs(layer.negative_slope) <= 1.0:
            continue
        elif not isinstance(layer, ONE_LIPSCHITZ):
            raise TypeError(f"sequential_sensitivity cannot bound a {type(layer).__name__} layer; pass the sensitivity")
    return radius * norm_ratio(current, output_norm, width)


def _leaves(layers: Iterable[nn.Module]) -> Iterable[nn.Module]:
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            yield from _leaves(layer)
        else:
            yield layer
