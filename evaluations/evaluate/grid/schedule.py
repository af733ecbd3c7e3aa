"""Splitting an evaluation's cells across ranks, balanced by expected cost.

The expected cost of a cell (:meth:`.cells.Cell.cost`) counts model passes over the attacked images: for an
attack cell its attack's own estimate (:meth:`~stochdef.evaluations.libraries.Attack.passes`: gradient steps,
EoT draws, restarts, queries, AutoAttack's components) plus ``judge`` forwards for the verdict, zero for a
skipped cell, times a per-defense weight: the measured time of one forward pass (:func:`forward_seconds`; a
parameter or FLOP count misjudges per-example random weights and sampling layers by 10-100x). Cells sharing
work are kept together: the transfer cells of one source defense reuse that source's adversarial examples
(:meth:`.cells.TransferCell.before`), so they form one unit. Units go to ranks by longest-processing-time
first (Graham 1969: the largest unit to the least-loaded rank), which is within 4/3 of the best split;
the split is a pure function of the cells and the costs, so every rank computes the same one.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Mapping, Sequence

import torch

from stochdef.defenses.validation import leaves_no_trace

from ..compute.run import Run
from .cells import Cell, TransferCell, Weight


def units(run: Run, todo: Sequence[Cell], weight: Weight) -> list[tuple[float, list[int]]]:
    """The indivisible pieces of work: ``(cost, indices into todo)``; one per cell, except that the transfer
    cells of one source form one unit (they share the source's adversarial examples)."""
    out: list[tuple[float, list[int]]] = []
    by_source: dict[str, int] = {}
    for index, cell in enumerate(todo):
        cost = cell.cost(run, weight)
        if isinstance(cell, TransferCell):
            if cell.source not in by_source:
                by_source[cell.source] = len(out)
                out.append((cell.source_cost(run, weight), []))
            position = by_source[cell.source]
            total, members = out[position]
            out[position] = (total + cost, [*members, index])
        else:
            out.append((cost, [index]))
    return out


def balance(costs: Sequence[float], ranks: int) -> list[list[int]]:
    """Longest processing time first: the indices of ``costs`` given to each of ``ranks`` ranks, each list in
    increasing order. Deterministic (ties go to the lower index and the lower rank).

    Example:
        >>> balance([5.0, 1.0, 4.0, 3.0, 3.0], 2)  # loads 5 + 3 and 4 + 3 + 1
        [[0, 4], [1, 2, 3]]
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    heap = [(0.0, rank) for rank in range(ranks)]
    given: list[list[int]] = [[] for _ in range(ranks)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(heap)
        given[rank].append(index)
        heapq.heappush(heap, (load + costs[index], rank))
    return [sorted(g) for g in given]


def forward_seconds(run: Run, *, repeat: int = 3) -> dict[str, float]:
    """Per-defense weight: the median wall time of one forward pass of the defense over the run's images, on
    the run's device (after a warm-up pass; inside ``leaves_no_trace``, so no cell's seeded stream, no layer's
    own generator and no batch-norm statistic moves). Loading the models here also trains, once, any that has
    no checkpoint yet."""
    device = torch.device(run.config.device)
    weights: dict[str, float] = {}
    for defense in run.config.defenses:
        model = run.model(defense)
        times = []
        with leaves_no_trace(model, device):
            for _ in range(repeat + 1):
                start = time.perf_counter()
                model(run.x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
        weights[defense] = statistics.median(times[1:])
    return weights


def split(run: Run, todo: Sequence[Cell], ranks: int, weights: Mapping[str, float]) -> list[list[Cell]]:
    """The cells of ``todo`` each rank computes, balanced by expected cost (``weights``: per defense, as
    :func:`forward_seconds` measures it; 1 for a defense it lacks), each in ``todo``'s order."""
    pieces = units(run, todo, lambda defense: weights.get(defense, 1.0))
    given = balance([cost for cost, _ in pieces], ranks)
    return [[todo[i] for i in sorted(j for u in mine for j in pieces[u][1])] for mine in given]
