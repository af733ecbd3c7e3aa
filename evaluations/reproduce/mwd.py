"""Agrawal, de Alfaro & Helmbold, MWD networks: Table 1 (eps 0.3) and Figure 2 (certified vs attacked).

MWD nets are deterministic, so the EoT question does not arise; the danger is the pseudogradient, which
trains well but can mask the true gradient from an attacker. Every MWD attack is therefore run with the
true gradient and with the pseudogradient ([psd]); the interval certificate of their Section 4 is a lower
bound no attack can beat. Wraps :mod:`stochdef.evaluations.reproduce.mwd_figure` on the zoo's ``mwd-256``,
``relu-256`` and ``sigmoid-256`` (784-256-256-256-10 on MNIST-5k).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import Reproduction, Table, line_plot, mwd_figure

ATTACKS = ("FGSM", "I-FGSM", "PGD")
ROWS = (("relu", "relu"), ("sigmoid", "sigmoid"), ("mwd", "mwd"), ("mwd[psd]", "mwd[psd]"))


def _table1(rows: dict[str, dict[str, float]]) -> Table:
    paper = mwd_figure.PAPER_TABLE1
    body = [
        [label, *[v for a in ("clean", *ATTACKS) for v in (paper[key][a], 100.0 * rows[key][a])]]
        for label, key in ROWS
        if key in rows
    ]
    columns = ["net", *[f"{a} ({who})" for a in ("clean", *ATTACKS) for who in ("paper", "ours")]]
    return Table("Table 1: accuracy (%) at eps 0.3", columns, body)


def _figure2_table(fig: dict[str, Any]) -> Table:
    rows = [["MWD certified (lower bound)", *[100.0 * v for v in fig["mwd"]["certified"]]]]
    for label in ("mwd", "relu", "sigmoid"):
        rows.append([f"{label} best attack (upper bound)", *[100.0 * v for v in fig[label]["upper"]]])
    for name in fig["attacks"]:
        for suffix in ("", "[psd]"):
            rows.append([f"mwd {name}{suffix}", *[100.0 * v for v in fig["mwd"][f"{name}{suffix}"]]])
    return Table(
        f"Figure 2: accuracy (%) vs eps, {fig['n']} held-out images",
        ["", *[f"eps {e}" for e in fig["eps"]]],
        rows,
        note="Upper bound = the lowest accuracy any of the attacks reached (MWD: true and pseudogradient).",
    )


def run(*, quick: bool = False, device: str = "cpu", seed: int = 0, out: Path | None = None) -> Reproduction:
    """Table 1, Figure 2 and the pseudo- vs true-gradient training comparison (``device`` unused: CPU)."""
    del device  # the interval and MWD code runs where the zoo loads it; these nets are small
    rows = mwd_figure.table1(quick=quick)
    fig = mwd_figure.figure2(quick=quick)
    training = mwd_figure.pseudo_vs_true_training(seed=seed, quick=quick)
    plots: list[str] = []
    if out is not None:
        curves = {"MWD certified": fig["mwd"]["certified"]}
        curves |= {f"{k} best attack": fig[k]["upper"] for k in ("mwd", "relu", "sigmoid")}
        styles = {"MWD certified": "--"}
        plots.append(
            line_plot(out / "figure2.png", fig["eps"], curves, xlabel="eps (L-inf)", ylabel="accuracy",
                      title="MWD Figure 2: certified lower bound vs attack upper bounds", styles=styles)
        )  # fmt: skip
    tables = [
        _table1(rows),
        _figure2_table(fig),
        Table(
            "Training with pseudogradients vs true gradients: held-out accuracy (%)",
            ["training gradient", "paper", "ours"],
            [["pseudo", 96.79, 100.0 * training["pseudo"]], ["true", 86.35, 100.0 * training["true"]]],
        ),
    ]
    i = fig["eps"].index(0.3) if 0.3 in fig["eps"] else len(fig["eps"]) // 2
    reading = (
        f"At eps {fig['eps'][i]} the MWD net is certified on {100 * fig['mwd']['certified'][i]:.1f}% and the best "
        f"attack leaves {100 * fig['mwd']['upper'][i]:.1f}% (ReLU {100 * fig['relu']['upper'][i]:.1f}%, sigmoid "
        f"{100 * fig['sigmoid']['upper'][i]:.1f}%); PGD leaves MWD {100 * rows['mwd']['PGD']:.1f}% with the true "
        f"gradient vs {100 * rows['mwd[psd]']['PGD']:.1f}% with the pseudogradient; pseudogradient training "
        f"reaches {100 * training['pseudo']:.1f}% vs {100 * training['true']:.1f}%."
    )
    return Reproduction(
        target="mwd",
        paper="Agrawal, de Alfaro & Helmbold, MWD networks — Table 1 and Figure 2",
        setting=(
            "MNIST-5k (4,000 train / 1,000 held-out; quick: 100), 784-256-256-256-10 nets trained by stochdef "
            "(paper: full MNIST, 512-wide). Attacks: torchattacks FGSM, BIM (I-FGSM, 10 steps) and PGD "
            f"({mwd_figure.PGD_STEPS} steps, {mwd_figure.PGD_RESTARTS} restart; paper: 100 restarts x 100 steps) "
            "on the cross-entropy of the outputs."
        ),
        reading=reading,
        tables=tables,
        plots=plots,
        data={"table1": rows, "figure2": fig, "training": training, "paper": mwd_figure.PAPER_TABLE1},
    )
