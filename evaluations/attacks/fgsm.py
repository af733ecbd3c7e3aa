"""FGSM (Goodfellow, Shlens, Szegedy 2015, "Explaining and Harnessing Adversarial Examples"), L-inf.

* :func:`fgsm`: one step ``x + eps * sign(grad_x L(x, y))``, clipped to the bounds. Bit-identical to
  Foolbox 3's ``FGSM``, ART's ``FastGradientMethod`` and torchattacks' ``FGSM`` on a deterministic float32
  model (the cross-check measures it).
* :func:`fgsm_minimal`: the variant the SDR paper used ("gradually increase the magnitude of eps until
  the input is misclassified", Khan et al., Sec. 2.1), as Foolbox 2.x's ``GradientSignAttack`` did it:
  the gradient sign is taken once at ``x`` and scaled by the box width ``high - low``; step sizes
  ``linspace(0, max_eps, epsilons + 1)[1:]`` (1000 by default, ``max_eps=1``) are tried in increasing
  order and the first that misclassifies wins; if it is among the first 20, the interval up to it is
  searched again on a finer grid of 20 (Foolbox 2.x's "repeat with smaller epsilons"). The grid is
  evaluated batched (many step sizes per model call), stopping once every example is decided.

With ``samples > 1`` the gradient is the exact EoT mean of per-draw gradients
(:func:`stochdef.adapters.eot_value_and_grad`) and success is judged on the logits averaged over
``samples`` draws.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stochdef.adapters import DEFAULT_MAX_BATCH, eot_value_and_grad

from ._common import AttackResult, Bounds, check_int, check_range, empty, evaluate, prepare, succeeded

REFINE_BELOW = 20  # Foolbox 2.x: a first success among the first 20 step sizes triggers a finer search
REFINE_POINTS = 20


def _signed_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, samples: int, targeted: bool, max_batch: int
) -> torch.Tensor:
    """``sign`` of the (EoT) loss gradient; negated for a targeted attack (descend on the target's loss)."""
    _, grad = eot_value_and_grad(model, x, y, samples=samples, max_batch=max_batch, validate=False)
    return -grad.sign() if targeted else grad.sign()


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    bounds: Bounds = (0.0, 1.0),
    samples: int = 1,
    targeted: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> AttackResult:
    """Fast Gradient Sign Method: ``clip(x + eps * sign(grad), *bounds)``.

    ``y`` holds the true labels, or the target labels with ``targeted=True`` (then the step descends
    the target's cross-entropy). The model is used in the mode it is in (call ``.eval()`` first).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
        >>> result = fgsm(net, x, y, eps=0.1)
        >>> bool(((result.x_adv - x).abs() <= 0.1 + 1e-7).all()), result.success.shape
        (True, torch.Size([4]))
    """
    (low, high), _ = prepare(model, x, y, bounds)
    eps = check_range("eps", eps, low=0.0)
    samples = check_int("samples", samples, minimum=1)
    if x.shape[0] == 0:
        return empty(x)
    direction = _signed_gradient(model, x, y, samples=samples, targeted=targeted, max_batch=max_batch)
    x_adv = torch.clamp(x + eps * direction, min=low, max=high).detach()
    logits, _ = evaluate(model, x_adv, y, samples=samples, max_batch=max_batch)
    return AttackResult(x_adv=x_adv, success=succeeded(logits, y, targeted=targeted))


def _first_success(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    direction: torch.Tensor,
    grid: torch.Tensor,
    *,
    bounds: Bounds,
    samples: int,
    targeted: bool,
    max_batch: int,
) -> torch.Tensor:
    """Per row, the index of the first step size in ``grid[row]`` whose point succeeds (-1 if none)."""
    batch, points = grid.shape
    first = torch.full((batch,), -1, dtype=torch.long, device=x.device)
    shape = (1,) * (x.dim() - 1)
    start = 0
    while start < points:
        todo = (first < 0).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        width = max(1, min(points - start, max_batch // max(1, todo.numel() * samples)))
        eps = grid[todo, start : start + width].T.to(x.dtype)  # (width, rows)
        candidates = torch.clamp(x[todo] + eps.reshape(width, -1, *shape) * direction[todo], *bounds)
        labels = y[todo].repeat(width)
        logits, _ = evaluate(model, candidates.flatten(0, 1), labels, samples=samples, max_batch=max_batch)
        hits = succeeded(logits, labels, targeted=targeted).view(width, -1)
        found = hits.any(dim=0)
        first[todo[found]] = start + hits.float().argmax(dim=0)[found]
        start += width
    return first


def fgsm_minimal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilons: int = 1000,
    max_eps: float = 1.0,
    refine: bool = True,
    bounds: Bounds = (0.0, 1.0),
    samples: int = 1,
    targeted: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> AttackResult:
    """The smallest FGSM step that misclassifies, searched on Foolbox 2.x's grid (see the module docstring).

    The step is ``eps * (high - low) * sign(grad)``; ``result.eps`` holds each example's ``eps`` (0 where ``x``
    already succeeds, ``inf`` where no step up to ``max_eps`` does; those rows of ``x_adv`` are ``x`` unchanged).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
        >>> result = fgsm_minimal(net, x, y, epsilons=100)
        >>> result.eps.shape
        torch.Size([4])
    """
    (low, high), _ = prepare(model, x, y, bounds)
    epsilons = check_int("epsilons", epsilons, minimum=1)
    max_eps = check_range("max_eps", max_eps, low=0.0, low_open=True)
    samples = check_int("samples", samples, minimum=1)
    if x.shape[0] == 0:
        return empty(x, eps=x.dtype)
    direction = (high - low) * _signed_gradient(model, x, y, samples=samples, targeted=targeted, max_batch=max_batch)
    kw: dict[str, Any] = {"bounds": (low, high), "samples": samples, "targeted": targeted, "max_batch": max_batch}
    batch = x.shape[0]
    clean, _ = evaluate(model, x, y, samples=samples, max_batch=max_batch)
    already = succeeded(clean, y, targeted=targeted)  # eps = 0: nothing to search
    grid = torch.linspace(0.0, max_eps, epsilons + 1, dtype=torch.float64, device=x.device)[1:]
    first = torch.full((batch,), -1, dtype=torch.long, device=x.device)
    todo = (~already).nonzero().squeeze(1)
    first[todo] = _first_success(model, x[todo], y[todo], direction[todo], grid.expand(len(todo), -1), **kw)
    eps = torch.full((batch,), float("inf"), dtype=torch.float64, device=x.device)
    eps[already] = 0.0
    eps[first >= 0] = grid[first[first >= 0]]
    found = already | (first >= 0)
    if refine:
        again = ((first >= 0) & (first < REFINE_BELOW)).nonzero().squeeze(1)
        if again.numel():
            steps = torch.linspace(0.0, 1.0, REFINE_POINTS + 1, dtype=torch.float64, device=x.device)[1:]
            fine = eps[again, None] * steps  # (rows, 20): linspace(0, eps_i, 21)[1:]
            hit = _first_success(model, x[again], y[again], direction[again], fine, **kw)
            ok = hit >= 0  # the last fine point is eps_i itself; a random model may still miss it
            eps[again[ok]] = fine[ok.nonzero().squeeze(1), hit[ok]]
    step = torch.where(torch.isfinite(eps), eps, torch.zeros_like(eps)).to(x.dtype)
    x_adv = torch.clamp(x + step.view(-1, *(1,) * (x.dim() - 1)) * direction, min=low, max=high).detach()
    x_adv[~found | already] = x[~found | already]
    logits, _ = evaluate(model, x_adv, y, samples=samples, max_batch=max_batch)
    return AttackResult(x_adv=x_adv, success=succeeded(logits, y, targeted=targeted) & found, eps=eps.to(x.dtype))
