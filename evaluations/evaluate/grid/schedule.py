"""The expected seconds of an evaluation's cells, and the order in which ranks take them.

The expected cost of a cell is a time in seconds: its model passes over the attacked images
(:meth:`.base.Cell.cost`: for an attack cell its attack's own estimate,
:meth:`~stochdef.evaluations.libraries.Attack.passes`: gradient steps, EoT draws, restarts, queries, AutoAttack's
components, plus ``judge`` forwards for the verdict; zero for a skipped cell) times the measured seconds of one
forward pass of the defense per image (:func:`forward_seconds`; a parameter or FLOP count misjudges per-example
random weights and sampling layers by 10-100x), plus a fixed time per cell that runs and folds its examples into
the worst-case file (:attr:`.base.Cell.folds`): the measured time of one such fold (:func:`fold_seconds`), which
also stands for the rest of a cell's set-up (the library's wrapper, the validity screen, the record). Without it a
cheap cell (FGSM on a small model) took 4x its forward passes and a long one 2x.

Cells sharing work are kept together: the transfer cells of one source defense reuse that source's adversarial
examples (:meth:`.defense_cells.TransferCell.before`), so they form one unit (:func:`units`). The ranks of a
distributed run take the units largest first (:func:`queue`, :func:`claimed`) from a counter they share: a
rank that finishes early takes the next unit, so an error of the cost model costs at most one unit's time at the
end (Graham's list scheduling in longest-processing-time order: within 4/3 of the best split when the costs are
right). :func:`split` is the same order dealt out in advance (each unit to the least-loaded rank), for ranks with
no shared counter.
"""

from __future__ import annotations

import heapq
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stochdef.defenses.validation import leaves_no_trace

from ..compute.run import Run
from ..store import examples
from .base import Cell
from .defense_cells import TransferCell


@dataclass(frozen=True)
class Weights:
    """What a cell's expected seconds are made of: ``forward`` (per defense, the seconds of one forward pass of one
    image; 1 for a defense it lacks) and ``cell`` (the fixed seconds of a cell that folds its examples).

    Example:
        >>> Weights({"a": 0.5}, cell=2.0).per_image("a"), Weights({"a": 0.5}).per_image("b")
        (0.5, 1.0)
    """

    forward: Mapping[str, float] = field(default_factory=dict)
    cell: float = 0.0

    def per_image(self, defense: str) -> float:
        return self.forward.get(defense, 1.0)

    def expected(self, run: Run, cell: Cell) -> float:
        """The expected seconds of ``cell``: its forward passes, plus the fixed part when it runs and folds."""
        cost = cell.cost(run, self.per_image)
        return cost + self.cell if cost > 0 and cell.folds else cost


def as_weights(weights: Weights | Mapping[str, float]) -> Weights:
    """``weights``, or per-defense forward weights alone (no fixed part)."""
    return weights if isinstance(weights, Weights) else Weights(dict(weights))


def units(run: Run, todo: Sequence[Cell], weights: Weights | Mapping[str, float]) -> list[tuple[float, list[int]]]:
    """The indivisible pieces of work: ``(expected seconds, indices into todo)``; one per cell, except that the
    transfer cells of one source form one unit (they share the source's adversarial examples)."""
    w = as_weights(weights)
    out: list[tuple[float, list[int]]] = []
    by_source: dict[str, int] = {}
    for index, cell in enumerate(todo):
        cost = w.expected(run, cell)
        if isinstance(cell, TransferCell):
            if cell.source not in by_source:
                by_source[cell.source] = len(out)
                out.append((cell.source_cost(run, w.per_image), []))
            position = by_source[cell.source]
            total, members = out[position]
            out[position] = (total + cost, [*members, index])
        else:
            out.append((cost, [index]))
    return out


