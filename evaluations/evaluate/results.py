"""The results file of an evaluation: one JSON record per finished cell, rewritten atomically.

Each record carries a ``key`` built from every parameter that affects its numbers, so a rerun (after an
interruption, or with more defenses) computes only the cells it lacks. The file is rewritten whole
through a temporary file and an atomic rename after every cell: a kill leaves the previous complete
file, never a half-written line. A line that does not parse is reported with its line number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stochdef.defenses.files import atomic_write_text


class CorruptResultsError(ValueError):
    """A results file has a line that is not a valid record."""


def cell_key(**fields: Any) -> str:
    """A canonical string for the identifying fields of a cell."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def cell_seed(seed: int, key: str) -> int:
    """A 31-bit seed for a cell, fixed by the run's seed and the cell's key (order-independent)."""
    return int(hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class ResultsFile:
    """Finished cells of a run, kept in memory and mirrored to a JSONL file.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
        >>> store = ResultsFile(path)
        >>> store.add({"key": "a", "acc": 0.5})
        >>> ResultsFile(path).get("a")["acc"]
        0.5
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise CorruptResultsError(f"{self.path}, line {number}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                    raise CorruptResultsError(f"{self.path}, line {number}: a record must be an object with a 'key'")
                if record["key"] in self._records:
                    raise CorruptResultsError(f"{self.path}, line {number}: duplicate cell {record['key']}")
                self._records[record["key"]] = record

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
        if record["key"] in self._records:
            raise ValueError(f"cell {record['key']} is already recorded")
        self._records[record["key"]] = record
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self._records.values())
        atomic_write_text(self.path, text)

    def extend(self, records: list[dict[str, Any]]) -> None:
        """Add several finished cells (a merged results shard) with one atomic rewrite."""
        for record in records:
            if record["key"] in self._records:
                raise ValueError(f"cell {record['key']} is already recorded")
            self._records[record["key"]] = record
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self._records.values())
        atomic_write_text(self.path, text)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self._records.values() if r.get("kind") == kind]
