"""The worst case's adversarial examples: ``worst-case[--DEFENSE].npz``, one file per defense of a run.

Keyed by eps: ``eps`` lists the run's radii (ascending), and row ``k`` of every per-eps array holds eps
``eps[k]``. Per example: the clean input ``x`` and label ``y``; per eps and example, the adversarial example of
the first cell that broke it (``x_adv``, shape ``(E, N, ...)``; ``x`` where none did), which cell that was
(``broken_by``, its label; ``clean`` when the clean input is misclassified), ``robust``, and the perturbation's
``linf`` / ``l2`` (each ``(E, N)``); ``keys`` lists the cells folded in. The clean cell folds into every eps.
:func:`update` folds one cell (idempotent per cell key, so a resumed run ends with the same file);
:func:`fold_parts` folds the ranks' parts of a distributed run in grid order. Written atomically with the umask's
permissions, like every other output.

>>> slug("mwd-256[psd]")
'mwd-256_psd_'
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochdef.defenses.files import atomic_write_bytes

from .blocks import block_bits, parse_block_key
from .results import ResultsFile


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


def _load(path: Path, x: np.ndarray, y: np.ndarray, eps: Sequence[float]) -> dict[str, Any]:
    """The file's state, with a row for every eps of ``eps`` (a row added for an eps the file lacks starts from
    the clean cell's verdicts, the first cell every run folds)."""
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
    else:
        state = {"x": x, "y": y, "eps": np.zeros(0), "x_adv": np.zeros((0, *x.shape), dtype=x.dtype),
                 "broken_by": np.zeros((0, len(x)), dtype="<U64"), "keys": np.zeros(0, dtype="<U1024")}  # fmt: skip
    for e in sorted(set(map(float, eps)) - set(state["eps"].tolist())):
        clean = (state["broken_by"] == "clean").any(axis=0) if len(state["eps"]) else np.zeros(len(x), dtype=bool)
        at = int(np.searchsorted(state["eps"], e))
        state["eps"] = np.insert(state["eps"], at, e)
        state["x_adv"] = np.insert(state["x_adv"], at, state["x"], axis=0)
        row = np.where(clean, "clean", "").astype("<U64")
        state["broken_by"] = np.insert(state["broken_by"].astype("<U64"), at, row, axis=0)
        if "position" in state:  # a rank's part (see update)
            state["position"] = np.insert(state["position"], at, np.where(clean, -1, np.iinfo(np.int64).max), axis=0)
    return state


def _save(path: Path, state: dict[str, Any]) -> None:
    delta = (state["x_adv"] - state["x"]).reshape(*state["broken_by"].shape, -1).astype(np.float64)
    state["linf"] = np.abs(delta).max(axis=2, initial=0.0)
    state["l2"] = np.sqrt((delta**2).sum(axis=2))
    state["robust"] = state["broken_by"] == ""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **state)
    atomic_write_bytes(path, buffer.getvalue())  # the umask's permissions, as every output


def _fold(
    state: dict[str, Any], key: str, eps: float | None, correct: str, x_adv: np.ndarray, labels: np.ndarray,
    position: int | None = None,
) -> None:  # fmt: skip
    """Fold one cell at ``eps`` (``None``: the clean cell, at every eps) into ``state`` in place: ``x_adv`` and
    ``labels`` (the cell's, per example) wherever it breaks an example first; with the cell's grid ``position``
    (a rank's part), also where it breaks an example that a cell later in the grid broke before it."""
    state["broken_by"] = state["broken_by"].astype("<U64")
    rows = range(len(state["eps"])) if eps is None else [int(np.flatnonzero(state["eps"] == float(eps))[0])]
    wrong = np.frombuffer(correct.encode(), dtype=np.uint8) == ord("0")
    if position is not None and "position" not in state:  # examples broken before: by something earlier
        state["position"] = np.where(state["broken_by"] == "", np.iinfo(np.int64).max, -1)
    for k in rows:
        broken = wrong & (state["broken_by"][k] == "")
        if position is not None:
            broken |= wrong & (position < state["position"][k])
            state["position"][k][broken] = position
        state["x_adv"][k][broken] = x_adv[broken]
        state["broken_by"][k][broken] = labels[broken]
    state["keys"] = np.append(state["keys"].astype("<U1024"), key)


def update(
    path: Path, key: str, label: str, eps: float | None, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
    correct: str, *, all_eps: Sequence[float], position: int | None = None,
) -> None:  # fmt: skip
    """Fold one cell at ``eps`` (``None``: the clean cell) into the worst-case file of a run of ``all_eps``: its
    adversarial example wherever it is the first to break one. A rank of a distributed run, which computes its
    cells out of grid order, passes the cell's grid ``position``: its part then keeps, per example, the first
    cell in grid order that broke it (an array ``position`` beside the others, which :func:`fold_parts` ignores)."""
    state = _load(path, x.detach().cpu().numpy(), y.detach().cpu().numpy(), all_eps)
    if key in set(state["keys"].tolist()):
        return
    labels = np.full(len(state["x"]), label, dtype="<U64")
    _fold(state, key, eps, correct, x_adv.detach().cpu().numpy(), labels, position)
    _save(path, state)


def _position(index: dict[str, int], key: str) -> tuple[int, int, str]:
    """Where the cell (or block: its cell's place, then its rows) ``key`` comes in the grid ``index``."""
    parsed = parse_block_key(key)
    cell, start = (key, -1) if parsed is None else parsed[:2]
    return index.get(cell, len(index)), start, key


def _correct(store: ResultsFile, key: str) -> tuple[str, float | None] | None:
    """The recorded per-example verdicts of a cell, or of a block over all examples (:func:`.blocks.block_bits`),
    and its eps (``None`` for the clean cell)."""
    parsed = parse_block_key(key)
    record = store.get(key if parsed is None else parsed[0])
    if record is None or "correct" not in record:
        return None
    eps = record.get("eps") if record.get("kind") != "clean" else None
    if parsed is None:
        return str(record["correct"]), eps
    _, start, end = parsed
    return block_bits(record["correct"][start:end], start, end, len(record["correct"])), eps


def fold_parts(out: Path, parts: Iterable[Path], store: ResultsFile, order: Sequence[str]) -> int:
    """Fold the ranks' parts of the worst-case files (``worst-case*.npz`` in their shard folders) into the files
    of ``out``, as a one process that computed the cells in ``order`` (the grid's) would have written them.

    A rank's part keeps, per example, the adversarial example of the first of its own cells in grid order that
    broke it (:func:`update` with ``position``); replaying every part's cells in ``order`` with their recorded
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
        all_eps = sorted({float(e) for s in states for e in s["eps"].tolist()})
        state = _load(target, states[0]["x"], states[0]["y"], all_eps)
        seen = set(state["keys"].tolist())
        ranked = sorted(owner, key=functools.partial(_position, {k: i for i, k in enumerate(order)}))
        for key in ranked:
            found = _correct(store, key)
            if key in seen or found is None:
                continue
            correct, eps = found
            held = owner[key]
            k = 0 if eps is None else int(np.flatnonzero(held["eps"] == float(eps))[0])
            _fold(state, key, eps, correct, held["x_adv"][k], held["broken_by"][k])
            folded += 1
        _save(target, state)
    return folded


def read(path: Path) -> dict[str, np.ndarray] | None:
    """The worst-case file's arrays (``x``, ``y``, ``eps``, ``x_adv``, ``broken_by``, ``robust``, ``linf``, ``l2``)."""
    if not Path(path).exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
