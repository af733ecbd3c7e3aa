"""``budgets.json``: where a ``--converge`` run's doubled budgets settled (written by :mod:`..converge`), read by
the report and the model cards.

>>> verdict({"samples": 1, "converged": True, "curve": [{"steps": 10, "restarts": 1}, {"steps": 20, "restarts": 1}]})
'converged at 10 steps x 1 draws x 1 restarts'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE = "budgets.json"
PLOT = "convergence.png"  # drawn by ..outputs.convergence_plot
RULE = (
    "double the strongest attack's steps (and restarts) until the worst case falls by no more than the half-width "
    "of its 95% interval"
)


def read(out: Path) -> dict[str, Any] | None:
    path = Path(out) / FILE
    return json.loads(path.read_text()) if path.exists() else None


def verdict(entry: dict[str, Any]) -> str:
    """``converged at S steps x D draws x R restarts`` or ``not converged within the cap: ...``."""
    last = entry["curve"][-2 if entry["converged"] else -1]
    if entry["converged"]:
        return f"converged at {last['steps']} steps x {entry['samples']} draws x {last['restarts']} restarts"
    return f"not converged within the cap ({last['steps']} steps): the number is an upper bound"


def report_lines(out: Path) -> list[str]:
    """The report's section on the budgets (empty when the run did not converge any)."""
    data = read(out)
    if data is None:
        return []
    lines = ["## Budgets: `--converge`", "", RULE[:1].upper() + RULE[1:] + f" (at most {data['cap']} times the "
             f"run's budget, eps {data['eps']}).", "", "| defense | attack | worst case by steps | budget |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for d, v in data["defenses"].items():
        curve = ", ".join(f"{p['steps']}: {p['robust_accuracy']:.2f} ± {p['half_width']:.2f}" for p in v["curve"])
        lines.append(f"| {d} | {v['attack']} | {curve} | {verdict(v)} |")
    if (Path(out) / PLOT).exists():
        lines += ["", f"The curves as a plot: [{PLOT}]({PLOT}) (the cap and the stopping rule drawn on it)."]
    return lines + [""]
