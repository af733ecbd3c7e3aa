"""The documentation pages made at build time from the committed reports: no number is typed into the docs.

Each function returns one page's Markdown, read from ``evaluations/reports/`` of the repository at ``root``;
``stochdef_docs`` writes them under ``docs/results/generated/`` before Sphinx reads the sources, and the
API pages under ``docs/api/generated/`` from the three packages' ``__all__``. Nothing here imports Sphinx,
so the test suite can check the pages without building them (``tests/test_docs.py``).

Example:
    >>> table_row(["a", "b|c"])
    '| a | b\\\\|c |'
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

REPORTS = Path("evaluations") / "reports"
# From docs/results/generated/ back to the repository root, for image links.
UP = "../../../"
PACKAGES = ("stochdef.adapters", "stochdef.defenses", "stochdef.evaluations")


def table_row(cells: list[str]) -> str:
    """One Markdown table row, pipes inside a cell escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _relink(markdown: str, folder: str) -> str:
    """Point every relative image link ``![a](f.png)`` at ``folder`` (repository-relative) from a generated page."""
    return re.sub(r"!\[([^\]]*)\]\(([^)/:]+)\)", rf"![\1]({UP}{folder}/\2)", markdown)


def _shift_up(markdown: str) -> str:
    """Every Markdown heading one level higher (``### x`` -> ``## x``); ``#`` stays."""
    return re.sub(r"^#(#+) ", r"\1 ", markdown, flags=re.MULTILINE)


def _shift_down(markdown: str) -> str:
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


def evaluate_page(root: Path) -> str:
    """The default ``stochdef evaluate`` run: what it printed, its reading, then its whole report."""
    folder = REPORTS / "evaluate"
    console = (root / folder / "console.txt").read_text().rstrip("\n")
    reading = (root / folder / "reading.txt").read_text().strip()
    report = (root / folder / "report.md").read_text()
    report = report.split("\n", 1)[1] if report.startswith("# ") else report  # the page has its own title
    return "\n".join(
        [
            "# Results: `stochdef evaluate` (defaults)",
            "",
            "MNIST-5k, 100 held-out images, every shipped defense of the five papers plus an undefended MLP; "
            "the headline is the per-example worst case over every attack of every library, naive and EoT "
            "(RobustBench's rule), with its 95% Wilson interval. Above it, the lowest accuracy of any single "
            f"attack cell. This page is generated from `{folder.as_posix()}/` (`results.jsonl`, `console.txt`, "
            "`reading.txt`, `report.md`), which the command wrote.",
            "",
            "## What the run printed",
            "",
            "```text",
            console,
            "```",
            "",
            "## Reading",
            "",
            f"Generated from `results.jsonl` by `python -m stochdef.evaluations.evaluate.outputs.reading`: {reading}",
            "",
            "## The report",
            "",
            _relink(_shift_down(report).lstrip("\n"), folder.as_posix()),
        ]
    )


