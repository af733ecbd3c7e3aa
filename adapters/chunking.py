"""The one chunked replicate-and-accumulate loop behind every EoT estimate.

An EoT estimate runs a randomized model on its batch replicated ``samples`` times along the batch
dimension (sample-major, :func:`replicate`), so a model that draws independent randomness per row gives
``samples`` independent draws per input in one vectorized call (DESIGN.md, §C3). A model whose rows of
one call share a draw (a random resize-and-pad of the whole batch) would give ``samples`` copies of one
draw that way: for it every call is one draw of (a slice of) the original batch (``per_call=True``).
:func:`plan` splits that work into model calls of at most ``max_batch`` rows; :func:`chunks` walks
those calls in order; :func:`chunked_sum` maps a per-call function over them and sums (or otherwise
combines) what it returns per input row. Every EoT path of the package (the :class:`~stochdef.adapters.EoT`
module, :func:`~stochdef.adapters.eot_value_and_grad`, the ART overrides, the in-house attacks'
evaluation and DeepFool's linearization) goes through :func:`chunked_sum`, so all of them make the same
calls, in the same order, and draw their randomness in the same order.

Over two or more draws only expectations matter (the mean output, the mean input gradient), so
:func:`chunked_sum` runs its calls inside :func:`stochdef.defenses.sampling.fast_sampling`: Gaussian-weight
linear layers (SDR, Adv-BNN, RNW/RSW) use local reparameterization, whose output law and expected input
gradient are those of the per-weight draws a plain call makes, at a fraction of the cost. One draw
(``samples=1``) is always the sampled network itself (DESIGN.md, §C2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from stochdef.defenses.sampling import fast_sampling

DEFAULT_MAX_BATCH = 8192

Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def replicate(x: torch.Tensor, copies: int) -> torch.Tensor:
    """Stack ``copies`` copies of the batch ``x`` sample-major: row ``s * len(x) + i`` is ``x[i]``."""
    return x.repeat(copies, *([1] * (x.dim() - 1)))


def plan(batch: int, samples: int, max_batch: int, *, per_call: bool = False) -> list[tuple[slice, list[int]]]:
    """Split ``samples`` draws of a ``batch`` into model calls of at most ``max_batch`` rows.

    Returns, per slice of rows, the number of draws (copies of those rows) in each call. With ``per_call``
    (a model whose rows of one call share a draw, DESIGN.md §C2) every call is one draw: one copy of a slice.

    >>> plan(3, 5, 6)
    [(slice(0, 3, None), [2, 2, 1])]
    >>> plan(3, 5, 6, per_call=True)
    [(slice(0, 3, None), [1, 1, 1, 1, 1])]
    >>> plan(5, 2, 3)
    [(slice(0, 3, None), [1, 1]), (slice(3, 5, None), [1, 1])]
    >>> plan(0, 4, 8)  # an empty batch needs no call
    []
    """
    width = min(batch, max_batch)
    out: list[tuple[slice, list[int]]] = []
    if batch == 0:
        return out
    for start in range(0, batch, width):
        rows = slice(start, min(start + width, batch))
        copies = 1 if per_call else max(1, max_batch // (rows.stop - rows.start))
        out.append((rows, [min(copies, samples - done) for done in range(0, samples, copies)]))
    return out


@dataclass(frozen=True)
class Chunk:
    """One model call of an EoT loop: draws ``first_draw`` to ``first_draw + copies - 1`` of the rows ``rows``.

    The call's input is :meth:`replicate` of the batch (``copies * width`` rows, at most ``max_batch``
    unless a single row is wider); :meth:`draws` and :meth:`fold` bring a per-row output back to the rows.
    """

    rows: slice
    copies: int
    first_draw: int

    @property
    def width(self) -> int:
        """Number of distinct input rows in this call."""
        return self.rows.stop - self.rows.start

    def replicate(self, t: torch.Tensor) -> torch.Tensor:
        """``t[rows]`` replicated ``copies`` times, sample-major (inputs, labels, any per-row tensor)."""
        return replicate(t[self.rows], self.copies)

    def draws(self, out: torch.Tensor) -> torch.Tensor:
        """The call's output ``(copies * width, ...)`` viewed as ``(copies, width, ...)``: one slab per draw."""
        return out.reshape(self.copies, self.width, *out.shape[1:])

    def fold(self, out: torch.Tensor) -> torch.Tensor:
        """The call's output summed over its draws: ``(copies * width, ...) -> (width, ...)``."""
        return self.draws(out).sum(0)


def chunks(batch: int, samples: int, max_batch: int, *, per_call: bool = False) -> Iterator[Chunk]:
    """The model calls of ``samples`` draws of a ``batch``, in :func:`plan`'s order (rows, then draws).

    >>> [(c.rows.start, c.rows.stop, c.copies, c.first_draw) for c in chunks(5, 3, 4)]
    [(0, 4, 1, 0), (0, 4, 1, 1), (0, 4, 1, 2), (4, 5, 3, 0)]
    """
    for rows, calls in plan(batch, samples, max_batch, per_call=per_call):
        first = 0
        for copies in calls:
            yield Chunk(rows, copies, first)
            first += copies


def sampling_for(samples: int) -> AbstractContextManager[object]:
    """The sampling context of an estimate over ``samples`` draws: the fast path when averaging (``samples > 1``)."""
    return fast_sampling() if samples > 1 else nullcontext()


def chunked_sum(
    step: Callable[[Chunk], Sequence[torch.Tensor]],
    *,
    batch: int,
    samples: int,
    max_batch: int,
    combine: Combine = torch.add,
    per_call: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Accumulate ``step`` over the calls of ``samples`` draws of a ``batch``; one tensor per output of ``step``.

    ``step(chunk)`` makes one model call (on ``chunk.replicate(x)``) and returns tensors whose first
    dimension is ``chunk.width``, already reduced over the call's draws (usually ``chunk.fold(...)``).
    Per slice of rows, the calls' results are combined left to right (``acc = combine(acc, part)``,
    starting from the first call's part, so a single call is returned as it is); the slices are then
    concatenated along the rows. Divide by ``samples`` for a mean. An empty ``batch`` still makes one
    call, on ``Chunk(slice(0, 0), 1, 0)``, so the results have the right shape, dtype and device.
    With ``samples > 1`` the calls run under :func:`sampling_for` (the fast path, see the module's
    docstring). ``per_call=True`` makes every call one draw of its rows (``chunk.copies == 1``): the
    path for a model whose rows of one call share a draw (:func:`~stochdef.adapters.draw_kind`), whose
    replicated copies would all be the same draw.

    Example (the mean of ``2 * x`` over 3 draws, in calls of at most 4 rows):
        >>> x = torch.arange(5.0)
        >>> (total,) = chunked_sum(lambda c: (c.fold(2 * c.replicate(x)),), batch=5, samples=3, max_batch=4)
        >>> total / 3
        tensor([0., 2., 4., 6., 8.])
    """
    if batch == 0:
        return tuple(step(Chunk(slice(0, 0), 1, 0)))
    parts: list[list[torch.Tensor]] = []  # per slice of rows, the accumulated outputs
    current: slice | None = None
    for chunk in chunks(batch, samples, max_batch, per_call=per_call):
        with sampling_for(samples):
            results = list(step(chunk))
        if chunk.rows != current:
            current = chunk.rows
            parts.append(results)
        else:
            parts[-1] = [combine(acc, part) for acc, part in zip(parts[-1], results, strict=True)]
    if len(parts) == 1:
        return tuple(parts[0])
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))
