"""How a model draws its randomness: deterministic, per row, or per call (DESIGN.md, §C2 and §C3).

The EoT engine averages ``samples`` draws. Which calls give independent draws depends on the model:

* ``"per-row"``: the rows of one call are independent draws (every stochdef defense: noise, dropout masks,
  weights sampled per example). ``samples`` draws of a batch are one call on the batch replicated
  ``samples`` times (the fast path).
* ``"per-call"``: the rows of one call share a draw and calls differ: Xie et al. 2018's random resize-and-pad
  ("Mitigating Adversarial Effects Through Randomization", ICLR 2018) picks one size and one padding for the
  whole batch, and so does one noise tensor of the input's shape without the batch dimension. Replicated,
  its ``samples`` copies would be one draw; it is averaged with one call per draw, each on (chunks of) the
  original batch.
* ``"deterministic"``: calls on one input agree; the average is one draw (``samples=1`` is all it needs).

:func:`draw_kind` tells them apart from a few calls on copies of one input and leaves no trace
(``validation.leaves_no_trace``). A model mixing both (some layers per row, some per call) reads as
``"per-row"``: its per-call part is shared by the copies of one call; pass ``draws="per-call"`` to the
estimators for such a model.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Literal, Protocol

import torch
from torch import nn

from stochdef.defenses.sampling import fast_sampling
from stochdef.defenses.validation import check_choice, check_int, leaves_no_trace

DrawKind = Literal["deterministic", "per-row", "per-call"]
DRAW_KINDS: tuple[str, ...] = ("deterministic", "per-row", "per-call")
PROBE_DRAWS = 8


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal (``b`` broadcast) up to rounding: within ``sqrt(eps)`` of the dtype times ``b``'s largest magnitude.

    Identical rows of one call can differ in their last bits (a kernel treats a batch's tail rows apart): that
    is not a draw. ``sqrt(eps)`` is 3.5e-4 relative in float32, 1.5e-8 in float64. NaN equals NaN.
    """
    if not a.is_floating_point():
        return bool((a == b).all())
    finite = b[torch.isfinite(b)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    tolerance = torch.finfo(a.dtype).eps ** 0.5 * scale
    return bool(torch.isclose(a, b, rtol=0.0, atol=tolerance, equal_nan=True).all())


def draw_kind(model: nn.Module, x: torch.Tensor, *, rows: int = PROBE_DRAWS, calls: int = PROBE_DRAWS) -> DrawKind:
    """How ``model`` draws, in its current mode: ``"per-row"``, ``"per-call"`` or ``"deterministic"``.

    One call on ``rows`` copies of ``x[0]``: rows that differ (beyond rounding: by more than ``sqrt(eps)`` of the
    output's dtype times its largest magnitude) make the model ``"per-row"``. Otherwise up to
    ``calls - 1`` more such calls: one that differs from the first makes it ``"per-call"`` (the rows of a call
    share a draw, calls differ); ``"deterministic"`` if none does. With ``rows=1`` (calls of one row, where
    the estimators call one row at a time anyway) a model that draws reads as ``"per-call"``. The calls run
    ``model.forward`` (the top module's hooks, such as a counter of forward passes, do not see them) and leave
    no trace
    (``validation.leaves_no_trace``: the global RNGs, the layers' own generators, batch-norm statistics and
    modes are as before), so the calls that follow draw what they would have drawn without the probe.

    Xie et al. 2018's defense draws one resize-and-pad per call; noise of the input's shape without the batch
    dimension is the simplest such model.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class SharedNoise(nn.Module):
        ...     def forward(self, x):
        ...         return x + torch.randn(x.shape[1:])  # one draw for every row of the call
        >>> class RowNoise(nn.Module):
        ...     def forward(self, x):
        ...         return x + torch.randn_like(x)  # a draw per row
        >>> x = torch.rand(3, 4)
        >>> draw_kind(SharedNoise(), x), draw_kind(RowNoise(), x), draw_kind(nn.Linear(4, 2), x)
        ('per-call', 'per-row', 'deterministic')
    """
    check_int("rows", rows, minimum=1)
    check_int("calls", calls, minimum=2)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch, got {getattr(x, 'shape', type(x).__name__)}")
    batch = x[:1].detach().repeat(rows, *([1] * (x.dim() - 1)))
    with leaves_no_trace(model, x.device):
        first = model.forward(batch)
        if not isinstance(first, torch.Tensor):
            raise TypeError(f"model must return a tensor, got {type(first).__name__}")
        if not _same(first, first[:1]):
            return "per-row"
        for _ in range(calls - 1):
            if not _same(model.forward(batch), first):
                return "per-call"
    return "deterministic"


def check_draws(draws: DrawKind | None) -> DrawKind | None:
    """``draws`` checked against :data:`~stochdef.adapters.draws.DRAW_KINDS` (``None``: find it by a probe)."""
    return None if draws is None else check_choice("draws", draws, DRAW_KINDS)  # type: ignore[return-value]


def probe_rows(samples: int, max_batch: int) -> int:
    """The rows of each probe call for an estimate of ``samples`` draws in calls of at most ``max_batch`` rows."""
    return max(1, min(samples, PROBE_DRAWS, max_batch))


def probe(model: nn.Module, x: torch.Tensor, *, samples: int, max_batch: int) -> DrawKind:
    """:func:`draw_kind` as the estimators run it: calls of at most ``max_batch`` rows, at most ``samples`` calls,
    on the fast path an average runs on (``sampling.fast_sampling``: the kind is the same, the probe cheaper)."""
    with fast_sampling():
        return draw_kind(model, x, rows=probe_rows(samples, max_batch), calls=max(2, min(samples, PROBE_DRAWS)))


def per_call(model: nn.Module, x: torch.Tensor, samples: int, max_batch: int, draws: DrawKind | None) -> bool:
    """Whether ``samples`` draws of ``model`` at ``x`` take one call per draw: a ``"per-call"`` model.

    ``draws`` is the model's kind, or ``None`` to find it (:func:`draw_kind`, a probe that leaves no trace).
    One draw, or an empty batch, needs no probe: each is one call whatever the kind.
    """
    if samples < 2 or x.shape[0] == 0:
        return False
    if draws is None:
        draws = probe(model, x, samples=samples, max_batch=max_batch)
    return draws == "per-call"


def distinct_draws(kind: DrawKind | None, samples: int) -> int:
    """How many distinct draws an average of ``samples`` draws of a model of ``kind`` holds: 1 if deterministic.

    >>> distinct_draws("per-call", 8), distinct_draws("deterministic", 8), distinct_draws(None, 1)
    (8, 1, 1)
    """
    return 1 if kind == "deterministic" else samples


def draws_taken(kind: DrawKind | None, samples: int) -> str:
    """How ``samples`` draws of a model of ``kind`` are taken, in words (for records, reports and consoles).

    ``kind`` is ``EoT.draws`` (``None``: never probed, as with ``samples=1``).

    >>> draws_taken("per-row", 8)
    '8 draws, one call on the batch replicated 8 times'
    >>> draws_taken("per-call", 8)
    '8 draws, one call per draw'
    >>> draws_taken("deterministic", 8)
    '1 draw: the model is deterministic (8 identical draws)'
    """
    if samples == 1:
        return "1 draw, one call"
    if kind == "per-call":
        return f"{samples} draws, one call per draw"
    if kind == "deterministic":
        return f"1 draw: the model is deterministic ({samples} identical draws)"
    if kind == "per-row":
        return f"{samples} draws, one call on the batch replicated {samples} times"
    return f"{samples} draws (how the model draws was not probed: no non-empty batch yet)"


def random_in_training(model: nn.Module, x: torch.Tensor, *, rows: int = PROBE_DRAWS) -> bool | None:
    """Whether ``model`` draws (per row or per call) in training mode; ``None`` if it fails there.

    Runs :func:`draw_kind` with every module in training mode and restores every module's mode (and, with the
    probe, everything else it could change).
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train()
        return draw_kind(model, x, rows=rows) != "deterministic"
    except Exception:  # noqa: BLE001 (a hint for a warning: a model that fails in training mode gets the general one)
        return None
    finally:
        for module, training in modes:
            module.training = training


# -- what an adapter says once about the draws it averages -----------------------------------------------------


class DrawsWarning(UserWarning):
    """How an adapter with ``samples > 1`` takes its model's draws, said once at its first call."""


class IdenticalDrawsWarning(DrawsWarning):
    """An adapter with ``samples > 1`` wraps a model whose draws are identical (the average is one draw)."""


class PerCallDrawsWarning(DrawsWarning):
    """An adapter with ``samples > 1`` wraps a model that draws once per call: averaged with one call per draw."""


class Averager(Protocol):
    """What :func:`warn_draws` needs of an ``EoT`` module."""

    model: nn.Module
    samples: int
    max_batch: int
    draws: DrawKind | None

    def detect(self, x: torch.Tensor) -> DrawKind | None: ...


def draws_message(kind: DrawKind, samples: int, *, trained_random: bool | None) -> str | None:
    """The warning an adapter gives for a model of ``kind`` at ``samples`` draws (``None``: nothing to say).

    ``trained_random`` tells whether the model draws in training mode (``None``: unknown).

    >>> draws_message("per-row", 8, trained_random=None) is None
    True
    >>> print(draws_message("deterministic", 8, trained_random=False))
    samples=8, but the model is deterministic: 8 calls on one input gave identical outputs, in training mode too. \
The average is one draw at 8 times its cost: a deterministic model needs samples=1.
    """
    n = min(samples, PROBE_DRAWS)
    if kind == "per-call":
        return (
            f"samples={samples}: the model draws once per call (the rows of one call share a draw, as a random "
            "resize-and-pad of the whole batch does), so its draws are averaged with one call per draw "
            f"({samples} calls on the batch instead of one call on the batch replicated {samples} times). "
            "Nothing to fix: the average is over real draws (a model that draws per row is averaged in one call)."
        )
    if kind != "deterministic":
        return None
    if trained_random:
        return (
            f"samples={samples}, but {n} draws of the model on one input were identical in its current mode, and "
            "it draws in training mode: its randomness hangs on self.training (nn.Dropout, ...) and eval() "
            "switched it off (ART and torchattacks call it). Wrap it with stochdef.adapters.keep_random(model) "
            "to average its draws; as it is, the average is one draw."
        )
    if trained_random is False:
        return (
            f"samples={samples}, but the model is deterministic: {n} calls on one input gave identical outputs, "
            f"in training mode too. The average is one draw at {samples} times its cost: a deterministic model "
            "needs samples=1."
        )
    return (
        f"samples={samples}, but {n} draws of the model on one input were identical: the average is one draw. "
        "A model whose randomness hangs on self.training (nn.Dropout, ...) is deterministic after the library's "
        "eval(): wrap it with stochdef.adapters.keep_random(model). A deterministic model needs samples=1."
    )


def warn_draws(eot: Averager, x: torch.Tensor) -> None:
    """At ``eot``'s first non-empty batch (``samples > 1``): find how its model draws, and say so if it matters.

    A deterministic model gets an :class:`IdenticalDrawsWarning` whose fix depends on whether the model draws in
    training mode (``keep_random``) or not (``samples=1``); a per-call model a :class:`PerCallDrawsWarning`
    (averaged call by call, nothing to fix); a per-row model nothing. Nothing happens once ``eot.draws`` is known
    (found before, or given to ``EoT(draws=...)``), for ``samples=1``, or when ``x`` is not a non-empty batch.
    """
    if eot.samples < 2 or eot.draws is not None or x.dim() < 2 or x.shape[0] == 0:
        return
    kind = eot.detect(x)
    if kind is None:
        return
    rows = probe_rows(eot.samples, eot.max_batch)
    trained = random_in_training(eot.model, x, rows=rows) if kind == "deterministic" else None
    message = draws_message(kind, eot.samples, trained_random=trained)
    if message is not None:
        category = PerCallDrawsWarning if kind == "per-call" else IdenticalDrawsWarning
        # at this line, not the caller's: the hook runs inside torch's Module.__call__, whose one location would
        # let Python's once-per-location rule hide the second adapter's warning; ``eot.draws`` says it once per
        # EoT module already
        frame = inspect.currentframe()
        warnings.warn_explicit(
            message, category, filename=__file__, lineno=frame.f_lineno if frame else 0, module=__name__,
            registry=None,
        )  # fmt: skip


def check_draws_hook(module: nn.Module, args: tuple[object, ...]) -> None:
    """Forward pre-hook of the adapters' ``EoT`` modules: :func:`warn_draws` at the first call."""
    if args and isinstance(args[0], torch.Tensor):
        warn_draws(module, args[0])  # type: ignore[arg-type]
