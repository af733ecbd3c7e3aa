"""The headline number: per-example worst case over every attack of every library (RobustBench's rule).

An example counts as robust at ``eps`` only if the defense classifies it correctly clean and after every
attack cell at that ``eps`` (every attack, library and number of EoT draws), each judged by the defense's
own inference rule (the ``judge_samples``-draw ensemble). The robust accuracy is the share of such
examples, with a 95% Wilson interval over the n test images (:mod:`stochdef.evaluations.stats`); it is
never above any single cell's accuracy. The judge is itself random: each cell draws its own ensemble, so
an example near the boundary can fail one of many judgements by chance; the worst case counts it broken
(conservative, as AutoAttack-rand's worst case over its runs is).

Each cell records its per-example correctness (``correct``, a string of 0/1) in ``results.jsonl``, so the
worst case at every eps comes from the store alone (:func:`summary`). At every eps the run also keeps, per
defense, the adversarial example that broke each example first, which attack did
it, and its perturbation (:mod:`..store.examples`), updated after every cell and idempotent, so a resumed run
ends with the same file.

>>> summary_of(["111", "110", "011"])
(1, 3)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ...stats import wilson_interval
from ..config import EvalConfig
from ..grid.cells import BUDGET_FACTORS, AttackCell, CleanCell, adaptive_cells, budget_cell
from ..store.results import ResultsFile
from . import bands


def summary_of(correct: Iterable[str]) -> tuple[int, int]:
    """(examples correct in every bit string, examples): the per-example AND of the cells."""
    rows = [np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1") for bits in correct]
    if not rows:
        raise ValueError("correct must hold at least one cell")
    both = np.logical_and.reduce(rows)
    return int(both.sum()), len(both)


def cells_at(
    store: ResultsFile, c: EvalConfig, defense: str, eps: float, samples: int | None = None
) -> list[dict[str, Any]]:
    """The attack cells of ``defense`` at ``eps`` with per-example results (of ``samples`` draws, if given).

    A skipped EoT cell of a deterministic defense stands for its naive cell (they are the same attack).
    """
    found = []
    for name in c.attacks:
        for library in c.libraries:
            for s in c.samples if samples is None else (samples,):
                attack = c.attack(name, eps, s)
                if isinstance(attack, str):
                    continue
                record = AttackCell.of(c, defense, library, attack).record(store)
                if (
                    record is not None
                    and "correct" not in record
                    and s > 1
                    and "deterministic" in record.get("skipped", "")
                ):
                    naive = c.attack(name, eps, 1)
                    record = None if isinstance(naive, str) else AttackCell.of(c, defense, library, naive).record(store)
                if record is not None and "correct" in record:
                    found.append(record)
    for cell in adaptive_cells(c, defense, eps):  # through the surrogate gradients the defense declares
        record = cell.record(store)
        if record is not None and "correct" in record and (samples is None or cell.attack.samples == samples):
            found.append(record)
    for base in list(found):  # the doubled budgets of --converge (converge.py)
        for factor in BUDGET_FACTORS:
            made = budget_cell(c, base, factor)
            record = None if made is None else made[1].record(store)
            if record is not None and "correct" in record:
                found.append(record)
    return found


def summary(
    store: ResultsFile, c: EvalConfig, defense: str, eps: float, *, samples: int | None = None
) -> dict[str, Any] | None:
    """Worst-case robust accuracy of ``defense`` at ``eps`` with its 95% interval (``None`` before any cell)."""
    clean = CleanCell.of(c, defense).record(store)
    attacks = cells_at(store, c, defense, eps, samples)
    if clean is None or "correct" not in clean or not attacks:
        return None
    hits, n = summary_of([clean["correct"], *(r["correct"] for r in attacks)])
    low, high = wilson_interval(hits, n)
    lowest = min(attacks, key=lambda r: r["acc_ensemble"])
    return {
        "robust_accuracy": hits / n,
        "robust_accuracy_ci": [low, high],
        "hits": hits,
        "n": n,
        "cells": len(attacks),
        "best_single": label(lowest),
        "best_single_accuracy": lowest["acc_ensemble"],
        "adaptive": [label(r) for r in attacks if r.get("surrogate")],
    }


def label(record: dict[str, Any]) -> str:
    """An attack cell's name: attack/library/samples, and the surrogate gradient an adaptive cell went through.

    >>> label({"attack": "pgd", "library": "inhouse", "samples": 1, "surrogate": "pseudo"})
    'pgd/inhouse/samples 1/pseudo gradient'
    """
    via = f"/{record['surrogate']} gradient" if record.get("surrogate") else ""
    return f"{record['attack']}/{record['library']}/samples {record['samples']}{via}"


def section(store: ResultsFile, c: EvalConfig) -> list[str]:
    """The report's headline: the worst case per defense and eps, above the per-attack tables."""
    eps = sorted(c.eps)
    rows = []
    for d in c.defenses:
        cells = []
        for e in eps:
            s = summary(store, c, d, e)
            cells.append(
                "—"
                if s is None
                else "**{:.2f}** [{:.2f}, {:.2f}]".format(s["robust_accuracy"], *s["robust_accuracy_ci"])
                + bands.marks(store, c, d, e)
            )
        rows.append([d, *cells])
    lines = [
        "## Robust accuracy: worst case over every attack",
        "",
        "An example counts as robust only if it is classified correctly clean and after every attack of every "
        "library at that eps, naive and EoT (RobustBench's rule); 95% Wilson intervals. The per-attack "
        "accuracies below are each at least this.",
        "",
        "| defense | " + " | ".join(f"eps {e} ({c.norm})" for e in eps) + " |",
        "|" + "|".join(" --- " for _ in range(len(eps) + 1)) + "|",
    ]
    table = ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, *table, "", *bands.notes(store, c), *adaptive_note(store, c)]


def adaptive_note(store: ResultsFile, c: EvalConfig) -> list[str]:
    """Which attacks of the worst case were adaptive (through a surrogate gradient a defense declares)."""
    notes = []
    for d in c.defenses:
        found = [r for e in c.eps for r in cells_at(store, c, d, e) if r.get("surrogate")]
        names = sorted({f"{r['attack']}/{r['library']}" for r in found})
        surrogates = sorted(s for defense, s in c.surrogates if defense == d)
        if names:
            notes.append(f"- {d}: adaptive attacks through its {', '.join(surrogates)} gradient: {', '.join(names)}.")
    if not notes:
        return []
    return ["Adaptive attacks in the worst case (a surrogate gradient the defense declares; DESIGN.md, §C8):", "",
            *notes, ""]  # fmt: skip
