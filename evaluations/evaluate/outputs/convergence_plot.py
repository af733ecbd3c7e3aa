"""``convergence.png``: did the budget converge? The ``--converge`` curve of each defense (:mod:`..converge`,
``budgets.json``) as a plot, one panel per defense.

x: the strongest attack's steps on a log2 axis (each doubling one tick, labelled with its multiple of the run's
budget); y: the defense's worst-case robust accuracy at that budget with its 95% interval (the half-width the
stopping rule compares, :func:`..converge.settled`); one line per eps converged. The cap is a dashed vertical
line, the budget the run converged at a star, and the stopping rule is in the title.

>>> points({"curve": [{"steps": 10, "restarts": 1, "robust_accuracy": 0.5, "half_width": 0.1}]})
([10], [0.5], [0.1])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...figures import plt, save_figure
from ..config import EvalConfig
from ..store import budgets
from .layout import FONT
from .layout import header as _header
from .layout import labels as _labels
from .layout import panels as _grid

FILE = budgets.PLOT


def points(entry: dict[str, Any]) -> tuple[list[int], list[float], list[float]]:
    """The steps, worst cases and half-widths of one defense's curve (``budgets.json``), in doubling order."""
    curve = entry["curve"]
    return [p["steps"] for p in curve], [p["robust_accuracy"] for p in curve], [p["half_width"] for p in curve]


def curves(data: dict[str, Any]) -> dict[str, dict[float, dict[str, Any]]]:
    """Per defense, its curve per eps converged (``budgets.json`` holds one eps, the card's: one line a panel)."""
    return {d: {float(data["eps"]): entry} for d, entry in data["defenses"].items()}


def convergence(c: EvalConfig, out: Path) -> str | None:
    """Draw ``out/convergence.png`` from ``out/budgets.json``; ``None`` when the run converged no budget."""
    data = budgets.read(out)
    if not data or not data["defenses"]:
        return None
    found = curves(data)
    fig, axes = _grid(len(found))
    colors = plt.get_cmap("tab10")
    cap_steps = c.steps * int(data["cap"])
    for ax, (d, by_eps) in zip(axes.flat, found.items(), strict=False):
        verdicts = []
        for k, (eps, entry) in enumerate(sorted(by_eps.items())):
            steps, acc, half = points(entry)
            color = colors(k % 10)
            ax.errorbar(steps, acc, yerr=half, color=color, marker="o", ms=4, capsize=3, label=f"eps {eps:g}")
            if entry["converged"]:  # the budget it settled at: the point before the last doubling
                ax.plot(steps[-2], acc[-2], marker="*", ms=13, color=color, markeredgecolor="black", zorder=4)
            verdicts.append(budgets.verdict(entry).split(":")[0])
        ax.axvline(cap_steps, color="tab:red", linestyle="--", linewidth=1)
        ticks = [c.steps * 2**i for i in range(int(data["cap"]).bit_length())]
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{s}\n(x{s // c.steps})" for s in ticks])
        ax.minorticks_off()
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{d}: {next(iter(by_eps.values()))['attack']}", fontsize=FONT)
        ax.text(0.03, 0.04, "\n".join(verdicts), transform=ax.transAxes, fontsize=FONT - 1, va="bottom")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=FONT - 1)
    _labels(axes, len(found), "steps of the strongest attack (x the run's budget)", "worst-case robust accuracy")
    eps_all = sorted({e for by_eps in found.values() for e in by_eps})
    handles = [plt.Line2D([], [], color=colors(k % 10), marker="o") for k in range(len(eps_all))]
    labels = [f"eps {e:g} (95% interval)" for e in eps_all]
    handles += [
        plt.Line2D([], [], color="tab:red", linestyle="--"),
        plt.Line2D([], [], color="gray", marker="*", ms=10, linestyle="none", markeredgecolor="black"),
    ]
    labels += [f"cap: {data['cap']} x the run's budget", "converged at this budget"]  # fmt: skip
    title = (
        "--converge: the worst case as the strongest attack's steps (and restarts) double; the rule: stop when a "
        "doubling lowers it by no more than its interval's half-width"
    )
    _header(fig, title, handles, labels)
    return save_figure(fig, out / FILE, layout=False)
