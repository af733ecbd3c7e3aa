"""``samples-auto.json``: the EoT draws a ``--samples auto`` run chose (written by :mod:`..auto_samples`), read by
the report and the model cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE = "samples-auto.json"


def read(out: Path) -> dict[str, Any] | None:
    """The ``samples-auto.json`` of a run folder, if the run chose its draws."""
    path = Path(out) / FILE
    return json.loads(path.read_text()) if path.exists() else None


def report_lines(out: Path) -> list[str]:
    """Report lines for the chosen number of draws (empty when the run had fixed draws)."""
    data = read(out)
    if data is None:
        return []
    rule = data["rule"][:1].upper() + data["rule"][1:]
    lines = ["## EoT draws: `--samples auto`", "", rule + f" (cap {data['cap']}, eps {data['eps']}).", ""]
    lines += ["| defense | worst case by draws | chosen |", "| --- | --- | --- |"]
    for d, v in data["defenses"].items():
        curve = ", ".join(f"{p['samples']}: {p['robust_accuracy']:.2f} ± {p['half_width']:.2f}" for p in v["curve"])
        chosen = v["chosen"] if v["settled"] else "not settled at the cap"
        if v.get("too_small_to_tell"):
            chosen = f"{chosen}: the sample is too small to tell (interval ± {v['curve'][-1]['half_width']:.2f})"
        lines.append(f"| {d} | {curve} | {chosen} |")
    return lines + [""]
