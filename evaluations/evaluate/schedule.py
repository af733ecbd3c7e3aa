"""Splitting an evaluation's cells across ranks, balanced by expected cost.

The expected cost of a cell counts model passes over the attacked images: ``(1 + 2) * samples`` per
gradient step (a forward and a backward, about two forwards, per EoT draw) and ``judge`` forwards for the
verdict, times a per-defense weight: the measured time of one forward pass (:func:`forward_seconds`; a
parameter or FLOP count misjudges per-example random weights and sampling layers by 10-100x). Cells sharing
work are kept together: the transfer cells of one source defense reuse that source's adversarial examples
(:func:`.transfer.source_examples`), so they form one unit. Units go to ranks by longest-processing-time
first (Graham 1969: the largest unit to the least-loaded rank), which is within 4/3 of the best split;
the split is a pure function of the cells and the costs, so every rank computes the same one.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from stochdef.defenses.validation import leaves_no_trace

from .run import Run

Cell = tuple[str, str, Any]  # (kind, key, payload), as engine.cells yields them
GRADIENT_PASSES = 3.0  # a forward and a backward pass cost about three forwards


def attack_passes(attack: str, steps: int, samples: int) -> float:
    """Forward-pass equivalents per image of one attack: one gradient (FGSM) or ``steps`` of them.

    Example:
        >>> attack_passes("fgsm", 10, 8), attack_passes("pgd", 10, 8)
        (24.0, 240.0)
    """
    gradients = 1 if attack.startswith("fgsm") else steps
    return GRADIENT_PASSES * gradients * samples


def indicator_passes(steps: int, samples: int, judge: int, n_eps: int) -> float:
    """Forward-pass equivalents per image of :func:`.diagnose.diagnose`: its PGD runs (twice the steps,
    the unbounded one, one per other eps, the fixed-randomness and surrogate ones), its FGSM and
    about ``steps + n_eps + 6`` ensemble verdicts."""
    gradient_steps = samples * (2 * steps + max(steps, 10) + (n_eps - 1) * steps + 1 + 2) + 2 * steps
    return GRADIENT_PASSES * gradient_steps + judge * (steps + n_eps + 6)


def cell_cost(run: Run, cell: Cell, weight: Callable[[str], float]) -> float:
    """Expected cost of one cell (arbitrary units: forward passes x images x model weight)."""
    kind, _, payload = cell
    c = run.config
    if kind == "clean":
        return weight(payload) * c.n * (1 + c.judge_samples)
    if kind in ("attack", "block"):  # a block: rows start:end of an attack cell
        defense, _, spec, *rows = payload
        if spec.samples > 1 and not run.is_random(defense):
            return 0.0  # skipped: EoT on a deterministic defense is the naive attack
        judge = run.draws(defense, c.judge_samples)
        examples = rows[1] - rows[0] if rows else c.n
        return weight(defense) * examples * (attack_passes(spec.attack, spec.steps, spec.samples) + 1 + judge)
    if kind == "indicators":
        samples, judge = run.draws(payload, max(c.samples)), run.draws(payload, c.judge_samples)
        return weight(payload) * c.n * indicator_passes(c.steps, samples, judge, len(c.eps))
    if kind == "transfer":  # the source's examples are counted once, in the unit (see units)
        return weight(payload[1]) * c.n * run.draws(payload[1], c.judge_samples)
    return c.n  # a kind this module does not know: one pass


def source_cost(run: Run, source: str, weight: Callable[[str], float]) -> float:
    """Expected cost of the transfer source's adversarial examples (EoT-PGD at the largest sample count)."""
    c = run.config
    return weight(source) * c.n * attack_passes("pgd", c.steps, run.draws(source, max(c.samples)))


def units(run: Run, todo: Sequence[Cell], weight: Callable[[str], float]) -> list[tuple[float, list[int]]]:
    """The indivisible pieces of work: ``(cost, indices into todo)``; one per cell, except that the transfer
    cells of one source form one unit (they share the source's adversarial examples)."""
    out: list[tuple[float, list[int]]] = []
    by_source: dict[str, int] = {}
    for index, cell in enumerate(todo):
        cost = cell_cost(run, cell, weight)
        if cell[0] == "transfer":
            source = cell[2][0]
            if source not in by_source:
                by_source[source] = len(out)
                out.append((source_cost(run, source, weight), []))
            position = by_source[source]
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
