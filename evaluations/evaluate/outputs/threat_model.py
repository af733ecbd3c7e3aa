"""The report's account of the threat-model check (:mod:`..compute.validity`): which attack cells returned
examples outside the eps-ball, outside the bounds or non-finite, how many, and that they did not count.

>>> from stochdef.evaluations.evaluate.store.results import ResultsFile
>>> import tempfile, pathlib
>>> store = ResultsFile(pathlib.Path(tempfile.mkdtemp()) / "r.jsonl")
>>> section(store, EvalConfig(defenses=("a",)))[0]
'## Adversarial examples outside the threat model'
"""

from __future__ import annotations

from typing import Any

from ...tables import markdown_table
from ..compute.validity import RELATIVE
from ..config import EvalConfig
from ..store.results import ResultsFile


def invalid_cells(store: ResultsFile, c: EvalConfig) -> tuple[int, list[dict[str, Any]]]:
    """(attack cells checked, the records of those with an invalid example) among ``c``'s defenses."""
    checked = [r for r in store if r.get("kind") == "attack" and r.get("defense") in c.defenses and "invalid" in r]
    return len(checked), [r for r in checked if r["invalid"]]


def section(store: ResultsFile, c: EvalConfig) -> list[str]:
    """Markdown lines: one sentence when every example was inside, else a table naming each cell's attack and
    library and why its examples failed."""
    checked, bad = invalid_cells(store, c)
    lines = [
        "## Adversarial examples outside the threat model",
        "",
        f"Every adversarial example is checked before it counts: finite, inside the bounds, inside the eps-ball "
        f"(tolerance {RELATIVE:g} relative plus float32 rounding: DESIGN.md, §C7). An example that fails counts as "
        "not broken.",
        "",
    ]
    if not bad:
        return [*lines, f"All examples of the {checked} attack cells checked were inside.", ""]
    rows = [
        [
            r["defense"] + (f" [{r['surrogate']}]" if r.get("surrogate") else ""),
            r["attack"],
            r["library"],
            str(r["samples"]),
            str(r["eps"]),
            f"{r['invalid']} of {len(r['correct'])}",
            "; ".join(f"{why}: {n}" for why, n in r["invalid_reasons"].items()),
        ]  # fmt: skip
        for r in bad
    ]
    header = ["defense", "attack", "library", "samples", "eps", "invalid", "why"]
    return [*lines, *markdown_table(header, rows), ""]
