"""What every in-house attack shares: the result type, argument checks, and EoT-averaged evaluation.

The checks are :mod:`stochdef.defenses.validation`'s, the ones ``ensemble_accuracy``, ``certified_accuracy`` and
the adapters use (DESIGN.md, §C5): :func:`prepare` runs them; an empty batch gets an empty result (:func:`empty`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import DEFAULT_MAX_BATCH, Chunk, DrawKind, chunked_sum
from stochdef.adapters.draws import check_draws, per_call, probe
from stochdef.defenses.validation import (
    Bounds,
    check_batch,
    check_bounds,
    check_choice,
    check_int,
    check_labels,
    check_range,
    probe_classes,
)

__all__ = [
    "AttackResult",
    "Bounds",
    "check_choice",
    "check_int",
    "check_range",
    "draws_of",
    "empty",
    "evaluate",
    "prepare",
    "succeeded",
]


@dataclass(frozen=True)
class AttackResult:
    """The outcome of an attack on a batch.

    ``x_adv`` has ``x``'s shape, dtype and device; ``success`` is a bool tensor of shape ``(B,)``
    (misclassified, or classified as the target for a targeted attack, judged by the model's logits
    averaged over the attack's ``samples`` draws). ``queries`` (local search) counts model evaluations
    per example; ``eps`` (minimal FGSM) is the smallest step size found per example (``inf`` where none);
    ``steps`` (DeepFool) counts the iterations each example used.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor | None = None
    eps: torch.Tensor | None = None
    steps: torch.Tensor | None = None

    @property
    def success_rate(self) -> float:
        """Fraction of the batch on which the attack succeeded."""
        return float(self.success.float().mean()) if self.success.numel() else float("nan")


def prepare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bounds: Bounds) -> tuple[Bounds, int]:
    """Check ``model``, ``x`` (finite, inside ``bounds``, the model's dtype and device), ``bounds`` and ``y``
    (int64, on ``x``'s device, in range); return bounds and class count (0 for an empty batch: no model call).

    The class count comes from :func:`~stochdef.defenses.validation.probe_classes` (one forward pass of one
    draw, checked to be logits: not a tuple, not probabilities; it leaves no trace, so the attack's draws are
    those it would make without the probe), so labels are checked before any loss sees them (an out-of-range
    label would otherwise be a device-side assert on CUDA).
    """
    low_high = check_bounds("bounds", bounds)
    check_batch(model, x, y, bounds=low_high)
    if x.shape[0] == 0:
        return low_high, 0
    num_classes = probe_classes(model, input_shape=x.shape[1:], bounds=low_high, device=x.device)
    check_labels(y, batch=x.shape[0], num_classes=num_classes)
    return low_high, num_classes


def empty(x: torch.Tensor, **fields: torch.dtype) -> AttackResult:
    """The result of an attack on an empty batch: ``x`` itself, no success, and each of ``fields`` (name ->
    dtype) an empty tensor."""
    none = {name: torch.zeros(0, dtype=dtype, device=x.device) for name, dtype in fields.items()}
    return AttackResult(x_adv=x.detach().clone(), success=torch.zeros(0, dtype=torch.bool, device=x.device), **none)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    samples: int,
    max_batch: int = DEFAULT_MAX_BATCH,
    draws: DrawKind | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean logits and mean per-draw cross-entropy of ``model`` at ``x`` over ``samples`` draws (no grad).

    With ``samples=1`` the logits are ``model(x)`` bit for bit. ``draws`` is how the model draws (DESIGN.md,
    §C2; :func:`draws_of`, found now by a probe that leaves no trace if ``None``): a ``"per-call"`` model is
    called once per draw, so the success checks average real draws of it.
    """
    calls = per_call(model, x, samples, max_batch, check_draws(draws))

    def step(chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(chunk.replicate(x))
        loss = F.cross_entropy(out, chunk.replicate(y), reduction="none")
        return chunk.fold(out), chunk.fold(loss)

    with torch.no_grad():
        logits, loss = chunked_sum(step, batch=x.shape[0], samples=samples, max_batch=max_batch, per_call=calls)
    return logits / samples, loss / samples


def draws_of(model: nn.Module, x: torch.Tensor, *, samples: int, max_batch: int = DEFAULT_MAX_BATCH) -> DrawKind:
    """How ``model`` draws at ``x`` for an attack of ``samples`` draws, found once (a probe that leaves no trace;
    ``"per-row"`` where one call is all there is: one draw, or an empty batch), to pass as ``draws=``.

    >>> from torch import nn
    >>> draws_of(nn.Linear(3, 2), torch.zeros(4, 3), samples=8), draws_of(nn.Linear(3, 2), torch.zeros(4, 3), samples=1)
    ('deterministic', 'per-row')
    """
    if samples < 2 or x.shape[0] == 0:
        return "per-row"
    return probe(model, x, samples=samples, max_batch=max_batch)


def succeeded(logits: torch.Tensor, y: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """Per-example success: predicted class is the target (targeted) or differs from the label."""
    pred = logits.argmax(dim=1)
    return pred == y if targeted else pred != y
