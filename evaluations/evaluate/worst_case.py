"""The headline number: per-example worst case over every attack of every library (RobustBench's rule).

An example counts as robust at ``eps`` only if the defense classifies it correctly clean and after every
attack cell at that ``eps`` (every attack, library and number of EoT draws), each judged by the defense's
own inference rule (the ``judge_samples``-draw ensemble). The robust accuracy is the share of such
examples, with a 95% Wilson interval over the n test images (:mod:`stochdef.evaluations.stats`); it is
never above any single cell's accuracy. The judge is itself random: each cell draws its own ensemble, so
an example near the boundary can fail one of many judgements by chance; the worst case counts it broken
(conservative, as AutoAttack-rand's worst case over its runs is).

Each cell records its per-example correctness (``correct``, a string of 0/1) in ``results.jsonl``, so the
worst case at every eps comes from the store alone (:func:`summary`). At the largest eps (the model card's)
the run also keeps, per defense, the adversarial example that broke each example first, which attack did
it, and its perturbation (:func:`track_worst_case`, file :func:`worst_case_path`), updated after every cell
and idempotent, so a resumed run ends with the same file.

>>> summary_of(["111", "110", "011"])
(1, 3)
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..stats import wilson_interval
from .results import ResultsFile
from .run import EvalConfig, Run, attack_key, clean_key

CLEAN = "clean"


def slug(name: str) -> str:
    """A file-name-safe form of a defense name.

    >>> slug("mwd-256[psd]")
    'mwd-256_psd_'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def output_path(out: Path, defenses: tuple[str, ...], defense: str, stem: str, suffix: str) -> Path:
    """``out/STEM.SUFFIX`` for a one-defense run, ``out/STEM--DEFENSE.SUFFIX`` for each defense otherwise."""
    return Path(out) / (f"{stem}{suffix}" if len(defenses) == 1 else f"{stem}--{slug(defense)}{suffix}")


def worst_case_path(out: Path, defenses: tuple[str, ...], defense: str) -> Path:
    return output_path(out, defenses, defense, "worst-case", ".npz")


def summary_of(correct: Iterable[str]) -> tuple[int, int]:
    """(examples correct in every bit string, examples): the per-example AND of the cells."""
    rows = [np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1") for bits in correct]
    if not rows:
        raise ValueError("correct must hold at least one cell")
    both = np.logical_and.reduce(rows)
    return int(both.sum()), len(both)


def cells_at(
    store: ResultsFile, c: EvalConfig, defense: str, eps: float, samples: int | None = None
) -> list[dict[str, Any]]:
    """The attack cells of ``defense`` at ``eps`` with per-example results (of ``samples`` draws, if given).

    A skipped EoT cell of a deterministic defense stands for its naive cell (they are the same attack).
    """
    found = []
    for attack in c.attacks:
        for library in c.libraries:
            for s in c.samples if samples is None else (samples,):
                spec = c.attack_spec(attack, eps, s)
                if isinstance(spec, str):
                    continue
                record = store.get(attack_key(c, defense, library, spec))
                if (
                    record is not None
                    and "correct" not in record
                    and s > 1
                    and "deterministic" in record.get("skipped", "")
                ):
                    naive = c.attack_spec(attack, eps, 1)
                    record = None if isinstance(naive, str) else store.get(attack_key(c, defense, library, naive))
                if record is not None and "correct" in record:
                    found.append(record)
    return found


def summary(
    store: ResultsFile, c: EvalConfig, defense: str, eps: float, *, samples: int | None = None
) -> dict[str, Any] | None:
    """Worst-case robust accuracy of ``defense`` at ``eps`` with its 95% interval (``None`` before any cell)."""
    clean = store.get(clean_key(c, defense))
    attacks = cells_at(store, c, defense, eps, samples)
    if clean is None or "correct" not in clean or not attacks:
        return None
    hits, n = summary_of([clean["correct"], *(r["correct"] for r in attacks)])
    low, high = wilson_interval(hits, n)
    lowest = min(attacks, key=lambda r: r["acc_ensemble"])
    return {
        "robust_accuracy": hits / n,
        "robust_accuracy_ci": [low, high],
        "hits": hits,
        "n": n,
        "cells": len(attacks),
        "best_single": f"{lowest['attack']}/{lowest['library']}/samples {lowest['samples']}",
        "best_single_accuracy": lowest["acc_ensemble"],
    }


# ---- the adversarial examples of the worst case (at the card's eps) ----------------------------------------


def _load(path: Path, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    x_np = x.detach().cpu().numpy()
    return {
        "x": x_np,
        "y": y.detach().cpu().numpy(),
        "x_adv": x_np.copy(),
        "broken_by": np.full(len(x_np), "", dtype="<U64"),
        "keys": np.zeros(0, dtype="<U1024"),
    }


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **state)
    os.replace(tmp, path)


def update(
    path: Path, key: str, label: str, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, correct: str
) -> None:
    """Fold one cell into the worst-case file: its adversarial example wherever it is the first to break one."""
    state = _load(path, x, y)
    if key in set(state["keys"].tolist()):
        return
    broken = (np.frombuffer(correct.encode(), dtype=np.uint8) == ord("0")) & (state["broken_by"] == "")
    state["x_adv"][broken] = x_adv.detach().cpu().numpy()[broken]
    state["broken_by"] = state["broken_by"].astype("<U64")
    state["broken_by"][broken] = label
    state["keys"] = np.append(state["keys"].astype("<U1024"), key)
    delta = (state["x_adv"] - state["x"]).reshape(len(state["x"]), -1).astype(np.float64)
    state["linf"] = np.abs(delta).max(axis=1)
    state["l2"] = np.sqrt((delta**2).sum(axis=1))
    state["robust"] = state["broken_by"] == ""
    _save(path, state)


def track_worst_case(
    run: Run, key: str, label: str, defense: str, eps: float, x_adv: torch.Tensor, correct: str
) -> None:
    """:func:`update` the defense's worst-case file when ``eps`` is the card's (the largest of the run)."""
    if eps != max(run.config.eps):
        return
    path = worst_case_path(run.store.path.parent, run.config.defenses, defense)
    update(path, key, label, run.x, run.y, x_adv, correct)


def read(path: Path) -> dict[str, np.ndarray] | None:
    """The worst-case file's arrays (``x``, ``y``, ``x_adv``, ``broken_by``, ``robust``, ``linf``, ``l2``)."""
    if not Path(path).exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def section(store: ResultsFile, c: EvalConfig) -> list[str]:
    """The report's headline: the worst case per defense and eps, above the per-attack tables."""
    eps = sorted(c.eps)
    rows = []
    for d in c.defenses:
        cells = []
        for e in eps:
            s = summary(store, c, d, e)
            cells.append(
                "—"
                if s is None
                else "**{:.2f}** [{:.2f}, {:.2f}]".format(s["robust_accuracy"], *s["robust_accuracy_ci"])
            )
        rows.append([d, *cells])
    lines = [
        "## Robust accuracy: worst case over every attack",
        "",
        "An example counts as robust only if it is classified correctly clean and after every attack of every "
        "library at that eps, naive and EoT (RobustBench's rule); 95% Wilson intervals. The per-attack "
        "accuracies below are each at least this.",
        "",
        "| defense | " + " | ".join(f"eps {e} ({c.norm})" for e in eps) + " |",
        "|" + "|".join(" --- " for _ in range(len(eps) + 1)) + "|",
    ]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]
