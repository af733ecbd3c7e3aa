"""PNG plots of an evaluation, one question each.

* :func:`accuracy_vs_eps`: how fast does each defense fall as eps grows, naive vs EoT? One panel per defense,
  the lowest accuracy over attacks and libraries, 95% Wilson bands.
* :func:`accuracy_vs_samples`: does averaging more draws make the attack stronger? PGD at the middle eps
  against the number of EoT draws, one line per random defense, bands.
* :func:`indicator_heatmap`: which gradient-obfuscation indicators fired on which defense?
* :func:`calibration`: is each defense's confidence honest, clean and under attack? Reliability curves on
  the model's own output kind, with the number of points per bin.
* :func:`transfer_heatmap`: do adversarial examples made on A fool B? The rho matrix, signed.
* :func:`.convergence_plot.convergence`: did the ``--converge`` budget settle? The worst case per doubling.
* :func:`.example_grid.worst_case_examples`: what do the worst-case adversarial examples look like, per eps?

``stochdef evaluate`` runs fixed-eps attacks only; the per-example perturbation norms of minimal attacks
are drawn where those run (``stochdef reproduce sdr``, :func:`~stochdef.evaluations.figures.norm_distributions`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap

from ...figures import plt, save_figure, signed_text
from ...libraries import PGD
from ..config import EvalConfig
from ..grid.cells import CleanCell, IndicatorCell
from ..store.results import ResultsFile
from .example_grid import worst_case_examples
from .layout import FONT, LEGEND_CHARS_PER_INCH, MIN_WIDTH, wrapped
from .layout import header as _header
from .layout import labels as _labels
from .layout import panels as _grid
from .report import NORM_NAMES, attack_record, transfer_matrix

NAIVE_STYLE: dict[str, Any] = {"linestyle": "--", "marker": "o"}
EOT_STYLE: dict[str, Any] = {"linestyle": "-", "marker": "s"}


def _worst(records: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The record with the lowest ensemble accuracy among those that ran (None when none did)."""
    ran = [r for r in records if r and "acc_ensemble" in r]
    return min(ran, key=lambda r: r["acc_ensemble"]) if ran else None


def worst_case(store: ResultsFile, c: EvalConfig, defense: str, eps: float, samples: int) -> dict[str, Any] | None:
    """The lowest-accuracy attack cell over attacks and libraries at ``eps`` with ``samples`` draws."""
    return _worst([attack_record(store, c, defense, lib, a, eps, samples) for lib in c.libraries for a in c.attacks])


def _curve(points: Sequence[dict[str, Any] | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    acc = np.array([p["acc_ensemble"] if p else math.nan for p in points])
    low = np.array([p["acc_ensemble_ci"][0] if p else math.nan for p in points])
    high = np.array([p["acc_ensemble_ci"][1] if p else math.nan for p in points])
    return acc, low, high


def _band(ax: Any, x: Sequence[float], points: Sequence[dict[str, Any] | None], color: Any, **style: Any) -> None:
    acc, low, high = _curve(points)
    ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)
    ax.plot(x, acc, color=color, ms=4, **style)


def accuracy_vs_eps(store: ResultsFile, c: EvalConfig, out: Path) -> str:
    """Per defense: robust accuracy vs eps, naive (dashed) and EoT (solid), the worst over attacks x libraries."""
    naive, eot = min(c.samples), max(c.samples)
    eps = sorted(c.eps)
    fig, axes = _grid(len(c.defenses))
    for ax, d in zip(axes.flat, c.defenses, strict=False):
        clean = CleanCell.of(c, d).record(store)
        random = bool(clean and clean.get("random"))
        # EoT first, so that the dashed naive line stays visible on top where the two coincide
        for samples, style, color in ((eot, EOT_STYLE, "tab:blue"), (naive, NAIVE_STYLE, "tab:orange")):
            if samples == eot and not random:
                continue  # deterministic: the EoT attack is the naive one
            points = [clean, *(worst_case(store, c, d, e, samples) for e in eps)]
            _band(ax, [0.0, *eps], points, color if random else "tab:gray", **style)
        ax.set_title(d + ("" if random else "  (deterministic: EoT = naive)"), fontsize=FONT)
        ax.set_xticks([0.0, *eps])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=FONT - 1)
    _labels(axes, len(c.defenses), f"eps ({NORM_NAMES[c.norm]}; 0 = clean)", "robust accuracy")
    handles = [
        plt.Line2D([], [], color="tab:orange", **NAIVE_STYLE),
        plt.Line2D([], [], color="tab:blue", **EOT_STYLE),
        plt.Line2D([], [], color="tab:gray", **NAIVE_STYLE),
        plt.Rectangle((0, 0), 1, 1, color="tab:blue", alpha=0.18),
    ]
    labels = [
        f"naive attack ({naive} draw per gradient)",
        f"EoT attack ({eot} draws per gradient)",
        "deterministic defense",
        "95% Wilson interval",
    ]
    _header(
        fig,
        f"Robust accuracy vs eps: the lowest over {', '.join(c.attacks)} x {len(c.libraries)} libraries "
        f"({c.judge_samples}-draw ensemble prediction, first {c.n} test images)",
        handles,
        labels,
    )
    return save_figure(fig, out / "accuracy_vs_eps.png", layout=False)


