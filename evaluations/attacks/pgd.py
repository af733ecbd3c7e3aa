"""Projected gradient descent (Madry et al. 2018), L-inf or L2; BIM / I-FGSM (Kurakin et al. 2017) is
``pgd`` without a random start.

Each step: ``x <- x + step * d(grad)``, then ``x <- x0 + P_eps(x - x0)``, then ``x <- clip(x, *bounds)``,
with ``d = sign`` (L-inf) or ``g / ||g||_2`` (L2) and ``P_eps`` the projection onto the eps-ball. That is
Foolbox 3's and torchattacks' order operation for operation (ART clips before it projects, which gives
the same point: both are clamps onto intervals that contain ``x0``). On a deterministic float32 model
without random start the L-inf result is bit-identical to Foolbox's ``LinfPGD(abs_stepsize=step)``,
ART's ``ProjectedGradientDescent(eps_step=step)`` and torchattacks' ``PGD(random_start=False)``; the L2
normalization follows Foolbox (``g * (1 / max(||g||, 1e-12))``), which ART and torchattacks round
slightly differently.

The gradient is the exact EoT mean of per-draw cross-entropy gradients over ``samples`` draws (a fresh
set of draws at every step). ``restarts`` runs the attack several times (useful with ``random_start``
or a randomized model) and keeps, per example, a misclassifying point if any run found one, else the
point of highest loss (both judged over ``samples`` draws).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from stochdef.adapters import DEFAULT_MAX_BATCH, DrawKind, eot_value_and_grad

from ._common import (
    AttackResult,
    Bounds,
    check_choice,
    check_int,
    check_range,
    draws_of,
    empty,
    evaluate,
    prepare,
    succeeded,
)

NORMS: tuple[str, ...] = ("linf", "l2")
StepCallback = Callable[[torch.Tensor, torch.Tensor], None]
"""Called at every step with the current iterate and its per-example loss (averaged over the draws)."""


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *(1,) * (like.dim() - 1))


def l2_norms(v: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm as Foolbox computes it: ``sqrt(sum(v^2))`` over all but the batch dimension."""
    return v.flatten(1).square().sum(dim=1).sqrt()


def direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent unit step for ``norm``: ``sign(g)`` or ``g / ||g||_2``."""
    if norm == "linf":
        return grad.sign()
    return grad * _per_example(1 / l2_norms(grad).clamp_min(1e-12), grad)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations onto the eps-ball of ``norm`` (clip for L-inf, rescale for L2)."""
    if norm == "linf":
        return torch.clamp(delta, min=-eps, max=eps)
    factor = torch.clamp(eps / l2_norms(delta).clamp_min(1e-12), max=1.0)
    return delta * _per_example(factor, delta)


def random_start_point(x: torch.Tensor, eps: float, norm: str, bounds: Bounds) -> torch.Tensor:
    """A uniform point of the eps-ball around ``x`` (L-inf cube or L2 ball), clipped to ``bounds``."""
    if norm == "linf":
        noise = torch.empty_like(x).uniform_(-eps, eps)
    else:
        dims = x[0].numel()
        gauss = torch.randn_like(x)
        radius = eps * torch.rand(x.shape[0], dtype=x.dtype, device=x.device) ** (1.0 / dims)
        noise = gauss * _per_example(radius / l2_norms(gauss).clamp_min(1e-12), x)
    return torch.clamp(x + noise, *bounds)


def _run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    norm: str,
    random_start: bool,
    bounds: Bounds,
    samples: int,
    targeted: bool,
    max_batch: int,
    draws: DrawKind,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    low, high = bounds
    x_adv = random_start_point(x, eps, norm, bounds) if random_start else x
    for _ in range(steps):
        loss, grad = eot_value_and_grad(
            model, x_adv, y, samples=samples, max_batch=max_batch, validate=False, draws=draws
        )
        if callback is not None:
            callback(x_adv, loss)
        move = step * direction(grad, norm)
        x_adv = x_adv - move if targeted else x_adv + move
        x_adv = x + project(x_adv - x, eps, norm)
        x_adv = torch.clamp(x_adv, min=low, max=high)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = False,
    restarts: int = 1,
    bounds: Bounds = (0.0, 1.0),
    samples: int = 1,
    targeted: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
    callback: StepCallback | None = None,
) -> AttackResult:
    """PGD / BIM with ``steps`` steps of size ``step`` inside the ``norm`` ball of radius ``eps``.

    ``y`` holds the true labels, or the targets with ``targeted=True`` (then each step descends the
    target's cross-entropy). The model is used in the mode it is in (call ``.eval()`` first).
    ``callback(x_iterate, loss)`` sees every iterate before its step (the gradient-obfuscation
    indicators use it to trace the attack's loss).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
        >>> result = pgd(net, x, y, eps=0.1, step=0.02, steps=10)
        >>> bool(((result.x_adv - x).abs() <= 0.1 + 1e-6).all())
        True
    """
    bounds, _ = prepare(model, x, y, bounds)
    eps = check_range("eps", eps, low=0.0)
    step = check_range("step", step, low=0.0)
    steps = check_int("steps", steps, minimum=1)
    norm = check_choice("norm", norm, NORMS)
    restarts = check_int("restarts", restarts, minimum=1)
    samples = check_int("samples", samples, minimum=1)
    if x.shape[0] == 0:
        return empty(x)
    kind = draws_of(model, x, samples=samples, max_batch=max_batch)  # probed once, not at every step
    best_x = best_success = best_score = None
    for _ in range(restarts):
        x_adv = _run(
            model,
            x,
            y,
            eps=eps,
            step=step,
            steps=steps,
            norm=norm,
            random_start=random_start,
            bounds=bounds,
            samples=samples,
            targeted=targeted,
            max_batch=max_batch,
            draws=kind,
            callback=callback,
        )
        logits, loss = evaluate(model, x_adv, y, samples=samples, max_batch=max_batch, draws=kind)
        success = succeeded(logits, y, targeted=targeted)
        score = -loss if targeted else loss  # higher = more adversarial
        if best_x is None or best_success is None or best_score is None:
            best_x, best_success, best_score = x_adv, success, score
            continue
        better = (success & ~best_success) | ((success == best_success) & (score > best_score))
        best_x = torch.where(_per_example(better, x), x_adv, best_x)
        best_success = best_success | success
        best_score = torch.where(better, score, best_score)
    assert best_x is not None and best_success is not None
    return AttackResult(x_adv=best_x, success=best_success)
