"""The results file of an evaluation: one JSON record per finished cell, rewritten atomically.

Each record carries a ``key`` built from every parameter that affects its numbers, so a rerun (after an
interruption, or with more defenses) computes only the cells it lacks. The file is rewritten whole
through a temporary file and an atomic rename after every cell: a kill leaves the previous complete
file, never a half-written line. A line that does not parse, or a record of a known kind that lacks a field,
is reported with its line number. One process writes a file at a time: a writer holds
:func:`~stochdef.defenses.files.exclusive_lock` on it for its whole run (``ResultsFile(path, lock=True)``), and a
second one is refused before it computes anything. Each record also says what its numbers depend on
(``versions``, ``provenance``: see :mod:`.provenance`). :func:`merge` joins the records of several files
(per-process shards) into one, refusing two different results for one cell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochdef.defenses.files import FileInUseError, atomic_write_text, exclusive_lock

__all__ = [
    "JUDGED",
    "KINDS",
    "CorruptResultsError",
    "FileInUseError",
    "Kind",
    "ResultsFile",
    "cell_key",
    "cell_seed",
    "check_record",
    "is_transient",
    "merge",
    "read_records",
    "register_kind",
]

JUDGED = ("acc_single", "acc_single_ci", "acc_ensemble", "acc_ensemble_ci")


@dataclass(frozen=True)
class Kind:
    """What a record of one kind must hold: ``required`` fields, and the judged fields (:data:`JUDGED`) too
    unless it records why it was ``skipped`` (``judged``); ``transient`` kinds (a block of a cell) are parts of
    another cell's record and never reach ``results.jsonl``."""

    required: tuple[str, ...] = ()
    judged: bool = False
    transient: bool = False


#: The record kinds, registered by the cell types (``grid/``, :func:`register_kind`); a cell's identity is
#: its key, these are the fields the report and the plots read.
KINDS: dict[str, Kind] = {}


def register_kind(name: str, kind: Kind) -> None:
    """Register the record kind ``name`` (each cell type does, once); a second, different registration raises."""
    if KINDS.get(name, kind) != kind:
        raise ValueError(f"record kind {name!r} is registered twice, differently")
    KINDS[name] = kind


def is_transient(record: dict[str, Any]) -> bool:
    """Whether ``record`` is part of another cell's record (a block), never a cell of ``results.jsonl``."""
    kind = KINDS.get(record.get("kind", ""))
    return kind is not None and kind.transient


# Fields that may differ between two computations of one cell without their results differing.
_INCIDENTAL = frozenset({"seconds"})


class CorruptResultsError(ValueError):
    """A results file has a line that is not a valid record."""


def cell_key(**fields: Any) -> str:
    """A canonical string for the identifying fields of a cell."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def cell_seed(seed: int, key: str) -> int:
    """A 31-bit seed for a cell, fixed by the run's seed and the cell's key (order-independent)."""
    return int(hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def check_record(record: object) -> str | None:
    """``None`` if ``record`` is a valid record, else what is wrong with it (a phrase).

    >>> check_record({"key": "k", "kind": "transfer", "source": "a", "target": "b"})
    "a transfer record must have the field 'acc_ensemble'"
    """
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return "a record must be an object with a 'key'"
    kind = record.get("kind")
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        return None
    needed = spec.required + (JUDGED if spec.judged and "skipped" not in record else ())
    missing = [field for field in needed if field not in record]
    if missing:
        article = "an" if str(kind)[0] in "aeiou" else "a"
        fields = f"field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        return f"{article} {kind} record must have the {fields}"
    return None


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of the JSONL file at ``path`` (none if it does not exist); ``CorruptResultsError`` naming the
    file and line for a line that is not valid JSON, not a valid record, or a cell already seen."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise CorruptResultsError(f"{path} is not a file")
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorruptResultsError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        problem = check_record(record)
        if problem:
            raise CorruptResultsError(f"{path}, line {number}: {problem}")
        if record["key"] in seen:
            raise CorruptResultsError(f"{path}, line {number}: duplicate cell {record['key']}")
        seen.add(record["key"])
        records.append(record)
    return records


def merge(sources: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The records of ``sources`` (e.g. :func:`read_records` of several shards), each cell once, in first-seen
    order. A cell found twice must have the same record (up to ``seconds``); else ``CorruptResultsError``.

    >>> merge([[{"key": "a", "x": 1}], [{"key": "b", "x": 2}, {"key": "a", "x": 1, "seconds": 3}]])
    [{'key': 'a', 'x': 1}, {'key': 'b', 'x': 2}]
    """
    merged: dict[str, dict[str, Any]] = {}
    for records in sources:
        for record in records:
            problem = check_record(record)
            if problem:
                raise CorruptResultsError(f"cannot merge: {problem} ({record!r:.80})")
            key = record["key"]
            if key in merged:
                a, b = ({k: v for k, v in r.items() if k not in _INCIDENTAL} for r in (merged[key], record))
                if a != b:
                    fields = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
                    raise CorruptResultsError(f"cannot merge: cell {key} has two different results ({fields})")
                continue
            merged[key] = record
    return list(merged.values())


class ResultsFile:
    """Finished cells of a run, kept in memory and mirrored to a JSONL file.

    With ``lock=True`` the file is locked for writing until :meth:`close` (or the end of a ``with`` block, or the
    process): a second ``ResultsFile(path, lock=True)`` raises :class:`FileInUseError` before reading anything.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
        >>> store = ResultsFile(path)
        >>> store.add({"key": "a", "acc": 0.5})
        >>> ResultsFile(path).get("a")["acc"]
        0.5
    """

    def __init__(self, path: Path, *, lock: bool = False) -> None:
        self.path = Path(path)
        self._lock = contextlib.ExitStack()
        if lock:
            self._lock.enter_context(exclusive_lock(self.path, what="run's results"))
        try:
            self._records = {r["key"]: r for r in read_records(self.path)}
        except BaseException:
            self._lock.close()
            raise

    def close(self) -> None:
        """Release the write lock (if held); the records stay readable."""
        self._lock.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._records.values())

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def add(self, record: dict[str, Any]) -> None:
        """Add a finished cell and rewrite the file atomically."""
        problem = check_record(record)
        if problem:
            raise ValueError(f"record: {problem}")
        if record["key"] in self._records:
            raise ValueError(f"cell {record['key']} is already recorded")
        self._records[record["key"]] = record
        self._write()

    def retire(self, keys: Iterable[str], *, to: Path) -> int:
        """Move the records of ``keys`` out of this file, appending them to the file ``to`` (kept, never
        dropped); returns how many moved. ``to`` is written before this file is rewritten."""
        moved = [self._records[k] for k in keys if k in self._records]
        if not moved:
            return 0
        before = Path(to).read_text() if Path(to).exists() else ""
        atomic_write_text(to, before + "".join(json.dumps(r, sort_keys=True) + "\n" for r in moved))
        for record in moved:
            del self._records[record["key"]]
        self._write()
        return len(moved)

    def _write(self) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self._records.values())
        atomic_write_text(self.path, text)

    def extend(self, records: list[dict[str, Any]]) -> None:
        """Add several finished cells (a merged results shard) with one atomic rewrite."""
        for record in records:
            problem = check_record(record)
            if problem:
                raise ValueError(f"record: {problem}")
            if record["key"] in self._records:
                raise ValueError(f"cell {record['key']} is already recorded")
        self._records.update((record["key"], record) for record in records)
        self._write()