def deterministic_defenses(store: ResultsFile, c: EvalConfig) -> list[str]:
    """The defenses whose clean cell found them deterministic (EoT equals the naive attack on them)."""
    return [d for d in c.defenses if (r := CleanCell.of(c, d).record(store)) is not None and not r.get("random")]


def samples_curve(store: ResultsFile, c: EvalConfig, defense: str, attack: str, eps: float) -> list[Any]:
    """Per value of ``c.samples`` (ascending), the lowest-accuracy cell of ``attack`` over the libraries."""
    return [
        _worst([attack_record(store, c, defense, lib, attack, eps, s) for lib in c.libraries])
        for s in sorted(c.samples)
    ]


def accuracy_vs_samples(store: ResultsFile, c: EvalConfig, out: Path, *, attack: str = PGD.name) -> str | None:
    """Per eps: the attack's robust accuracy vs EoT draws per gradient, one line per random defense (the lowest
    over libraries), 95% bands; deterministic defenses are named, not drawn (every draw is the same)."""
    samples = sorted(c.samples)
    if len(samples) < 2 or attack not in c.attacks:
        return None
    eps = sorted(c.eps)
    fig, axes = _grid(len(eps), size=(3.6, 3.1))
    colors = plt.get_cmap("tab10")
    deterministic = deterministic_defenses(store, c)
    random = [d for d in c.defenses if d not in deterministic]
    for ax, e in zip(axes.flat, eps, strict=False):
        for k, d in enumerate(random):
            points = samples_curve(store, c, d, attack, e)
            if any(p is not None for p in points):
                _band(ax, samples, points, colors(k % 10), linestyle="-", marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(samples, [str(s) for s in samples])
        ax.minorticks_off()
        ax.set_title(f"eps {e}", fontsize=FONT)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=FONT - 1)
    _labels(axes, len(eps), "EoT draws per gradient (1 = naive)", "robust accuracy")
    handles = [plt.Line2D([], [], color=colors(k % 10), marker="o") for k in range(len(random))]
    labels = list(random)
    if deterministic:
        handles.append(plt.Line2D([], [], color="none"))
        labels.append(f"not drawn, deterministic: {', '.join(deterministic)}")
    _header(
        fig,
        f"{attack.upper()} ({c.steps} steps) vs EoT draws: the lowest over {len(c.libraries)} libraries, 95% bands",
        handles,
        labels,
        ncol=min(len(labels), 5),
    )
    return save_figure(fig, out / "accuracy_vs_samples.png", layout=False)


def _column(name: str) -> str:
    """An indicator's column: the EoT variant without its draw count (1 on deterministic defenses, else more)."""
    return re.sub(r"\[EoT \d+\]", "[EoT]", name)


