"""Turn an evaluation's results into ``report.md`` and a console table."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from stochdef.adapters import draws_taken

from ...figures import signed_text
from ...libraries import ESTIMATORS
from ...tables import markdown_table
from ..compute.transfer import rho
from ..config import EvalConfig
from ..grid.cells import AttackCell, CleanCell, IndicatorCell, TransferCell
from ..store.results import ResultsFile
from .flags import Notes, compute_seconds, unchanged, unchanged_text
from .reference_section import section as reference_section
from .threat_model import section as threat_model_section
from .worst_case import section as worst_case_section

NORM_NAMES = {"linf": "L-inf", "l2": "L2"}  # how the report and the plots name a threat model
# How a clean record's ``draws`` (stochdef.adapters.draw_kind) reads in the report and on the console.
HOW_IT_DRAWS = {"per-row": "draws per row", "per-call": "draws once per call", "deterministic": "deterministic"}
# The question each plot of plots.py answers, printed above it in the report.
PLOT_QUESTIONS = {
    "accuracy_vs_eps.png": "How fast does each defense fall as eps grows, under the naive and the EoT attack?",
    "accuracy_vs_samples.png": "Does averaging more draws per gradient make the attack stronger?",
    "indicators.png": "Which gradient-obfuscation indicators fired on which defense?",
    "calibration.png": "Is each defense's confidence honest, clean and under attack?",
    "transfer_matrix.png": "Do adversarial examples made on one defense fool another?",
    "convergence.png": "Did the strongest attack's budget converge (--converge): the worst case as its steps double?",
    "worst_case_examples": "What do the worst-case adversarial examples look like at each eps (clean, adversarial, "
    "difference)?",
}


def _fmt(record: dict[str, Any] | None, field: str = "acc_ensemble", notes: Notes | None = None) -> str:
    if record is None:
        return "—"
    if "skipped" in record:
        if "deterministic" in record["skipped"]:
            return "= naive"
        return "n/a" + (f" {notes.mark(record['skipped'])}" if notes is not None else "")
    low, high = record[f"{field}_ci"]
    return f"{record[field]:.2f} [{low:.2f}, {high:.2f}]"


def _cell(
    store: ResultsFile, c: EvalConfig, defense: str, library: str, name: str, eps: float, samples: int, notes: Notes,
    flagged: dict[tuple[str, str, int, float], str],
) -> str:  # fmt: skip
    """One attack cell of the robust table: its accuracy, why it did not run, or a flag on an unchanged input."""
    attack = c.attack(name, eps, samples)
    if isinstance(attack, str):
        return f"n/a {notes.mark(attack)}"
    text = _fmt(AttackCell.of(c, defense, library, attack).record(store), notes=notes)
    flag = flagged.get((name, library, samples, eps))
    return f"{text} **unchanged** {notes.mark(flag)}" if flag else text


def attack_record(
    store: ResultsFile, c: EvalConfig, defense: str, library: str, name: str, eps: float, samples: int
) -> dict[str, Any] | None:
    """The record of one attack cell (``None`` when not computed, or when the threat model has no such cell)."""
    attack = c.attack(name, eps, samples)
    return None if isinstance(attack, str) else AttackCell.of(c, defense, library, attack).record(store)


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    return markdown_table(header, list(rows))


def robust_rows(store: ResultsFile, c: EvalConfig, defense: str, notes: Notes | None = None) -> list[list[str]]:
    """The robust table of ``defense``: naive / EoT per attack, library and eps; a cell that did not run, or
    that returned its inputs unchanged while others break them (:func:`.flags.unchanged`), gets a footnote of
    ``notes`` saying why."""
    naive, eot = min(c.samples), max(c.samples)
    notes = Notes() if notes is None else notes
    flagged = {
        (f["attack"], f["library"], f["samples"], f["eps"]): unchanged_text(f) for f in unchanged(store, c, defense)
    }
    rows = []
    for attack in c.attacks:
        for library in c.libraries:
            cells = [
                f"{_cell(store, c, defense, library, attack, e, naive, notes, flagged)} / "
                f"{_cell(store, c, defense, library, attack, e, eot, notes, flagged)}"
                for e in sorted(c.eps)
            ]
            rows.append([attack, library, *cells])
    return rows + adaptive_rows(store, c, defense)


def adaptive_rows(store: ResultsFile, c: EvalConfig, defense: str) -> list[list[str]]:
    """The rows of the attacks through each surrogate gradient ``defense`` declares (``ATTACK [NAME gradient]``)."""
    naive, eot = min(c.samples), max(c.samples)
    rows = []
    for surrogate in (s for d, s in c.surrogates if d == defense):
        for attack in c.attacks:
            for library in c.libraries:
                found = [
                    [None if isinstance(a, str) or not a.gradients else
                     AttackCell.of(c, defense, library, a, surrogate).record(store)
                     for a in (c.attack(attack, e, naive), c.attack(attack, e, eot))]
                    for e in sorted(c.eps)
                ]  # fmt: skip
                if any(r is not None for pair in found for r in pair):
                    cells = [f"{_fmt(one)} / {_fmt(many)}" for one, many in found]
                    rows.append([f"{attack} [{surrogate} gradient]", library, *cells])
    return rows


def markdown(store: ResultsFile, c: EvalConfig, *, seconds: float | None = None, plots: Iterable[str] = ()) -> str:
    """The whole report as Markdown."""
    naive, eot = min(c.samples), max(c.samples)
    versions = next(iter(store), {}).get("versions", {})
    out = [
        "# stochdef evaluation",
        "",
        f"Dataset **{c.dataset}** (first {c.n} held-out test images), seed {c.seed}, device `{c.device}`; "
        f"{NORM_NAMES[c.norm]} attacks at eps {', '.join(map(str, sorted(c.eps)))}; "
        f"PGD: {c.steps} steps of 2.5 eps / steps, "
        "no random start; true labels. " + run_time(store, c, seconds),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".",
        "",
        f"Accuracies are the defense's own ensemble (softmax average of up to {c.judge_samples} draws) with 95% "
        f"Wilson intervals; single-draw accuracies are in `results.jsonl`. **naive** = the attack differentiates "
        f"one draw (samples = {naive}); **EoT** = its gradient averages up to {eot} draws, as each defense's draws "
        "were taken (below). How each library averages: "
        + "; ".join(f"{lib}: {how}" for lib, how in ESTIMATORS.items())
        + ".",
        "",
        *draws_lines(store, c),
        "",
        "## Clean accuracy",
        "",
    ]
    clean_rows = []
    for d in c.defenses:
        r = CleanCell.of(c, d).record(store)
        random = "—" if r is None else ("yes" if r["random"] else "no")
        clean_rows.append([d, random, (r or {}).get("draws", "—"), _fmt(r, "acc_single"), _fmt(r), ensemble_of(r)])
    out += _table(["defense", "random", "draws", "one draw", "ensemble", "ensemble of"], clean_rows)
    out += ["", *worst_case_section(store, c)]
    out += [f"## Robust accuracy ({NORM_NAMES[c.norm]}): naive / EoT", ""]
    for d in c.defenses:
        out += [f"### {d}", ""]
        notes = Notes()
        rows = robust_rows(store, c, d, notes)
        out += _table(["attack", "library", *[f"eps {e} ({NORM_NAMES[c.norm]})" for e in sorted(c.eps)]], rows)
        out += ["", *(f"{line}  " for line in notes.lines())] if notes.texts else []
        out.append("")
    out += threat_model_section(store, c)
    out += indicator_section(store, c)
    out += reference_section(store, c)
    out += transfer_section(store, c)
    if plots:
        out += ["## Plots", ""]
        for p in plots:
            question = PLOT_QUESTIONS.get(p) or PLOT_QUESTIONS.get(p.split("--")[0].removesuffix(".png"), p)
            out += [f"**{question}**", "", f"![{p}]({p})", ""]
    return "\n".join(out) + "\n"


def ensemble_of(record: dict[str, Any] | None) -> str:
    """The draws the clean cell's ensemble averaged, in words (``"—"`` when unknown)."""
    return "—" if record is None else str(record.get("judge_draws", "—"))


