"""``--samples auto``: how many EoT draws are enough, measured on the defense itself.

The attacks run at 1 draw per gradient, then 2, 4, 8, ... (doubling, up to ``samples_cap``). After each
doubling the worst-case robust accuracy at the card's eps (:mod:`.outputs.worst_case`, over every attack and library
run at that number of draws) is compared with the previous one; the doubling stops when it fell by no more
than the half-width of its 95% interval, for every defense. The chosen count of a defense is the last count
before that final doubling (twice as many draws changed nothing the sample can resolve). No attack library
offers this: torchattacks' ``eot_iter``, ART's and Foolbox's EoT wrappers all take a fixed count.

On a small sample the interval is wide and a real gain from more draws goes unseen: when the stop came with a
half-width of at least :data:`TOO_WIDE` (a fall of 10 points of accuracy would not be resolved), the run says
that the sample is too small to tell (a warning, ``samples-auto.json``'s ``too_small_to_tell``, the report).

The headline worst case is then taken over every cell run (all counts), so stopping early never raises it.
The indicators and the transfer matrix run once, after the doubling, at the largest count.

>>> settled([(1, 0.50, 0.09), (2, 0.30, 0.09), (4, 0.27, 0.09)])
2
>>> settled([(1, 0.50, 0.09), (2, 0.30, 0.09)]) is None
True
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable

from stochdef.defenses.files import atomic_write_text

from .compute.run import Run
from .config import EvalConfig
from .outputs.worst_case import summary
from .store.results import ResultsFile
from .store.samples_auto import FILE

logger = logging.getLogger(__name__)

TOO_WIDE = 0.1  # the interval half-width from which a settled curve cannot tell a 10-point fall from noise


def too_small(curve: list[tuple[int, float, float]]) -> bool:
    """Whether the last point's interval is too wide to tell a fall of :data:`TOO_WIDE` from noise.

    >>> too_small([(1, 0.50, 0.21), (2, 0.45, 0.21)]), too_small([(1, 0.50, 0.03), (2, 0.45, 0.03)])
    (True, False)
    """
    return bool(curve) and curve[-1][2] >= TOO_WIDE


def settled(curve: list[tuple[int, float, float]]) -> int | None:
    """The chosen count of a curve of ``(samples, robust accuracy, interval half-width)``, or ``None`` yet.

    Settled when the last doubling lowered the accuracy by at most the last point's half-width.
    """
    if len(curve) < 2:
        return None
    (s_prev, acc_prev, _), (_, acc, half) = curve[-2], curve[-1]
    return s_prev if acc_prev - acc <= half else None


def point(store: ResultsFile, c: EvalConfig, defense: str, samples: int) -> tuple[int, float, float] | None:
    s = summary(store, c, defense, max(c.eps), samples=samples)
    if s is None:
        return None
    low, high = s["robust_accuracy_ci"]
    return samples, s["robust_accuracy"], (high - low) / 2


def run_auto(run: Run, run_cells: Callable[[Run], ResultsFile]) -> ResultsFile:
    """Double the draws until every defense's worst case settles; leaves ``run.config.samples`` as run.

    ``run_cells(run)`` computes the cells of ``run.config`` that the store lacks (the engine's).
    """
    final = run.config
    cap = final.samples_cap
    counts = [1]
    curves: dict[str, list[tuple[int, float, float]]] = {d: [] for d in final.defenses}
    chosen: dict[str, int | None] = {d: None for d in final.defenses}
    while True:
        run.config = dataclasses.replace(final, samples=tuple(counts), indicators=False, transfer=False)
        run_cells(run)
        for d in final.defenses:
            p = point(run.store, run.config, d, counts[-1])
            if p is not None and chosen[d] is None:
                curves[d].append(p)
                chosen[d] = settled(curves[d])
        logger.info("samples %d: %s", counts[-1], {d: curves[d][-1][1] if curves[d] else None for d in curves})
        if all(v is not None for v in chosen.values()) or counts[-1] * 2 > cap:
            break
        counts.append(counts[-1] * 2)
    for d, curve in curves.items():
        if too_small(curve):
            logger.warning(
                "--samples auto cannot tell on %d examples: the worst case of %s has a 95%% interval of +-%.2f, so "
                "a fall under that from more draws goes unseen; use more examples or a fixed --samples",
                final.n, d, curve[-1][2],
            )  # fmt: skip
    run.config = dataclasses.replace(final, samples=tuple(counts))
    run_cells(run)  # the indicators and the transfer matrix, at the largest count
    write(run, curves, chosen, cap)
    return run.store


def write(run: Run, curves: dict[str, list[tuple[int, float, float]]], chosen: dict[str, int | None], cap: int) -> None:
    data = {
        "rule": "double the EoT draws until the worst-case robust accuracy falls by no more than the half-width "
        "of its 95% interval; chosen = the count before that last doubling",
        "eps": max(run.config.eps),
        "cap": cap,
        "samples_run": list(run.config.samples),
        "defenses": {
            d: {
                "curve": [{"samples": s, "robust_accuracy": a, "half_width": h} for s, a, h in curves[d]],
                "chosen": chosen[d],
                "settled": chosen[d] is not None,
                "too_small_to_tell": too_small(curves[d]),
            }
            for d in curves
        },
    }
    atomic_write_text(run.store.path.parent / FILE, json.dumps(data, indent=2) + "\n")