def indicator_grid(store: ResultsFile, c: EvalConfig) -> tuple[list[str], list[str], np.ndarray, list[list[str]]]:
    """Rows (defenses with indicators), columns (indicator names), state (1 fired, 0 quiet, nan not applicable)
    and each cell's text (the measured value, or "n/a")."""
    records = {d: r for d in c.defenses if (r := IndicatorCell.of(c, d).record(store))}
    names = list(dict.fromkeys(_column(i["name"]) for r in records.values() for i in r["indicators"]))
    rows = list(records)
    state = np.full((len(rows), len(names)), np.nan)
    text = [["" for _ in names] for _ in rows]
    for i, d in enumerate(rows):
        for ind in records[d]["indicators"]:
            j = names.index(_column(ind["name"]))
            applicable = not (ind["value"] == 0 and ind["threshold"] == 0 and "every point" in ind["detail"])
            state[i, j] = float(ind["fired"]) if applicable else np.nan
            text[i][j] = f"{ind['value']:.2g}" if applicable else "n/a"
    return rows, names, state, text


def indicator_heatmap(store: ResultsFile, c: EvalConfig, out: Path) -> str | None:
    """Defenses x indicators: red fired, green quiet, grey not applicable; each cell shows the measured value."""
    rows, names, state, text = indicator_grid(store, c)
    if not rows:
        return None
    label_in = max(len(r) for r in rows) * 0.075  # the defense names left of the cells
    width = max(MIN_WIDTH, 1.2 + label_in + 0.62 * len(names))
    names_in = max(len(n) for n in names) * 0.05  # the indicator names under the cells, rotated 40 degrees
    fig, ax = plt.subplots(figsize=(width, 1.3 + names_in + 0.42 * len(rows)))
    cmap = ListedColormap(["#d9f0d3", "#e34a33"]).with_extremes(bad="#dddddd")
    ax.imshow(np.ma.masked_invalid(state), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=FONT - 1)
    ax.set_yticks(range(len(rows)), rows, fontsize=FONT)
    for (i, j), label in np.ndenumerate(np.array(text, dtype=object)):
        ax.text(j, i, label, ha="center", va="center", fontsize=FONT - 2)
    title = (
        f"Gradient-obfuscation indicators at eps {c.eps_mid} (red: fired, green: quiet, grey: n/a; cell: measured "
        "value)"
    )
    ax.set_title(wrapped(title, width - label_in - 0.4, font=FONT), fontsize=FONT)
    return save_figure(fig, out / "indicators.png")


