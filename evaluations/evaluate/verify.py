"""Recompute a sample of a results folder's cells with their recorded settings and say which agree.

``stochdef verify OUT`` is how a reviewer checks someone's ``results.jsonl`` (or CI the committed one) without
rerunning it whole. Each sampled cell's :class:`~.config.EvalConfig` is rebuilt from its key alone (the key holds
every setting that changes its numbers, DESIGN.md, §C4) and the cell's key is built again from it: a key that does
not come back exactly is *not reproducible* (the code no longer makes that cell). The cell is then computed by
:func:`.engine.compute` on a :class:`~.compute.run.Run` whose store is a temporary copy of the folder's records
without that cell, so that :func:`.grid.base.is_random` reads the recorded clean cells as the run did; the folder
itself is only read.

Verdicts (:func:`judge`): a cell of a deterministic defense (its clean record says ``random: false``) agrees when
every recorded field but ``seconds``, ``versions``, ``provenance`` and the ``estimator``'s words is equal, bit for
bit (fields a newer version records besides are not compared). A cell of a random defense
agrees when each recomputed accuracy (one draw and ensemble) lies in the recorded 95% Wilson interval and each
recorded one in the recomputed interval. Before computing, the recorded provenance (weights, library versions,
device, CPU capability, samplers: :func:`.store.provenance.differences`) is compared with this machine's: a
difference refuses the check (:class:`ProvenanceError`) unless ``force``, and then every cell is judged by the
interval check, since other kernels round differently and a bit-for-bit check would fail by design.
A cell of a caller's own model or checkpoint (``fingerprint`` or ``checkpoint`` in its key) is skipped: the model
is not in the folder. Only clean and attack cells are sampled (the indicator and transfer cells are not).

>>> key = cell_key(kind="clean", defense="vanilla-mlp", dataset="mnist5k", n=20, seed=0, judge=4)
>>> rebuild({"key": key}).label
'clean vanilla-mlp'
>>> rebuild({"key": key.replace('"n":20', '"n":20,"temperature":2')})
'key field(s) temperature unknown to this version'
"""

from __future__ import annotations

import json
import random as rng
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from . import engine
from .compute.run import Run
from .config import EvalConfig
from .grid.cells import AttackCell, Cell, CleanCell
from .store.provenance import differences, summary
from .store.results import ResultsFile, cell_key, read_records

__all__ = [
    "CellCheck",
    "ProvenanceError",
    "Rebuilt",
    "as_json",
    "judge",
    "own_model",
    "randomness",
    "rebuild",
    "sample",
    "verify",
]

SAMPLED = ("clean", "attack")
# fields that may differ between two computations of one cell without its results differing (the estimator is
# words, which a newer version may put otherwise); fields a newer version adds are not compared either
INCIDENTAL = frozenset({"seconds", "versions", "provenance", "estimator"})
# fields that say what a cell is (its settings, whether it ran, whether the defense is random): equal in any verdict
SAME = frozenset({"defense", "library", "attack", "eps", "samples", "steps", "step", "bounds", "norm", "restarts",
                  "queries", "skipped", "random"})  # fmt: skip
ACCURACIES = (("acc_single", "acc_single_ci"), ("acc_ensemble", "acc_ensemble_ci"))
_COMMON = {"dataset", "n", "seed", "judge", "bounds", "block", "kind", "defense"}
_ATTACK = {"library", "attack", "eps", "samples", "steps", "norm", "restarts", "queries"}
_OWN = {"fingerprint": "a caller's own model (--model)", "checkpoint": "a --checkpoint file"}


class ProvenanceError(ValueError):
    """The folder's cells were computed under other conditions than this machine's (``force`` overrides)."""


@dataclass
class CellCheck:
    """What verify found for one cell: ``status`` is agrees, disagrees, not reproducible or skipped."""

    key: str
    label: str
    status: str
    why: str = ""
    random: bool | None = None
    identical: bool | None = None
    recorded: dict[str, float] = field(default_factory=dict)
    recomputed: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class Rebuilt(NamedTuple):
    """A recorded cell rebuilt from its key: the cell, a label for the table, and the configuration it came from."""

    cell: Cell
    label: str
    config: EvalConfig


def own_model(record: dict[str, Any]) -> str | None:
    """Why the cell of ``record`` cannot be recomputed from the folder (a caller's own model), or ``None``."""
    key = json.loads(record["key"])
    own = [why for name, why in _OWN.items() if name in key]
    return f"a cell of {own[0]}: the model is not in the folder" if own else None


