"""What a reader of the report must not miss about single cells: why a cell did not run, an attack cell that
returned its inputs unchanged while other attacks break the same examples, and the run's compute time.

An attack cell whose largest perturbation is 0 attacked nothing (a library that gave up, or failed silently):
its accuracy equals the clean one and says nothing about robustness. It is *flagged* when other attack cells at
the same eps break examples that it leaves correct -- the case where its number is plainly misleading.

>>> notes = Notes()
>>> notes.mark("FGSM is L-inf only"), notes.mark("Foolbox 3 has no APGD"), notes.mark("FGSM is L-inf only")
('[1]', '[2]', '[1]')
>>> notes.lines()
['[1] FGSM is L-inf only', '[2] Foolbox 3 has no APGD']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import EvalConfig
from ..grid.cells import CleanCell, grid
from ..store.results import ResultsFile
from .worst_case import cells_at


@dataclass
class Notes:
    """Footnotes of a table: one number per distinct text, in order of first use."""

    texts: dict[str, int] = field(default_factory=dict)

    def mark(self, text: str) -> str:
        return f"[{self.texts.setdefault(text, len(self.texts) + 1)}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {text}" for text, i in self.texts.items()]


def unchanged(store: ResultsFile, c: EvalConfig, defense: str) -> list[dict[str, Any]]:
    """The attack cells of ``defense`` whose inputs came back unchanged (largest perturbation 0) while other attack
    cells at the same eps break examples that they leave correct; each with how many such examples."""
    clean = CleanCell.of(c, defense).record(store)
    if clean is None or "correct" not in clean:
        return []
    found = []
    for eps in sorted(c.eps):
        cells = cells_at(store, c, defense, eps)
        for r in cells:
            if r.get("linf", 1.0) > 0 or r.get("l2", 1.0) > 0:
                continue
            others = [o["correct"] for o in cells if o is not r and (o.get("linf", 0) > 0 or o.get("l2", 0) > 0)]
            missed = sum(
                1
                for i, bit in enumerate(r["correct"])
                if bit == "1" and clean["correct"][i] == "1" and any(o[i] == "0" for o in others)
            )
            if missed:
                found.append(
                    {"attack": r["attack"], "library": r["library"], "samples": r["samples"], "eps": eps,
                     "missed": missed}
                )  # fmt: skip
    return found


def unchanged_text(flag: dict[str, Any]) -> str:
    """The report's and the card's sentence for one cell of :func:`unchanged`."""
    return (
        f"{flag['attack']}/{flag['library']}/samples {flag['samples']} at eps {flag['eps']} returned its inputs "
        f"unchanged (largest perturbation 0) while other attacks break {flag['missed']} of the examples it leaves "
        "correct: its accuracy says nothing about robustness"
    )


def compute_seconds(store: ResultsFile, c: EvalConfig) -> tuple[float, int]:
    """The compute time of the run's recorded cells summed over every run that recorded them (a resumed run
    counts the cells of its earlier parts), and how many cells that is."""
    records = [r for cell in grid(c) if (r := cell.record(store)) is not None]
    return sum(float(r.get("seconds", 0.0)) for r in records), len(records)
