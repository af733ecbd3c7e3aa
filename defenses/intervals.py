"""Certified accuracy by interval bound propagation (Agrawal, de Alfaro & Helmbold 2019, Section 4).

Every input ``x_i`` may move to anywhere in ``[x_i - eps, x_i + eps]`` intersected with the input range;
each layer maps a box of inputs to a box that contains all its outputs (their Theorem 2), and an example
is *certified* when its true class's lower bound beats every other class's upper bound (their Corollary
1): no eps-perturbation can change its prediction. Certified accuracy is a lower bound on the accuracy
under *any* attack within eps, as an attack's accuracy is an upper bound.

Rules (each sound; exact for one layer given independent input intervals, looser through depth):

* ``nn.Linear``: ``[l W+ + r W- + b, r W+ + l W- + b]`` with ``W+ = max(W, 0)``, ``W- = min(W, 0)``,
  computed in the equal centre/radius form ``W m + b -/+ |W| rad`` (two products instead of four,
  and at eps = 0 exactly the forward pass);
* monotone activations (``ReLU``, ``Sigmoid``, ``Tanh``, ``Identity``) and ``Flatten``: applied to both ends;
* :class:`~stochdef.defenses.mwd.MWDLayer` (U and U^NEG units): :func:`~.mwd_functional.mwd_interval`;
* ``nn.Sequential``: layer by layer. Other modules: register a rule with :func:`register_rule`.

Example:
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(MWDLayer(4, 3), MWDLayer(3, 2, unit="nand"))
    >>> x = torch.rand(5, 4)
    >>> lower, upper = interval_bounds(net, x, 0.0)
    >>> torch.equal(lower, net(x).detach()) and torch.equal(upper, lower)
    True
    >>> lower, upper = interval_bounds(net, x, 0.1)
    >>> bool((lower <= net(x)).all() and (net(x) <= upper).all())
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .mwd import MWDLayer, check_input_range
from .mwd_functional import mwd_interval
from .validation import check_input, check_int, check_labels, check_range

__all__ = ["certified", "certified_accuracy", "interval_bounds", "propagate", "register_rule"]


Bounds = tuple[torch.Tensor, torch.Tensor]
Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], Bounds]


def _linear(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    assert isinstance(layer, nn.Linear)
    centre = F.linear((lower + upper) / 2, layer.weight, layer.bias)
    radius = F.linear((upper - lower) / 2, layer.weight.abs())
    return centre - radius, centre + radius


def _monotone(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    return layer(lower), layer(upper)


def _mwd(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    assert isinstance(layer, MWDLayer)
    return mwd_interval(lower, upper, layer.u, layer.w, layer.negated)


def _sequential(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    for child in model.children():
        lower, upper = propagate(child, lower, upper)
    return lower, upper


RULES: dict[type[nn.Module], Rule] = {
    nn.Sequential: _sequential,
    nn.Linear: _linear,
    MWDLayer: _mwd,
    nn.Flatten: _monotone,
    nn.ReLU: _monotone,
    nn.Sigmoid: _monotone,
    nn.Tanh: _monotone,
    nn.Identity: _monotone,
}


def register_rule(kind: type[nn.Module], rule: Rule) -> None:
    """Teach :func:`propagate` a module type: ``rule(module, lower, upper) -> (lower, upper)``."""
    RULES[kind] = rule


def propagate(module: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    """The output box of ``module`` for inputs anywhere in the box ``[lower, upper]``."""
    rule = RULES.get(type(module))
    if rule is None:
        raise TypeError(
            f"interval bounds have no rule for {type(module).__name__}; supported: "
            f"{sorted(k.__name__ for k in RULES)} (add one with register_rule)"
        )
    return rule(module, lower, upper)


@torch.no_grad()
def interval_bounds(
    model: nn.Module, x: torch.Tensor, eps: float, *, input_range: tuple[float, float] = (0.0, 1.0)
) -> Bounds:
    """Lower and upper bounds on every output of ``model`` over all eps-perturbations of each row of ``x``.

    The perturbation box is ``[x - eps, x + eps]`` intersected with ``input_range``; ``eps`` is an L-inf
    radius. Returns two tensors shaped like ``model(x)``.
    """
    eps = check_range("eps", eps, low=0.0)
    low, high = check_input_range("input_range", input_range)
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite")
    if bool((x < low).any() or (x > high).any()):
        raise ValueError(f"x must lie in input_range {input_range}, got values in [{x.min():.4g}, {x.max():.4g}]")
    return propagate(model, (x - eps).clamp(low, high), (x + eps).clamp(low, high))


def certified(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, input_range: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """Per example: is the true class's lower bound above every other class's upper bound? (Corollary 1)

    ``y`` must hold int64 labels on ``x``'s device; an empty batch gives an empty result.
    """
    check_input(x)
    check_labels(y, batch=x.shape[0], device=x.device)
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=x.device)
    lower, upper = interval_bounds(model, x, eps, input_range=input_range)
    if lower.dim() != 2 or lower.shape[0] != x.shape[0]:
        raise ValueError(f"model must return logits of shape ({x.shape[0]}, classes), got shape {tuple(lower.shape)}")
    check_labels(y, batch=x.shape[0], num_classes=lower.shape[1])
    true_lower = lower.gather(1, y[:, None]).squeeze(1)
    others_upper = upper.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true_lower > others_upper


def certified_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 1000,
) -> float:
    """Fraction of ``(x, y)`` certified at radius ``eps``: a lower bound on the accuracy under any attack.

    ``nan`` for an empty batch; ``x`` and ``y`` are checked as in :func:`certified`.

    Example:
        >>> net = nn.Sequential(MWDLayer(4, 3, generator=torch.Generator().manual_seed(0)), nn.Linear(3, 2))
        >>> x = torch.rand(8, 4)
        >>> y = net(x).argmax(1)
        >>> certified_accuracy(net, x, y, 0.0), certified_accuracy(net, x, 1 - y, 0.1)  # wrong labels: never
        (1.0, 0.0)
    """
    check_int("batch_size", batch_size)
    check_input(x)
    check_labels(y, batch=x.shape[0], device=x.device)
    if len(x) == 0:
        return float("nan")
    count = sum(
        int(certified(model, x[i : i + batch_size], y[i : i + batch_size], eps, input_range=input_range).sum())
        for i in range(0, len(x), batch_size)
    )
    return count / len(x)