def rebuild(record: dict[str, Any], *, device: str = "cpu") -> Rebuilt | str:
    """The cell of ``record`` rebuilt from its key alone; or why it cannot be (a phrase)."""
    key = json.loads(record["key"])
    kind = key.get("kind")
    unknown = sorted(set(key) - _COMMON - (_ATTACK if kind == "attack" else set()))
    if kind not in SAMPLED or unknown:
        return f"key field(s) {', '.join(unknown)} unknown to this version" if unknown else f"kind {kind!r}"
    try:
        common: dict[str, Any] = dict(
            dataset=key["dataset"], n=key["n"], seed=key["seed"], judge_samples=key["judge"],
            defenses=(key["defense"],), device=device, indicators=False, transfer=False, block=key.get("block", 0),
            bounds=tuple(key.get("bounds", (0.0, 1.0))),
        )  # fmt: skip
        cell: Cell
        if kind == "clean":
            config = EvalConfig(**common)
            cell, label = CleanCell.of(config, key["defense"]), f"clean {key['defense']}"
        else:
            config = EvalConfig(
                **common, attacks=(key["attack"],), libraries=(key["library"],), eps=(key["eps"],),
                samples=(key["samples"],), steps=key["steps"], norm=key.get("norm", "linf"),
                restarts=key.get("restarts", 1), queries=key.get("queries", EvalConfig.queries),
            )  # fmt: skip
            attack = config.attack(key["attack"], key["eps"], key["samples"])
            if isinstance(attack, str):
                return f"no such attack cell: {attack}"
            cell = AttackCell.of(config, key["defense"], key["library"], attack)
            label = f"{key['defense']} {key['attack']}/{key['library']} eps {key['eps']} samples {key['samples']}"
    except (KeyError, TypeError, ValueError) as err:
        return f"its key does not make a configuration ({err})"
    if cell.key != record["key"]:
        return f"this version keys the cell as {cell.key}"
    return Rebuilt(cell, label, config)