def calibration(store: ResultsFile, c: EvalConfig, out: Path, *, library: str | None = None) -> str:
    """Per defense: reliability curve (top; marker area ~ points in the bin) and points per confidence bin
    (bottom), clean and under the library's PGD at the middle eps, on the model's own confidence."""
    lib = library or c.libraries[0]
    n = len(c.defenses)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig_width = max(3.5 * cols, MIN_WIDTH)
    fig = plt.figure(figsize=(fig_width, 3.7 * rows + 1.3), layout="constrained")
    cells = fig.subfigures(rows, cols, squeeze=False)
    for cell in cells.flat[n:]:
        cell.set_visible(False)
    for k, d in enumerate(c.defenses):
        top, bottom = cells.flat[k].subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.0]})
        adv = attack_record(store, c, d, lib, PGD.name, c.eps_mid, max(c.samples))
        if adv is None or "skipped" in adv:
            adv = attack_record(store, c, d, lib, PGD.name, c.eps_mid, min(c.samples))
        kinds = set()
        for m, (record, color) in enumerate(((CleanCell.of(c, d).record(store), "tab:blue"), (adv, "tab:red"))):
            if not record or "calibration" not in record:
                continue
            bins = record["calibration"]
            kinds.add(bins.get("output", "logits"))
            count = np.asarray(bins["count"], dtype=float)
            edges = np.linspace(0, 1, len(count) + 1)
            keep = count > 0
            conf = np.asarray(bins["confidence"])[keep] / count[keep]
            acc = np.asarray(bins["correct"])[keep] / count[keep]
            top.plot(conf, acc, color=color, linewidth=1)
            top.scatter(conf, acc, s=4 + 60 * count[keep] / max(c.n, 1), color=color, zorder=3)
            width = (edges[1] - edges[0]) / 2
            bottom.bar(edges[:-1] + width * (m + 0.5), count, width=width, color=color, alpha=0.75)
        top.plot([0, 1], [0, 1], ":", color="grey")
        kind = "its own scores in [0, 1]" if kinds == {"scores"} else "softmax"
        top.set_title(f"{d} (confidence: {kind})", fontsize=FONT)
        for ax in (top, bottom):
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=FONT - 2)
            ax.grid(alpha=0.3)
        top.set_ylim(-0.02, 1.02)
        bottom.set_xlabel("confidence", fontsize=FONT - 1)
        if k % cols == 0:
            top.set_ylabel("accuracy in bin", fontsize=FONT - 1)
            bottom.set_ylabel(f"points (of {c.n})", fontsize=FONT - 1)
    handles = [
        plt.Line2D([], [], color="tab:blue", marker="o"),
        plt.Line2D([], [], color="tab:red", marker="o"),
        plt.Line2D([], [], color="grey", linestyle=":"),
    ]
    labels = ["clean", f"under {lib} PGD at eps {c.eps_mid} (EoT on random defenses)", "perfect calibration"]
    title = (
        f"Calibration of the {c.judge_samples}-draw ensemble: accuracy per confidence bin (marker area ~ points), "
        "points per bin"
    )
    fig.suptitle(wrapped(title, fig_width - 0.3), fontsize=FONT + 1)
    ncol = 3 if fig_width >= 3 * (0.45 + max(map(len, labels)) / LEGEND_CHARS_PER_INCH) else 1
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=FONT, frameon=False)
    return save_figure(fig, out / "calibration.png", layout=False)


def transfer_heatmap(store: ResultsFile, c: EvalConfig, out: Path) -> str | None:
    """The rho matrix (Adv-BNN eq. 14) on a symmetric diverging scale: 0 white, negative blue, positive red."""
    matrix = transfer_matrix(store, c)
    if not matrix:
        return None
    n = len(c.defenses)
    grid = np.array([[matrix.get((a, b), np.nan) for b in c.defenses] for a in c.defenses])
    limit = max(1.0, float(np.nanmax(np.abs(grid))))
    fig, ax = plt.subplots(figsize=(2.2 + 0.9 * n, 1.4 + 0.8 * n))
    image = ax.imshow(grid, vmin=-limit, vmax=limit, cmap="RdBu_r")
    ax.set_xticks(range(n), c.defenses, rotation=45, ha="right", fontsize=FONT - 1)
    ax.set_yticks(range(n), c.defenses, fontsize=FONT - 1)
    ax.set_xlabel("attacked (B)", fontsize=FONT)
    ax.set_ylabel("source of the examples (A)", fontsize=FONT)
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            color = "white" if abs(v) > 0.6 * limit else "black"
            ax.text(j, i, signed_text(v), ha="center", va="center", fontsize=FONT - 1, color=color)
    ax.set_title(
        f"rho(A -> B): in-house EoT-PGD ({max(c.samples)} draws, {c.steps} steps), eps {c.eps_mid}",
        fontsize=FONT,
    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="rho (1: transfers fully, 0: not at all)")
    return save_figure(fig, out / "transfer_matrix.png")


def all_plots(store: ResultsFile, c: EvalConfig, out: Path) -> list[str]:
    """Write every plot that has data; return their file names."""
    from .convergence_plot import convergence

    names = [accuracy_vs_eps(store, c, out)]
    for plot in (accuracy_vs_samples, indicator_heatmap, calibration, transfer_heatmap):
        if name := plot(store, c, out):
            names.append(name)
    if name := convergence(c, out):
        names.append(name)
    return names + worst_case_examples(c, out)
