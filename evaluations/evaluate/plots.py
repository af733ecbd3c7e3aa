"""PNG plots of an evaluation: accuracy vs eps, accuracy vs EoT samples, calibration, transfer matrix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..figures import plt, save_figure
from .report import _attack, transfer_matrix
from .results import ResultsFile
from .run import EvalConfig, clean_key

COLORS = {"inhouse": "black", "foolbox": "tab:blue", "art": "tab:orange", "torchattacks": "tab:green"}


def accuracy_vs_eps(store: ResultsFile, c: EvalConfig, out: Path) -> str:
    """Rows: attacks; columns: defenses; a line per library, dashed naive, solid EoT (their Fig. 1/3 style)."""
    fig, axes = plt.subplots(
        len(c.attacks),
        len(c.defenses),
        figsize=(3.2 * len(c.defenses), 2.8 * len(c.attacks)),
        squeeze=False,
        sharey=True,
    )
    eps = sorted(c.eps)
    for i, attack in enumerate(c.attacks):
        for j, d in enumerate(c.defenses):
            ax = axes[i][j]
            clean = (store.get(clean_key(c, d)) or {}).get("acc_ensemble", math.nan)
            for lib in c.libraries:
                for s, style in ((min(c.samples), "--"), (max(c.samples), "-")):
                    ys = [clean] + [
                        (r or {}).get("acc_ensemble", math.nan)
                        for r in (_attack(store, c, d, lib, attack, e, s) for e in eps)
                    ]
                    if s == max(c.samples) and all(math.isnan(v) for v in ys[1:]):
                        continue
                    ax.plot(
                        [0.0, *eps],
                        ys,
                        style,
                        color=COLORS.get(lib),
                        marker="o",
                        ms=3,
                        label=f"{lib} ({'naive' if s == min(c.samples) else 'EoT'})",
                    )
            ax.set_title(f"{d}: {attack}", fontsize=9)
            ax.set_xlabel("eps (L-inf)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (ensemble)")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    return save_figure(fig, out / "accuracy_vs_eps.png")


def accuracy_vs_samples(store: ResultsFile, c: EvalConfig, out: Path, *, attack: str = "pgd") -> str:
    """Accuracy under the attack at the middle eps as the number of EoT draws grows (SAP Sec. 4.4 style)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    samples = sorted(c.samples)
    for d in c.defenses:
        for lib in c.libraries:
            ys = [
                (r or {}).get("acc_ensemble", math.nan)
                for r in (_attack(store, c, d, lib, attack, c.eps_mid, s) for s in samples)
            ]
            if sum(not math.isnan(v) for v in ys) > 1:
                ax.plot(samples, ys, marker="o", label=f"{d} / {lib}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("EoT draws per gradient")
    ax.set_ylabel(f"accuracy under {attack}, eps {c.eps_mid}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return save_figure(fig, out / "accuracy_vs_samples.png")


def calibration(store: ResultsFile, c: EvalConfig, out: Path, *, library: str | None = None) -> str:
    """Reliability diagrams, clean and under the EoT PGD at the middle eps (SAP Fig. 4 style)."""
    lib = library or c.libraries[0]
    fig, axes = plt.subplots(1, len(c.defenses), figsize=(3.0 * len(c.defenses), 3.0), squeeze=False)
    for ax, d in zip(axes[0], c.defenses, strict=True):
        adv = _attack(store, c, d, lib, "pgd", c.eps_mid, max(c.samples))
        if adv is not None and "skipped" in adv:
            adv = _attack(store, c, d, lib, "pgd", c.eps_mid, min(c.samples))
        for name, record in (("clean", store.get(clean_key(c, d))), (f"PGD eps {c.eps_mid}", adv)):
            if not record or "calibration" not in record:
                continue
            bins = record["calibration"]
            count = np.asarray(bins["count"], dtype=float)
            keep = count > 0
            conf = np.asarray(bins["confidence"])[keep] / count[keep]
            acc = np.asarray(bins["correct"])[keep] / count[keep]
            ax.plot(conf, acc, marker="o", label=name)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, out / "calibration.png")


def transfer_heatmap(store: ResultsFile, c: EvalConfig, out: Path) -> str | None:
    """The rho matrix as a heatmap (Adv-BNN Fig. 3 style)."""
    matrix = transfer_matrix(store, c)
    if not matrix:
        return None
    n = len(c.defenses)
    grid = np.array([[matrix.get((a, b), np.nan) for b in c.defenses] for a in c.defenses])
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * n, 0.8 + 0.8 * n))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), c.defenses, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), c.defenses, fontsize=7)
    ax.set_xlabel("attacked (B)")
    ax.set_ylabel("source (A)")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, out / "transfer_matrix.png")


def all_plots(store: ResultsFile, c: EvalConfig, out: Path) -> list[str]:
    """Write every plot that has data; return their file names."""
    names = [accuracy_vs_eps(store, c, out), calibration(store, c, out)]
    if len(c.samples) > 1:
        names.append(accuracy_vs_samples(store, c, out))
    heat = transfer_heatmap(store, c, out)
    return names + ([heat] if heat else [])