def draws_lines(store: ResultsFile, c: EvalConfig) -> list[str]:
    """Per defense, how its draws were taken (DESIGN.md, §C2): the EoT attacks' and the ensemble's.

    A model that draws once per call (the rows of a call share a draw) is averaged with one call per draw; one
    that draws per row in one call on the replicated batch; a deterministic one is one draw, whatever ``samples``.
    """
    eot, lines = max(c.samples), []
    for d in c.defenses:
        record = CleanCell.of(c, d).record(store)
        if record is None:
            continue
        kind = record.get("draws")
        how = HOW_IT_DRAWS.get(str(kind), "how it draws was not probed")
        lines.append(f"- **{d}** ({how}): EoT {draws_taken(kind, eot)}; ensemble {ensemble_of(record)}.")
    return ["How each defense's draws were taken:", "", *lines] if lines else []


def run_time(store: ResultsFile, c: EvalConfig, seconds: float | None) -> str:
    """The run time: the recorded cells' compute time summed over every run into the folder (a resumed run counts
    its earlier parts), and this invocation's wall time when given."""
    total, cells = compute_seconds(store, c)
    if not cells:
        return "" if seconds is None else f"Run time: {seconds:.1f} s. "
    this = f"; this invocation {seconds:.1f} s" if seconds is not None else ""
    return f"Run time: {total:.1f} s (the compute time of its {cells} cells, summed over every resume{this}). "


