"""The worst case's adversarial examples: ``worst-case[--DEFENSE].npz``, one file per defense of a run.

Per example: the clean input ``x`` and label ``y``, the adversarial example of the first cell that broke it
(``x_adv``; ``x`` where none did), which cell that was (``broken_by``, its label), ``robust``, and the
perturbation's ``linf`` / ``l2``; ``keys`` lists the cells folded in. :func:`update` folds one cell (idempotent
per cell key, so a resumed run ends with the same file); :func:`fold_parts` folds the ranks' parts of a
distributed run in grid order. Written atomically with the umask's permissions, like every other output.

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
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **state)
    atomic_write_bytes(path, buffer.getvalue())  # the umask's permissions, as every output


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


def read(path: Path) -> dict[str, np.ndarray] | None:
    """The worst-case file's arrays (``x``, ``y``, ``x_adv``, ``broken_by``, ``robust``, ``linf``, ``l2``)."""
    if not Path(path).exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
