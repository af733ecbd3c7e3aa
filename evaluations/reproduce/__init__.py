"""``stochdef reproduce {sdr,sap,advbnn,mwd,noise}``: each paper's headline table on our data.

Every target prints the paper's numbers beside ours and our EoT-attack numbers beside both, writes
``results.json`` + ``report.md`` (+ plots) to its output folder, and says in one line what the
comparison means. A target's ``run(*, quick, device, seed)`` returns a :class:`Reproduction`.

``quick=True`` is a smoke test (few images, draws and attack steps, a few epochs for the models a target
trains: it checks that the pipeline runs): its report is labelled so, and :func:`smoke_test` strips the
paper's numbers and the reading from it, since numbers at that size are not comparable with the paper's.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stochdef.defenses.files import atomic_write_text

from ..tables import markdown_table

TARGETS: dict[str, str] = {
    "sdr": "Khan et al., Non-Determinism in Neural Networks for Adversarial Robustness (Table 1)",
    "sap": "Dhillon et al., Stochastic Activation Pruning (Fig. 1b/3 and the MC-sample sweep)",
    "advbnn": "Liu et al., Adv-BNN (Table 1 and the transfer matrix, Fig. 3)",
    "mwd": "Agrawal, de Alfaro, Helmbold, MWD networks (Table 1 and Figure 2)",
    "noise": "Pinot et al., Theoretical evidence for robustness through randomization (Table 1 and Figure 1)",
}


@dataclass
class Table:
    """A table of numbers (``None`` = not reported); ``fmt`` formats the numbers."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    fmt: str = "{:.1f}"

    def cell(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return self.fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)

    def markdown(self) -> str:
        lines = [f"#### {self.title}", ""]
        lines += markdown_table(self.columns, [[self.cell(v) for v in row] for row in self.rows])
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        cells = [self.columns] + [[self.cell(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [self.title, "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
        return "\n".join(lines)


@dataclass
class Reproduction:
    """A paper's headline results re-run on our data."""

    target: str
    paper: str
    setting: str
    reading: str
    tables: list[Table]
    plots: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    smoke: bool = False

    def markdown(self) -> str:
        parts = [f"## {self.paper}", ""]
        if self.smoke:
            parts += [f"**{SMOKE_LABEL}**", ""]
        parts += [f"**Setting.** {self.setting}", "", f"**Reading.** {self.reading}", ""]
        parts += [t.markdown() for t in self.tables]
        parts += [f"![{p}]({p})" for p in self.plots]
        parts.append(f"\n_Run time: {self.seconds:.0f} s._\n")
        return "\n".join(parts)

    def text(self) -> str:
        head = [self.paper] + ([SMOKE_LABEL] if self.smoke else [])
        return "\n\n".join([*head, *[t.text() for t in self.tables], f"Reading: {self.reading}"])


SMOKE_LABEL = (
    "Smoke test (--quick): reduced sizes (few images, draws and attack steps; a few epochs for the models it "
    "trains). It checks that the pipeline runs; its numbers are not a reproduction and are not compared with "
    "the paper's."
)


def is_paper_column(column: str) -> bool:
    """Whether a table column holds the paper's numbers (``"paper"``, ``"paper (…)"``, ``"clean (paper)"``)."""
    name = column.lower()
    return name.startswith("paper") or name.endswith("(paper)")


def smoke_test(result: Reproduction) -> Reproduction:
    """``result`` labelled as a smoke test: the paper's tables and columns and the reading removed.

    Example:
        >>> r = Reproduction("t", "P", "s", "ours 50% vs paper 90%", [Table("Paper", ["a"], [[1]]),
        ...                  Table("Ours", ["model", "paper", "ours"], [["m", 90.0, 50.0]])])
        >>> s = smoke_test(r)
        >>> [t.title for t in s.tables], s.tables[0].columns, s.tables[0].rows, s.smoke
        (['Ours'], ['model', 'ours'], [['m', 50.0]], True)
    """
    tables = []
    for table in result.tables:
        if table.title.lower().startswith("paper"):
            continue
        keep = [i for i, c in enumerate(table.columns) if not is_paper_column(c)]
        rows = [[row[i] for i in keep] for row in table.rows]
        tables.append(Table(table.title, [table.columns[i] for i in keep], rows, table.note, table.fmt))
    data = {k: v for k, v in result.data.items() if k != "paper"}
    reading = "None: a smoke test is not compared with the paper (run without --quick for the reproduction)."
    return Reproduction(
        result.target, result.paper, result.setting, reading, tables, result.plots, data, result.seconds, smoke=True
    )


def run(
    target: str, *, quick: bool = False, device: str = "cpu", seed: int = 0, out: Path | None = None
) -> Reproduction:
    """Run reproduction ``target`` and, with ``out``, write its report and data there."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, got {target!r}")
    module = importlib.import_module(f"{__name__}.{target}")
    start = time.perf_counter()
    result: Reproduction = module.run(quick=quick, device=device, seed=seed, out=out)
    result.seconds = time.perf_counter() - start
    if quick:
        result = smoke_test(result)
    if out is not None:
        atomic_write_text(out / "report.md", result.markdown())
        atomic_write_text(out / "results.json", json.dumps(asdict(result), indent=2, default=str) + "\n")
    return result


def line_plot(
    path: Path,
    x: Sequence[float],
    curves: dict[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    styles: dict[str, str] | None = None,
) -> str:
    """Write a PNG with one line per curve (atomically) and return its file name."""
    from ..figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, ys in curves.items():
        ax.plot(list(x), list(ys), (styles or {}).get(label, "-"), marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)
