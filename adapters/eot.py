"""Expectation over Transformation (EoT): average a randomized model over its own randomness.

Two estimators, named so every result can say which it used (DESIGN.md, §C3):

* :class:`EoT` (``reduce="logits"`` or ``"probs"``) is a module: its output is the mean logits, or the log
  of the mean softmax, over ``samples`` draws. Any attack of any library that holds it differentiates
  that averaged output (Foolbox's ``ExpectationOverTransformationWrapper`` and Pinot et al.'s
  ``EOTWrapper`` average the same way).
* :func:`eot_gradient` is the exact Monte-Carlo mean of per-draw loss gradients,
  ``E_theta[grad_x L(f_theta(x), y)]`` (torchattacks' ``EOTPGD`` and AutoAttack's ``rand`` version average
  this way). The ART adapter and the in-house attacks use it.

For a model that draws independent randomness per row (DESIGN.md, §C2; every stochdef defense) both
replicate the batch ``samples`` times along the batch dimension and run the model on the replicated
batch: ``samples`` independent draws per input in one vectorized call. A model whose rows of one call
share a draw (``"per-call"``, :func:`~stochdef.adapters.draw_kind`: Xie et al. 2018's random
resize-and-pad) would give ``samples`` copies of one draw that way; it is called once per draw, each
call on the original batch. Each estimator finds the model's kind with :func:`draw_kind` (one probe
that leaves no trace; the :class:`EoT` module once, at its first call) unless given ``draws=``. Calls are
chunked so no model call sees more than ``max_batch`` rows; the Python loop runs over chunks, never
over examples one by one (:func:`stochdef.adapters.chunking.chunked_sum`, the one such loop of the package).

Averaging two or more draws runs on the fast path: Gaussian-weight linear layers (SDR, Adv-BNN,
RNW/RSW) sample by local reparameterization there (:func:`stochdef.defenses.sampling.fast_sampling`),
which has the same output law and the same expected input gradient as drawing every weight, so the
mean output and the mean gradient estimate the same expectations. ``samples=1`` is one draw of the
sampled network (every weight drawn), what a single-draw attack must see (DESIGN.md, §C2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from stochdef.defenses.validation import (
    Bounds,
    CheckedOutput,
    check_batch,
    check_bounds,
    check_choice,
    check_input,
    check_int,
    check_labels,
    check_like_model,
    check_shape,
)

from .chunking import DEFAULT_MAX_BATCH, Chunk, chunked_sum
from .draws import DrawKind, check_draws, per_call, probe

Reduce = Literal["logits", "probs"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossName = Literal["ce", "margin"]

REDUCES: tuple[str, ...] = ("logits", "probs")
LOSSES: tuple[str, ...] = ("ce", "margin")


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy (higher = more adversarial)."""
    return F.cross_entropy(logits, y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (positive = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return other - true


def resolve_loss(loss: LossName | LossFn) -> LossFn:
    """Map a loss name to its per-example function; pass a callable through."""
    if callable(loss):
        return loss
    return {"ce": cross_entropy, "margin": margin}[check_choice("loss", loss, LOSSES)]


class EoT(nn.Module):
    """A randomized classifier averaged over ``samples`` draws of its randomness.

    ``forward(x)`` returns the mean logits (``reduce="logits"``) or the log of the mean softmax
    (``reduce="probs"``, whose ``softmax`` is the ensemble's class probabilities). The wrapped model
    must stay random in ``eval()`` mode (DESIGN.md, §C1). How it draws (:func:`draw_kind`) is found
    once, at the first non-empty call with ``samples > 1``, in the model's mode then, and kept in
    :attr:`draws` (or given as ``draws=``): a ``"per-row"`` (or ``"deterministic"``) model is called on
    the batch replicated ``samples`` times; a ``"per-call"`` model, whose rows of one call share a draw,
    once per draw on the batch (:attr:`per_call`). With ``samples=1`` the output is exactly ``model(x)``
    (``reduce="logits"``) and no probe runs.

    Inputs are checked on every call (finite, rank, ``bounds``, ``input_shape`` when given, the dtype and
    device of the model's parameters) and never clipped, cast or moved; ``validate=False`` skips the checks.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Noisy(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return self.fc(x + 0.1 * torch.randn_like(x))
        >>> eot = EoT(Noisy(), samples=16, bounds=(0.0, 1.0)).eval()
        >>> eot(torch.rand(5, 4)).shape
        torch.Size([5, 3])
        >>> eot.draws, eot.per_call
        ('per-row', False)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        samples: int,
        reduce: Reduce = "logits",
        max_batch: int = DEFAULT_MAX_BATCH,
        bounds: Bounds | None = None,
        input_shape: tuple[int, ...] | None = None,
        validate: bool = True,
        draws: DrawKind | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.samples = check_int("samples", samples, minimum=1)
        self.reduce: Reduce = check_choice("reduce", reduce, REDUCES)  # type: ignore[assignment]
        self.max_batch = check_int("max_batch", max_batch, minimum=1)
        self.bounds = None if bounds is None else check_bounds("bounds", bounds)
        self.input_shape = None if input_shape is None else check_shape("input_shape", input_shape)
        self.validate = validate
        self.draws: DrawKind | None = check_draws(draws)
        """How the model draws: given, or found at the first non-empty call with ``samples > 1``; else ``None``."""

    @property
    def per_call(self) -> bool:
        """True when the draws are taken one call per draw (a ``"per-call"`` model), not in one replicated call."""
        return self.draws == "per-call"

    def detect(self, x: torch.Tensor) -> DrawKind | None:
        """:attr:`draws`, found now by :func:`draw_kind` on ``x`` if unknown (``samples > 1``, ``x`` non-empty)."""
        if self.draws is None and self.samples > 1 and x.dim() >= 1 and x.shape[0] > 0:
            self.draws = probe(self.model, x, samples=self.samples, max_batch=self.max_batch)
        return self.draws

    def extra_repr(self) -> str:
        return (
            f"samples={self.samples}, reduce={self.reduce!r}, max_batch={self.max_batch}, bounds={self.bounds}, "
            f"draws={self.draws!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.validate:
            check_input(x, bounds=self.bounds, sample_shape=self.input_shape)
            check_like_model(x, self.model)
        draws = self.detect(x) or "per-row"  # None only where one call is all there is
        if self.reduce == "logits":
            return expectation(self.model, x, samples=self.samples, max_batch=self.max_batch, draws=draws)
        return log_mean_softmax(self.model, x, samples=self.samples, max_batch=self.max_batch, draws=draws)


@torch.no_grad()
def ensemble_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    samples: int,
    max_batch: int = DEFAULT_MAX_BATCH,
    draws: DrawKind | None = None,
) -> float:
    """Fraction of ``x`` whose ensemble prediction (the softmax averaged over ``samples`` draws) is ``y``.

    The prediction of ``EoT(model, samples=samples, reduce="probs")``; for a deterministic model and
    ``samples=1`` the plain accuracy. ``nan`` for an empty batch. The batch, the labels (int64, in range) and
    every model output (logits, not a tuple or probabilities) are checked (``stochdef.defenses.validation``).
    A ``"per-call"`` model (``draws``, found by :func:`draw_kind` if not given) is called once per draw.
    """
    check_batch(model, x, y)
    samples = check_int("samples", samples, minimum=1)
    draws = check_draws(draws)
    if x.shape[0] == 0:
        return float("nan")
    eot = EoT(CheckedOutput(model), samples=samples, reduce="probs", max_batch=max_batch, validate=False, draws=draws)
    probs = eot(x)
    check_labels(y, batch=x.shape[0], num_classes=probs.shape[1])
    return float((probs.argmax(1) == y).float().mean())


def expectation(
    model: nn.Module,
    x: torch.Tensor,
    *,
    samples: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    draws: DrawKind | None = None,
) -> torch.Tensor:
    """Monte-Carlo mean of ``transform(model(x))`` over ``samples`` draws (differentiable).

    With ``samples=1`` and no ``transform`` this is ``model(x)`` itself, bit for bit. ``draws`` is how the model
    draws (:func:`draw_kind`, run now if ``None``): a ``"per-call"`` model is called once per draw.
    """
    samples = check_int("samples", samples, minimum=1)
    max_batch = check_int("max_batch", max_batch, minimum=1)
    if samples == 1 and x.shape[0] <= max_batch:
        out = model(x)
        return out if transform is None else transform(out)
    calls = per_call(model, x, samples, max_batch, check_draws(draws))

    def fold(out: torch.Tensor) -> torch.Tensor:
        return (out if transform is None else transform(out)).sum(0)

    return _accumulate(model, x, samples, max_batch, fold, torch.add, calls) / samples


def log_mean_softmax(
    model: nn.Module,
    x: torch.Tensor,
    *,
    samples: int,
    max_batch: int = DEFAULT_MAX_BATCH,
    draws: DrawKind | None = None,
) -> torch.Tensor:
    """``log(mean_s softmax(model_s(x)))`` computed stably with log-sum-exp (differentiable).

    ``draws`` as for :func:`expectation`.
    """
    samples = check_int("samples", samples, minimum=1)
    max_batch = check_int("max_batch", max_batch, minimum=1)
    calls = per_call(model, x, samples, max_batch, check_draws(draws))

    def fold(out: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(F.log_softmax(out, dim=-1), dim=0)

    return _accumulate(model, x, samples, max_batch, fold, torch.logaddexp, calls) - math.log(samples)


def _accumulate(
    model: nn.Module,
    x: torch.Tensor,
    samples: int,
    max_batch: int,
    reduce_draws: Callable[[torch.Tensor], torch.Tensor],
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    calls: bool = False,
) -> torch.Tensor:
    """Run the model on replicated chunks (one call per draw if ``calls``); ``reduce_draws`` folds a
    ``(copies, rows, ...)`` output."""

    def step(chunk: Chunk) -> tuple[torch.Tensor]:
        return (reduce_draws(chunk.draws(model(chunk.replicate(x)))),)

    return chunked_sum(step, batch=x.shape[0], samples=samples, max_batch=max_batch, combine=combine, per_call=calls)[0]


def eot_value_and_grad(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    samples: int,
    loss: LossName | LossFn = "ce",
    max_batch: int = DEFAULT_MAX_BATCH,
    validate: bool = True,
    draws: DrawKind | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean loss and exact EoT gradient ``E_theta[grad_x L(f_theta(x), y)]``.

    ``loss`` is ``"ce"``, ``"margin"`` or a callable ``(logits, y) -> per-example losses``. Each example's
    gradient is that of its own loss (no division by the batch size). Returns ``(loss, grad)`` with
    shapes ``(B,)`` and ``x.shape``, both detached; the model's parameter gradients are untouched.
    ``draws`` is how the model draws (:func:`draw_kind`, a probe run at this call if ``None``; pass it to skip
    the probe): a ``"per-call"`` model is called once per draw, each call on (a chunk of) the batch.
    """
    samples = check_int("samples", samples, minimum=1)
    max_batch = check_int("max_batch", max_batch, minimum=1)
    if validate:
        check_input(x)
        check_like_model(x, model)
        check_labels(y, batch=x.shape[0], device=x.device)
    loss_fn = resolve_loss(loss)
    # A named loss indexes the logits with y: check the labels against the number of classes once it is known.
    labels_checked = not (validate and isinstance(loss, str))
    if x.shape[0] == 0:  # nothing to draw: no model call
        return torch.zeros(0, dtype=x.dtype, device=x.device), torch.zeros_like(x)
    calls = per_call(model, x, samples, max_batch, check_draws(draws))

    def step(chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal labels_checked
        xr = chunk.replicate(x.detach()).requires_grad_(True)
        logits = model(xr)
        if not labels_checked:
            check_labels(y, batch=x.shape[0], num_classes=logits.shape[-1])
            labels_checked = True
        losses = loss_fn(logits, chunk.replicate(y))
        rows = chunk.copies * chunk.width
        if losses.shape != (rows,):
            raise ValueError(f"loss must return one value per example, shape ({rows},), got {tuple(losses.shape)}")
        (g,) = torch.autograd.grad(losses.sum(), xr)
        return chunk.fold(g), chunk.fold(losses.detach())

    with torch.enable_grad():
        grad, value = chunked_sum(step, batch=x.shape[0], samples=samples, max_batch=max_batch, per_call=calls)
    return value / samples, grad / samples


def eot_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    samples: int,
    loss: LossName | LossFn = "ce",
    max_batch: int = DEFAULT_MAX_BATCH,
    validate: bool = True,
    draws: DrawKind | None = None,
) -> torch.Tensor:
    """Exact EoT gradient: the Monte-Carlo mean over ``samples`` draws of per-draw loss gradients.

    This is ``E_theta[grad_x L(f_theta(x), y)]``, not the gradient of the loss of the mean output. With
    ``samples=1`` on a deterministic model it equals plain autograd of ``L(f(x), y).sum()``. ``draws`` as for
    :func:`eot_value_and_grad`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(4, 3)
        >>> x, y = torch.rand(2, 4), torch.tensor([0, 2])
        >>> eot_gradient(net, x, y, samples=8).shape
        torch.Size([2, 4])
    """
    return eot_value_and_grad(
        model, x, y, samples=samples, loss=loss, max_batch=max_batch, validate=validate, draws=draws
    )[1]
