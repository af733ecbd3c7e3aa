"""An attack cell's examples in fixed blocks (``--block N``), so that ranks can share one long cell.

With ``block`` set, an attack cell attacks and judges its ``n`` examples in blocks of ``block`` rows (the
last one shorter), each seeded from the run's seed and the block's own key (the cell's key and its rows,
:func:`block_key`), never from what ran before it. A batch's random draws depend on its size, so the
one-process run computes the same blocks, in order: a 1-rank and an N-rank run record the same cell however
its blocks were shared. The blocks' outputs are then combined (:func:`combine`): the per-example verdicts
concatenated, accuracies and intervals recomputed from them, calibration counts and forward passes added,
the largest perturbation kept. ``block`` is part of every key (when set), since it changes the draws.

Example:
    >>> block_rows(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    >>> parse_block_key(block_key("k", 4, 8))
    ('k', 4, 8)
    >>> block_bits("01", 1, 3, 6)
    '101111'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from ...stats import wilson_interval

MARK = "#rows "
_PATTERN = re.compile(r"^(.*)#rows (\d+)-(\d+)$", re.DOTALL)


def block_rows(n: int, block: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` rows of each block of ``n`` examples in blocks of ``block``."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    return [(start, min(start + block, n)) for start in range(0, n, block)]


def block_key(key: str, start: int, end: int) -> str:
    """The key of the block of rows ``start:end`` of the cell ``key`` (its seed derives from it)."""
    return f"{key}{MARK}{start}-{end}"


def parse_block_key(key: str) -> tuple[str, int, int] | None:
    """``(cell key, start, end)`` of a block key, ``None`` for a cell's own key."""
    match = _PATTERN.match(key)
    return None if match is None else (match.group(1), int(match.group(2)), int(match.group(3)))


def block_bits(bits: str, start: int, end: int, n: int) -> str:
    """A block's per-example verdicts ``bits`` (rows ``start:end``) as a verdict over all ``n`` examples,
    the others counted correct (the block breaks none of them)."""
    if len(bits) != end - start:
        raise ValueError(f"bits has {len(bits)} examples, rows {start}:{end} are {end - start}")
    return "1" * start + bits + "1" * (n - end)


def _hits(accuracy: float, total: int) -> int:
    return round(accuracy * total)


def combine(partials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cell's judged fields from its blocks' (in row order): ``linf``, ``l2``, the accuracies and their
    intervals, ``calibration``, ``correct`` and ``forward_passes``.

    Example:
        >>> calibration = {"count": [1, 1], "correct": [1, 0], "confidence": [0.4, 0.9], "output": "logits"}
        >>> part = {"linf": 0.1, "l2": 0.5, "acc_single": 0.5, "correct": "10", "calibration": calibration,
        ...         "forward_passes": 4}
        >>> whole = combine([part, {**part, "linf": 0.2, "correct": "11"}])
        >>> whole["acc_ensemble"], whole["acc_single"], whole["linf"], whole["calibration"]["count"], whole["correct"]
        (0.75, 0.5, 0.2, [2, 2], '1011')
    """
    if not partials:
        raise ValueError("combine needs at least one block")
    correct = "".join(p["correct"] for p in partials)
    total = len(correct)
    single = sum(_hits(p["acc_single"], len(p["correct"])) for p in partials)
    ensemble = correct.count("1")
    calibration: dict[str, Any] = {}
    for name in ("count", "correct", "confidence"):
        columns = [p["calibration"][name] for p in partials]
        calibration[name] = [sum(values) for values in zip(*columns, strict=True)]
    calibration["output"] = partials[0]["calibration"]["output"]
    return {
        "linf": max(p["linf"] for p in partials),
        "l2": max(p["l2"] for p in partials),
        "acc_single": single / total,
        "acc_single_ci": list(wilson_interval(single, total)),
        "acc_ensemble": ensemble / total,
        "acc_ensemble_ci": list(wilson_interval(ensemble, total)),
        "calibration": calibration,
        "correct": correct,
        "forward_passes": sum(p["forward_passes"] for p in partials),
    }


def full_rows(x: torch.Tensor, rows: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """``x`` with rows ``start:end`` replaced by ``rows`` (a block's adversarial examples in the whole batch)."""
    out = x.clone()
    out[start:end] = rows
    return out
