"""``--converge``: budgets that converge. Per defense, the strongest attack at the card's eps (the lowest accuracy
among the attack cells that take steps) runs again with its steps doubled, and its restarts where it has them,
until the worst case stops falling by more than the half-width of its 95% interval, up to :data:`CAP` times the
run's budget. ``--converge all`` does it for every defense, ``auto`` for a defense whose attack-failure
indicators fired (:data:`ATTACK_FAILURE`), ``off`` (the default) never. The doubled cells are attack cells of
their own budget (their keys hold it, :func:`.grid.cells.budget_cell`): they join the defense's worst case, so
converging never raises a headline. ``budgets.json`` keeps each curve; the report and the model card say "converged at S
steps x D draws x R restarts" or "not converged within the cap: the number is an upper bound".

>>> settled([(10, 1, 0.50, 0.09), (20, 1, 0.45, 0.09)])
True
>>> settled([(10, 1, 0.50, 0.09), (20, 1, 0.30, 0.09)])
False
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from stochdef.defenses.files import atomic_write_text

from .. import libraries
from ..stats import wilson_interval
from .compute.run import Run
from .config import EvalConfig
from .grid.cells import BUDGET_FACTORS, AttackCell, IndicatorCell, budget_cell
from .outputs.worst_case import summary_of
from .store.budgets import FILE, RULE
from .store.results import ResultsFile

logger = logging.getLogger(__name__)

CAP = BUDGET_FACTORS[-1]  # at most 8 times the run's steps (and restarts)
MODES = ("off", "auto", "all")
#: the indicators that say an attack failed to optimize (Pintor et al. 2022; AutoAttack's zero-gradient check)
ATTACK_FAILURE = ("silent_success", "incomplete_optimization", "unavailable_gradients", "zero_gradients")
Point = tuple[int, int, float, float]  # steps, restarts, worst case, half-width


def settled(curve: list[Point]) -> bool:
    """Whether the last doubling lowered the worst case by at most its half-width."""
    return len(curve) >= 2 and curve[-2][2] - curve[-1][2] <= curve[-1][3]


def to_converge(store: ResultsFile, c: EvalConfig) -> list[str]:
    """The defenses ``c.converge`` asks to converge (``auto``: those whose attack-failure indicators fired)."""
    if c.converge == "all":
        return list(c.defenses)
    if c.converge == "off":
        return []
    found = []
    for d in c.defenses:
        record = IndicatorCell.of(c, d).record(store)
        if record and any(i["fired"] and i["name"].split("[")[0] in ATTACK_FAILURE for i in record["indicators"]):
            found.append(d)
    return found


def strongest(store: ResultsFile, c: EvalConfig, defense: str, eps: float) -> dict[str, Any] | None:
    """The lowest-accuracy attack cell of ``defense`` at ``eps`` whose attack takes steps."""
    from .outputs.worst_case import cells_at

    stepped = [r for r in cells_at(store, c, defense, eps) if libraries.get(r["attack"]).takes_steps and
               r["steps"] == c.steps]  # fmt: skip
    return min(stepped, key=lambda r: r["acc_ensemble"]) if stepped else None


def run_converge(run: Run, compute: Callable[[Run, AttackCell], None]) -> None:
    """Double the strongest attack's budget per defense of :func:`to_converge` until the worst case settles; writes
    ``budgets.json``. ``compute(run, cell)`` computes one cell (the engine's)."""
    from .grid.cells import CleanCell
    from .outputs.worst_case import cells_at

    c, store = run.config, run.store
    eps, results = max(c.eps), {}
    for d in to_converge(store, c):
        record, clean = strongest(store, c, d, eps), CleanCell.of(c, d).record(store)
        if record is None or clean is None:
            continue
        bits = [clean["correct"], *(r["correct"] for r in cells_at(store, c, d, eps))]
        curve: list[Point] = [(c.steps, c.restarts, *_point(bits))]
        factor = 2
        while factor <= CAP and not settled(curve):
            made = budget_cell(c, record, factor)
            if made is None:
                break
            bigger, cell = made
            if cell.key not in store:
                run.config = bigger  # the header records the budget's steps
                try:
                    compute(run, cell)
                finally:
                    run.config = c
            added = store.get(cell.key)
            if added is None or "correct" not in added:
                break
            bits.append(added["correct"])
            curve.append((bigger.steps, bigger.restarts, *_point(bits)))
            factor *= 2
        results[d] = {"attack": f"{record['attack']}/{record['library']}", "samples": record["samples"],
                      "curve": [dict(zip(("steps", "restarts", "robust_accuracy", "half_width"), p, strict=True))
                                for p in curve], "converged": settled(curve)}  # fmt: skip
        logger.info("converge %s: %s", d, results[d])
    if results:
        data = {"rule": RULE, "eps": eps, "cap": CAP, "mode": c.converge, "defenses": results}
        atomic_write_text(store.path.parent / FILE, json.dumps(data, indent=2) + "\n")


def _point(bits: list[str]) -> tuple[float, float]:
    hits, n = summary_of(bits)
    low, high = wilson_interval(hits, n)
    return hits / n, (high - low) / 2
