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
from typing import Any

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


def agreement(run: Run, cells: Sequence[Cell], weights: Mapping[str, float]) -> dict[str, Any]:
    """How well the expected costs of ``cells`` (that ``run.store`` recorded, skipped ones left out) predict the
    seconds they took: Spearman's rank correlation and the spread of seconds per unit of cost (its 10th, 50th
    and 90th percentiles over the cells, and their 90/10 ratio: 1 for a perfect model up to a constant).

    A split is as good as its costs' ranks and ratios: LPT needs the order right and the sizes roughly so.
    """
    from scipy.stats import spearmanr

    costs, seconds = [], []
    for cell in cells:
        record = cell.record(run.store)
        cost = cell.cost(run, lambda defense: weights.get(defense, 1.0))
        if record is None or "skipped" in record or cost <= 0 or "seconds" not in record:
            continue
        costs.append(cost)
        seconds.append(float(record["seconds"]))
    if len(costs) < 3:
        return {"cells": len(costs)}
    per_unit = sorted(s / c for s, c in zip(seconds, costs, strict=True))
    q = [per_unit[int(f * (len(per_unit) - 1))] for f in (0.1, 0.5, 0.9)]
    rho = float(spearmanr(costs, seconds).statistic)
    return {
        "cells": len(costs),
        "spearman": round(rho, 3),
        "seconds_per_cost_p10_p50_p90": q,
        "spread_90_10": q[2] / q[0],
    }
