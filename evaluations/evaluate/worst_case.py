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

import functools
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..stats import wilson_interval
from .blocks import block_bits, parse_block_key
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


def _load(path: Path, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    return {
        "x": x,
        "y": y,
        "x_adv": x.copy(),
        "broken_by": np.full(len(x), "", dtype="<U64"),
        "keys": np.zeros(0, dtype="<U1024"),
    }


def _save(path: Path, state: dict[str, Any]) -> None:
    delta = (state["x_adv"] - state["x"]).reshape(len(state["x"]), -1).astype(np.float64)
    state["linf"] = np.abs(delta).max(axis=1)
    state["l2"] = np.sqrt((delta**2).sum(axis=1))
    state["robust"] = state["broken_by"] == ""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **state)
    os.replace(tmp, path)


def _fold(state: dict[str, Any], key: str, correct: str, x_adv: np.ndarray, labels: np.ndarray) -> None:
    """Fold one cell into ``state`` in place: ``x_adv`` and ``labels`` wherever it breaks an example first."""
    broken = (np.frombuffer(correct.encode(), dtype=np.uint8) == ord("0")) & (state["broken_by"] == "")
    state["x_adv"][broken] = x_adv[broken]
    state["broken_by"] = state["broken_by"].astype("<U64")
    state["broken_by"][broken] = labels[broken]
    state["keys"] = np.append(state["keys"].astype("<U1024"), key)


def update(
    path: Path, key: str, label: str, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, correct: str
) -> None:
    """Fold one cell into the worst-case file: its adversarial example wherever it is the first to break one."""
    state = _load(path, x.detach().cpu().numpy(), y.detach().cpu().numpy())
    if key in set(state["keys"].tolist()):
        return
    _fold(state, key, correct, x_adv.detach().cpu().numpy(), np.full(len(state["x"]), label, dtype="<U64"))
    _save(path, state)


def _position(index: dict[str, int], key: str) -> tuple[int, int, str]:
    """Where the cell (or block: its cell's place, then its rows) ``key`` comes in the grid ``index``."""
    parsed = parse_block_key(key)
    cell, start = (key, -1) if parsed is None else parsed[:2]
    return index.get(cell, len(index)), start, key


def _correct(store: ResultsFile, key: str) -> str | None:
    """The recorded per-example verdicts of a cell, or of a block over all examples (:func:`.blocks.block_bits`)."""
    parsed = parse_block_key(key)
    record = store.get(key if parsed is None else parsed[0])
    if record is None or "correct" not in record:
        return None
    if parsed is None:
        return str(record["correct"])
    _, start, end = parsed
    return block_bits(record["correct"][start:end], start, end, len(record["correct"]))


def fold_parts(out: Path, parts: Iterable[Path], store: ResultsFile, order: Sequence[str]) -> int:
    """Fold the ranks' parts of the worst-case files (``worst-case*.npz`` in their shard folders) into the files
    of ``out``, as a one process that computed the cells in ``order`` (the grid's) would have written them.

    A rank computes its cells in grid order, so its part keeps, per example, the adversarial example of the
    first of its own cells that broke it; replaying every part's cells in ``order`` with their recorded
    ``correct`` (from ``store``; a block's from its cell's) then takes, per example, the first cell of all
    ranks that broke it, from the part that holds it. Examples a file in ``out`` already counts broken (cells
    of an earlier run) stay so.
    Cells already in the file are not folded again. Returns the number of cells folded.
    """
    by_name: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        state = read(part)
        if state is not None:
            by_name.setdefault(Path(part).name, []).append(state)
    folded = 0
    for name, states in by_name.items():
        owner = {key: state for state in states for key in state["keys"].tolist()}
        target = Path(out) / name
        state = _load(target, states[0]["x"], states[0]["y"])
        seen = set(state["keys"].tolist())
        ranked = sorted(owner, key=functools.partial(_position, {k: i for i, k in enumerate(order)}))
        for key in ranked:
            correct = _correct(store, key)
            if key in seen or correct is None:
                continue
            _fold(state, key, correct, owner[key]["x_adv"], owner[key]["broken_by"])
            folded += 1
        _save(target, state)
    return folded


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