def reproductions_page(root: Path) -> str:
    """The five papers' reproductions, the same block ``stochdef.evaluations.reproduce.readme`` builds."""
    from stochdef.evaluations.reproduce import readme

    block = readme.section(root / readme.LINK_ROOT)
    block = block.replace(readme.START + "\n", "", 1)
    # readme.section links figures from the repository root; the page lives three folders down.
    block = block.replace(f"]({readme.LINK_ROOT}/", f"]({UP}{readme.LINK_ROOT}/")
    return _shift_up(block)


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def benchmarks_page(root: Path) -> str:
    """Every committed ``bench-TARGET-DEVICE.json``: the targets, then the timings; the notes after them."""
    files = sorted((root / REPORTS).glob("bench-*-*.json"))
    targets = [table_row(["benchmark", "device", "measurement", "value", "target", "met"]), table_row(["---"] * 6)]
    timings = [table_row(["benchmark", "device", "timed", "median (s)", "min (s)", "max (s)", "repeats"])]
    timings.append(table_row(["---"] * 7))
    machines: set[str] = set()
    for path in files:
        data = json.loads(path.read_text())
        name, device = f"`{data['benchmark']}`", data.get("device_name", data.get("device", "?"))
        machines.add(f"{device} (torch {data.get('torch', '?')})")
        for label, target in sorted(data.get("targets", {}).items()):
            met = "yes" if target["met"] else "**no**"
            goal = f"{target['op']} {_fmt(target['threshold'])}"
            targets.append(table_row([name, device, label, _fmt(target["value"]), goal, met]))
        for label, stats in data.get("timings", {}).items():
            if isinstance(stats, dict) and "median" in stats:
                row = [name, device, label, f"{stats['median']:.4g}", f"{stats['min']:.4g}", f"{stats['max']:.4g}"]
                timings.append(table_row([*row, str(stats.get("repeat", ""))]))
    notes = (root / REPORTS / "bench-notes.md").read_text()
    devices = {json.loads(path.read_text()).get("device") for path in files}
    gpu = "" if "cuda" in devices else " No GPU run is committed, so the GPU targets (EoT >= 10x) are unmeasured."
    return "\n".join(
        [
            "# Benchmarks (`stochdef bench TARGET`)",
            "",
            "Generated from the committed `evaluations/reports/bench-*.json`, which `stochdef bench TARGET` wrote: "
            "medians of repeated runs, ratios from one run. Machines: " + "; ".join(sorted(machines)) + "." + gpu,
            "",
            "## Targets",
            "",
            *targets,
            "",
            "## Notes",
            "",
            _shift_down(notes).strip(),
            "",
            "## Timings",
            "",
            *timings,
            "",
        ]
    )


def crosscheck_page(root: Path) -> str:
    """``stochdef crosscheck``'s full report: the in-house attacks against Foolbox, ART and torchattacks."""
    report = (root / REPORTS / "crosscheck-cpu.md").read_text()
    intro = (
        "Generated from `evaluations/reports/crosscheck-cpu.md`, which `stochdef crosscheck` wrote "
        "(`--quick`: `crosscheck-cpu-quick.md`).\n"
    )
    title, rest = report.split("\n", 1) if report.startswith("# ") else ("# stochdef cross-check", report)
    return f"{title}\n\n{intro}{rest}"


def zoo_table(root: Path) -> str:
    """The shipped checkpoints, one row per ``defenses/checkpoints/NAME--DATASET.json`` sidecar."""
    rows = [table_row(["zoo name", "data", "paper / role", "held-out accuracy, one draw (%)", "train s"])]
    rows.append(table_row(["---"] * 5))
    for path in sorted((root / "defenses" / "checkpoints").glob("*--*.json")):
        meta = json.loads(path.read_text())
        accuracy = f"{100 * meta['test_accuracy_single_draw']:.1f}"
        cells = [f"`{meta['name']}`", meta["dataset"], meta["paper"], accuracy, f"{meta['train_seconds']:.0f}"]
        rows.append(table_row(cells))
    return "\n".join(rows) + "\n"


RESULT_PAGES = {
    "evaluate": evaluate_page,
    "reproductions": reproductions_page,
    "benchmarks": benchmarks_page,
    "crosscheck": crosscheck_page,
}


def public_names(package: str) -> list[str]:
    """The package's public names: its ``__all__``, in that order (what ``from package import *`` gives)."""
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    if not names:
        raise ValueError(f"{package} has no __all__: the API reference is generated from it")
    return list(names)


def api_page(package: str) -> str:
    """The reST page of one package: its docstring, then a summary table and one page per public name."""
    entries = "\n".join(f"   {name}" for name in public_names(package))
    return (
        f"{package}\n{'=' * len(package)}\n\n"
        f".. automodule:: {package}\n   :no-members:\n\n"
        f".. currentmodule:: {package}\n\n"
        f"Public names (``{package}.__all__``)\n{'-' * (len(package) + 27)}\n\n"
        f".. autosummary::\n   :toctree: generated\n   :nosignatures:\n\n{entries}\n"
    )


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (so Sphinx's incremental builds stay incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