def largest_first(costs: Sequence[float]) -> list[int]:
    """The indices of ``costs``, largest first (ties: the lower index first).

    Example:
        >>> largest_first([5.0, 1.0, 4.0, 3.0, 3.0])
        [0, 2, 3, 4, 1]
    """
    return sorted(range(len(costs)), key=lambda i: (-costs[i], i))


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
    for index in largest_first(costs):
        load, rank = heapq.heappop(heap)
        given[rank].append(index)
        heapq.heappush(heap, (load + costs[index], rank))
    return [sorted(g) for g in given]


def claimed(take: Callable[[], int], count: int) -> Iterator[int]:
    """The indices below ``count`` that this rank claims: ``take()`` is a counter shared by the ranks that returns
    1, 2, 3, ... across all of them (``store.add(key, 1)`` on torch.distributed's store), so every index goes to
    exactly one rank, in increasing order, each to the first rank free to take it.

    Example:
        >>> import itertools
        >>> counter = itertools.count(1)
        >>> list(claimed(lambda: next(counter), 3)), list(claimed(lambda: next(counter), 3))
        ([0, 1, 2], [])
    """
    while (index := take() - 1) < count:
        yield index


def queue(run: Run, todo: Sequence[Cell], weights: Weights | Mapping[str, float]) -> list[list[Cell]]:
    """The units of ``todo`` in the order ranks take them, largest first; each unit's cells in ``todo``'s order."""
    pieces = units(run, todo, weights)
    return [[todo[i] for i in pieces[u][1]] for u in largest_first([cost for cost, _ in pieces])]


def split(run: Run, todo: Sequence[Cell], ranks: int, weights: Weights | Mapping[str, float]) -> list[list[Cell]]:
    """The cells of ``todo`` each rank computes, dealt out in advance by expected seconds (``weights``: a
    :class:`Weights`, or per defense the seconds :func:`forward_seconds` measures), each in ``todo``'s order."""
    pieces = units(run, todo, weights)
    given = balance([cost for cost, _ in pieces], ranks)
    return [[todo[i] for i in sorted(j for u in mine for j in pieces[u][1])] for mine in given]


def forward_seconds(run: Run, *, repeat: int = 3) -> dict[str, float]:
    """Per defense: the median wall time of one forward pass of the defense over the run's images, per image, on
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
        weights[defense] = statistics.median(times[1:]) / len(run.x)
    return weights


def fold_seconds(run: Run, *, repeat: int = 3) -> float:
    """The median wall time of folding one cell's examples (the run's images, every one broken) into a worst-case
    file of the run's radii (:func:`..store.examples.update`), in a temporary folder; no random draw."""
    times = []
    x_adv, broken, radii = run.x.roll(1, 0), "0" * len(run.x), run.config.eps
    with tempfile.TemporaryDirectory() as folder:
        for k in range(repeat + 1):
            start = time.perf_counter()
            path, eps = Path(folder) / "w.npz", radii[k % len(radii)]
            examples.update(path, f"{k}", "", eps, run.x, run.y, x_adv, broken, all_eps=radii)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def measure(run: Run) -> Weights:
    """The run's :class:`Weights`, measured on its device: :func:`forward_seconds` and :func:`fold_seconds`."""
    return Weights(forward_seconds(run), cell=fold_seconds(run))


def agreement(run: Run, cells: Sequence[Cell], weights: Weights | Mapping[str, float]) -> dict[str, Any]:
    """How well the expected seconds of ``cells`` (that ``run.store`` recorded, skipped ones left out) predict the
    seconds they took: Spearman's rank correlation and the spread of seconds per expected second (its 10th, 50th
    and 90th percentiles over the cells, and their 90/10 ratio: 1 for a perfect model up to a constant).

    A split is as good as its costs' ranks and ratios: LPT needs the order right and the sizes roughly so.
    """
    from scipy.stats import spearmanr

    w = as_weights(weights)
    costs, seconds = [], []
    for cell in cells:
        record = cell.record(run.store)
        cost = w.expected(run, cell)
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