def indicator_section(store: ResultsFile, c: EvalConfig) -> list[str]:
    records = [(d, IndicatorCell.of(c, d).record(store)) for d in c.defenses]
    if not any(r for _, r in records):
        return []
    out = [
        "## Gradient-obfuscation indicators",
        "",
        f"Checked at eps {c.eps_mid} with in-house EoT attacks ({max(c.samples)} draws). A fired indicator "
        "says where to look, not that the defense is broken or sound.",
        "",
    ]
    for d, r in records:
        if r is None:
            continue
        fired = [i for i in r["indicators"] if i["fired"]]
        out += [f"### {d}: {len(fired)} of {len(r['indicators'])} fired", ""]
        out += _table(
            ["indicator", "source", "fired", "value", "threshold", "detail"],
            [
                [
                    i["name"],
                    i["source"],
                    "**yes**" if i["fired"] else "no",
                    f"{i['value']:.3g}",
                    f"{i['threshold']:.3g}",
                    i["detail"],
                ]
                for i in r["indicators"]
            ],
        )
        out.append("")
    return out


def transfer_matrix(store: ResultsFile, c: EvalConfig) -> dict[tuple[str, str], float]:
    """``rho[(A, B)]`` for every pair with results."""
    matrix = {}
    for a in c.defenses:
        for b in c.defenses:
            cross, own, clean = (
                TransferCell.of(c, a, b).record(store),
                TransferCell.of(c, b, b).record(store),
                CleanCell.of(c, b).record(store),
            )
            if cross and own and clean:
                matrix[(a, b)] = rho(clean["acc_ensemble"], cross["acc_ensemble"], own["acc_ensemble"])
    return matrix


def transfer_section(store: ResultsFile, c: EvalConfig) -> list[str]:
    matrix = transfer_matrix(store, c)
    if not matrix:
        return []
    out = [
        "## Transfer matrix",
        "",
        "rho(A -> B) = (Acc[B] - Acc[B|A]) / (Acc[B] - Acc[B|B]) (Adv-BNN eq. 14): rows A make the adversarial "
        f"examples (in-house EoT-PGD, eps {c.eps_mid}), columns B are attacked.",
        "",
    ]
    rows = [
        [a, *[("—" if math.isnan(v := matrix.get((a, b), math.nan)) else signed_text(v)) for b in c.defenses]]
        for a in c.defenses
    ]
    return out + _table(["A \\ B", *c.defenses], rows) + [""]


def console_table(store: ResultsFile, c: EvalConfig) -> str:
    """A compact table: per defense and eps, the lowest accuracy any library reached, naive and EoT."""
    naive, eot = min(c.samples), max(c.samples)
    width = max(16, *(len(d) + 2 for d in c.defenses))
    labels = [f"eps {e} naive/EoT" for e in sorted(c.eps)]
    columns = [max(20, len(label) + 3) for label in labels]
    header = f"{'defense':<{width}}{'clean':>7}" + "".join(
        f"{label:>{w}}" for label, w in zip(labels, columns, strict=True)
    )
    lines = [f"{NORM_NAMES[c.norm]} attacks", header, "-" * len(header)]
    for d in c.defenses:
        clean = CleanCell.of(c, d).record(store)
        row = f"{d:<{width}}{(clean or {}).get('acc_ensemble', math.nan):>7.2f}"
        for e, w in zip(sorted(c.eps), columns, strict=True):
            worst: list[float] = []
            for s in (naive, eot):
                accs = [
                    r["acc_ensemble"]
                    for lib in c.libraries
                    for a in c.attacks
                    if (r := attack_record(store, c, d, lib, a, e, s)) and "acc_ensemble" in r
                ]
                if s == eot and not accs:  # deterministic: EoT = naive
                    accs = worst[:1]
                worst.append(min(accs) if accs else math.nan)
            row += f"{worst[0]:>{w - 8}.2f}/{worst[1]:<7.2f}"
        lines.append(row)
    lines.append("(lowest accuracy over attacks and libraries; ensemble prediction)")
    lines += [line.replace("**", "").removeprefix("- ") for line in draws_lines(store, c)[2:]]
    return "\n".join(lines)
