"""The written reading of a finished evaluation, generated from its records (``results.jsonl``), never typed.

:func:`reading` turns the records of ``stochdef evaluate`` into a paragraph: per eps, the lowest ensemble
accuracy over attacks and libraries of each defense, one draw per gradient (naive) and EoT; which
indicators fire on which defense; and in how many cells the libraries' 95% intervals agree. The
README quotes ``evaluations/reports/evaluate/reading.txt``, which
``python -m stochdef.evaluations.evaluate.outputs.reading [FOLDER]`` writes from ``FOLDER/results.jsonl``
(default: the committed report); the test suite checks both against the committed records.

Example:
    >>> recs = [
    ...     {"kind": "clean", "defense": "d", "random": True, "acc_ensemble": 0.9},
    ...     {"kind": "attack", "defense": "d", "eps": 0.1, "samples": 1, "library": "a", "attack": "pgd",
    ...      "acc_ensemble": 0.5, "acc_ensemble_ci": [0.4, 0.6]},
    ...     {"kind": "attack", "defense": "d", "eps": 0.1, "samples": 8, "library": "a", "attack": "pgd",
    ...      "acc_ensemble": 0.3, "acc_ensemble_ci": [0.2, 0.4]},
    ... ]
    >>> print(reading(recs))  # doctest: +NORMALIZE_WHITESPACE
    Lowest ensemble accuracy over attacks and libraries, one draw per gradient / EoT: at eps 0.1, d 50% / 30%.
    No indicator fires on any defense. No cell was run by two or more libraries.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stochdef.defenses.files import atomic_write_text

from ..grid.cells import AttackCell, CleanCell, IndicatorCell

Record = dict[str, Any]
REPORT = Path("evaluations/reports/evaluate")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def lowest(records: Iterable[Record]) -> dict[tuple[str, float, str], float]:
    """``(defense, eps, "naive" | "eot") -> `` the lowest ``acc_ensemble`` over attacks and libraries."""
    out: dict[tuple[str, float, str], float] = {}
    for r in records:
        if r.get("kind") != AttackCell.kind or "acc_ensemble" not in r:
            continue
        key = (r["defense"], float(r["eps"]), "naive" if r["samples"] == 1 else "eot")
        out[key] = min(out.get(key, 1.0), float(r["acc_ensemble"]))
    return out


def agreement(records: Iterable[Record]) -> tuple[int, int]:
    """Cells (defense, attack, eps, draws) run by two or more libraries, and how many of them have overlapping
    95% intervals (the largest lower end at most the smallest upper end)."""
    groups: dict[tuple[Any, ...], list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r.get("kind") == AttackCell.kind and "acc_ensemble_ci" in r:
            low, high = r["acc_ensemble_ci"]
            groups[(r["defense"], r["attack"], float(r["eps"]), r["samples"])].append((low, high))
    shared = [g for g in groups.values() if len(g) >= 2]
    agree = sum(max(lo for lo, _ in g) <= min(hi for _, hi in g) for g in shared)
    return agree, len(shared)


def fired(records: Iterable[Record]) -> dict[str, list[str]]:
    """Per defense with an ``indicators`` record, the names of the indicators that fired."""
    return {
        r["defense"]: [i["name"] for i in r["indicators"] if i.get("fired")]
        for r in records
        if r.get("kind") == IndicatorCell.kind
    }


def reading(records: list[Record]) -> str:
    """The reading of an evaluation's records (see the module docstring)."""
    low = lowest(records)
    defenses = list(dict.fromkeys(r["defense"] for r in records if r.get("kind") == CleanCell.kind))
    epsilons = sorted({eps for _, eps, _ in low})
    per_eps = []
    for eps in epsilons:
        cells = []
        for d in defenses:
            naive, eot = low.get((d, eps, "naive")), low.get((d, eps, "eot"))
            if naive is None and eot is None:
                continue
            cells.append(f"{d} {_pct(naive)}" + (f" / {_pct(eot)}" if eot is not None else " / (deterministic)"))
        per_eps.append(f"at eps {eps:g}, " + ", ".join(cells))
    text = (
        "Lowest ensemble accuracy over attacks and libraries, one draw per gradient / EoT: " + "; ".join(per_eps) + "."
    )
    firing = {d: names for d, names in fired(records).items() if names}
    if firing:
        text += " Indicators fire on " + "; ".join(f"{d} ({', '.join(n)})" for d, n in firing.items()) + "."
    else:
        text += " No indicator fires on any defense."
    agree, shared = agreement(records)
    if shared:
        text += f" The libraries' 95% intervals overlap in {agree} of {shared} cells run by two or more of them."
    else:
        text += " No cell was run by two or more libraries."
    return text


def load(folder: Path) -> list[Record]:
    """The records of ``folder/results.jsonl``."""
    lines = (folder / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def write(folder: Path) -> str:
    """Write ``folder/reading.txt`` from ``folder/results.jsonl``; return the reading."""
    text = reading(load(folder))
    atomic_write_text(folder / "reading.txt", text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else REPORT
    write(folder)
    sys.stderr.write(f"wrote {folder / 'reading.txt'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