def sample(records: Sequence[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` clean and attack records (not skipped ones) chosen with ``seed``, in file order: first one of each
    kind on a deterministic and on a random defense (where there are such cells), then at random.

    >>> records = [{"key": cell_key(kind="clean" if i < 2 else "attack", n=i), "kind": "clean" if i < 2 else "attack"}
    ...            for i in range(10)]
    >>> picked = sample(records, 3, seed=0)
    >>> len(picked), sorted({r["kind"] for r in picked})
    (3, ['attack', 'clean'])
    """
    pool = [r for r in records if r.get("kind") in SAMPLED and "skipped" not in r]
    chooser, random_defense = rng.Random(seed), randomness(records)
    chosen: list[dict[str, Any]] = []
    for kind in SAMPLED:
        for random in (False, True):
            of_group = [r for r in pool if r["kind"] == kind and bool(random_defense[r["key"]]) == random]
            if of_group and len(chosen) < count:
                chosen.append(chooser.choice(of_group))
    rest = [r for r in pool if r not in chosen]
    chosen += chooser.sample(rest, min(count - len(chosen), len(rest)))
    order = {r["key"]: i for i, r in enumerate(records)}
    return sorted(chosen, key=lambda r: order[r["key"]])


def _accuracies(record: dict[str, Any]) -> dict[str, float]:
    return {name: record[name] for name, _ in ACCURACIES if name in record}


def judge(recorded: dict[str, Any], recomputed: dict[str, Any], *, exact: bool) -> tuple[bool, bool, str]:
    """``(agrees, identical, why)``: ``exact`` asks for every field but :data:`INCIDENTAL` equal; else the fields of
    :data:`SAME` must be equal and each accuracy lie in the other record's 95% interval (both ways).

    >>> a = {"acc_single": 0.5, "acc_single_ci": [0.3, 0.7], "acc_ensemble": 0.5, "acc_ensemble_ci": [0.3, 0.7]}
    >>> judge(a, {**a, "acc_single": 0.6}, exact=False)[0]
    True
    >>> judge(a, {**a, "acc_single": 0.6}, exact=True)[2]
    'acc_single 0.5 -> 0.6'
    >>> judge({**a, "random": True}, {**a, "random": False}, exact=False)[:2]
    (False, False)
    """
    a, b = ({k: v for k, v in r.items() if k not in INCIDENTAL and k in recorded} for r in (recorded, recomputed))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    identical = not changed
    if identical:
        return True, True, "identical"
    told = "; ".join(f"{k} {_show(a.get(k))} -> {_show(b.get(k))}" for k in changed[:3])
    told += f"; and {len(changed) - 3} more field(s)" if len(changed) > 3 else ""
    if exact:
        return False, False, told
    if SAME.intersection(changed) or "skipped" in a:
        return False, False, told
    outside = []
    for name, ci in ACCURACIES:
        for mine, other, where in ((b, a, "recorded"), (a, b, "recomputed")):
            low, high = other[ci]
            if not low <= mine[name] <= high:
                outside.append(f"{name} {mine[name]:.3f} outside the {where} interval [{low:.3f}, {high:.3f}]")
    if outside:
        return False, False, "; ".join(dict.fromkeys(outside))
    return True, False, f"accuracies within each other's 95% intervals (not identical: {', '.join(changed[:3])})"


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."


def _device(records: Sequence[dict[str, Any]]) -> str:
    """The recorded device type where this machine has it, else the CPU (provenance then tells the difference)."""
    devices = {(r.get("provenance") or {}).get("device", "cpu") for r in records}
    device = devices.pop() if len(devices) == 1 else "cpu"
    return device if device == "cpu" or (device == "cuda" and torch.cuda.is_available()) else "cpu"


def verify(out: Path, *, cells: int = 8, seed: int = 0, force: bool = False) -> tuple[list[CellCheck], list[str]]:
    """Recompute ``cells`` sampled cells of ``out/results.jsonl`` (:func:`sample`) and judge each; returns the
    checks and the provenance differences that ``force`` overrode (empty when none). Reads ``out`` only."""
    path = Path(out) / "results.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file (verify reads a folder written by stochdef evaluate)")
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    records = read_records(path)
    chosen, random_defense = sample(records, cells, seed), randomness(records)
    device = _device(chosen)
    checks: list[CellCheck] = []
    todo: list[tuple[dict[str, Any], Rebuilt, CellCheck]] = []
    for record in chosen:
        why = own_model(record)
        built = rebuild(record, device=device) if why is None else why
        if isinstance(built, str):
            status = "skipped" if why else "not reproducible"
            checks.append(CellCheck(record["key"], record["key"], status, built))
            continue
        todo.append((record, built, CellCheck(record["key"], built.label, "")))
        checks.append(todo[-1][2])
    with tempfile.TemporaryDirectory(prefix="stochdef-verify-") as tmp:
        runs: dict[str, Run] = {}
        found: dict[str, list[str]] = {}
        for record, (cell, _, config), check in todo:
            runs[cell.key] = run = _run(config, record, records, Path(tmp) / str(len(runs)))
            diff = differences(record, {"versions": run.versions, "provenance": run.provenance(cell.defenses())})
            if diff:
                found[check.label] = diff
        if found and not force:
            raise ProvenanceError(
                f"{path}'s cells were computed under other conditions than this machine's ({summary(found.values())}):"
                " their numbers need not come out the same here; rerun with --force to judge every cell by its "
                "95% interval instead"
            )
        for record, (cell, _, _), check in todo:
            run = runs[cell.key]
            check.random = random_defense[record["key"]]
            engine.compute(run, cell)
            again = json.loads(json.dumps(run.store.get(cell.key)))
            exact = check.random is False and not found
            agrees, check.identical, check.why = judge(record, again, exact=exact)
            check.status = "agrees" if agrees else "disagrees"
            check.recorded, check.recomputed = _accuracies(record), _accuracies(again)
            check.seconds = float(again.get("seconds", 0.0))
    return checks, sorted({d for diff in found.values() for d in diff})


def randomness(records: Sequence[dict[str, Any]]) -> dict[str, bool | None]:
    """Each record's key -> whether its defense is random, from the recorded clean cell of its run and defense
    (``None`` when there is none)."""
    clean = {r["key"]: bool(r.get("random")) for r in records if r.get("kind") == "clean"}
    found: dict[str, bool | None] = {}
    for r in records:
        common = {k: v for k, v in json.loads(r["key"]).items() if k in _COMMON and k != "kind"}
        found[r["key"]] = clean.get(cell_key(**common, kind="clean"))
    return found


def _run(config: EvalConfig, record: dict[str, Any], records: Sequence[dict[str, Any]], folder: Path) -> Run:
    """A :class:`Run` of ``config`` whose store (in ``folder``) holds ``records`` without ``record``."""
    folder.mkdir(parents=True)
    store = ResultsFile(folder / "results.jsonl")
    store.extend([r for r in records if r["key"] != record["key"]])
    return engine.open_run(config, store)


def as_json(checks: Sequence[CellCheck], overridden: Sequence[str]) -> dict[str, Any]:
    """The report ``--report`` writes: every cell's check, and the provenance differences ``force`` overrode."""
    return {"cells": [asdict(c) for c in checks], "provenance_overridden": list(overridden)}
