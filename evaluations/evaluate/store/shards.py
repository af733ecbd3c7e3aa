"""Results shards of a distributed evaluation: one JSONL file per rank beside ``results.jsonl``.

Under ``torchrun`` every rank writes only its own shard, ``OUT/shards/rank-RRRRR/results.jsonl`` (a
:class:`~.results.ResultsFile`, rewritten atomically after every cell, so a killed rank leaves whole records).
Rank 0 merges the shards into ``OUT/results.jsonl`` when the ranks are done; a run that finds shards left
by a killed run (of any number of ranks, or a one-process run after a distributed one) merges them first,
so no finished cell is computed again. A record already in ``results.jsonl`` wins over a shard's copy of
it (a merge killed between writing ``results.jsonl`` and removing the shards).

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> ResultsFile(shard_path(out, 1)).add({"key": "a", "acc": 0.5})
    >>> store = ResultsFile(out / "results.jsonl")
    >>> merge_shards(store, out)
    1
    >>> store.get("a")["acc"], leftover_shards(out)
    (0.5, [])
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .examples import fold_parts
from .results import ResultsFile, is_transient

logger = logging.getLogger(__name__)

SHARDS = "shards"


def shard_path(out: Path, rank: int) -> Path:
    """The results shard of ``rank`` in the output folder ``out`` (in a folder of the rank's own, where any
    file a run writes beside its results also stays the rank's)."""
    return Path(out) / SHARDS / f"rank-{rank:05d}" / "results.jsonl"


def leftover_shards(out: Path) -> list[Path]:
    """Every shard file in ``out`` (left by a run that was killed, or not yet merged), in name order."""
    folder = Path(out) / SHARDS
    return sorted(folder.glob("rank-*/results.jsonl")) if folder.is_dir() else []


def worst_case_parts(out: Path) -> list[Path]:
    """The ranks' parts of the worst-case files (:mod:`.worst_case`) in ``out``'s shard folders, in name order."""
    folder = Path(out) / SHARDS
    return sorted(folder.glob("rank-*/worst-case*.npz")) if folder.is_dir() else []


def merge_shards(store: ResultsFile, out: Path, *, remove: bool = True, order: Sequence[str] | None = None) -> int:
    """Add the records of every shard in ``out`` that ``store`` lacks, in one atomic rewrite of ``store``, and
    fold the ranks' parts of the worst-case files into ``out``'s (in the cells' ``order``, the grid's; by
    default the store's); then (``remove``) delete the shards. Returns the number of records added."""
    paths = leftover_shards(out)
    new: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in ResultsFile(path):
            # a block of a cell (distributed.py) is computed again: its cell's record is made from all of them
            if record["key"] not in store and not is_transient(record):
                new.setdefault(record["key"], record)
    if new:
        store.extend(list(new.values()))
        logger.info("merged %d cells from %d shards into %s", len(new), len(paths), store.path)
    parts = worst_case_parts(out)
    if parts:
        fold_parts(out, parts, store, [r["key"] for r in store] if order is None else order)
    if remove:
        for path in paths:
            remove_shard(path)
    return len(new)


def remove_shard(path: Path) -> None:
    """Delete a merged shard with its rank's folder (with what the rank wrote beside its results, such as its part
    of the worst-case file, folded by then), and ``shards/`` once empty."""
    shutil.rmtree(Path(path).parent, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another rank's shard is still there
        Path(path).parent.parent.rmdir()


class Shard(ResultsFile):
    """One rank's results shard: :meth:`add` writes the rank's own file; lookups (``in``, :meth:`get`) also
    see ``known``, the records of the rest of the run, so that a cell reading another cell's record (an
    attack cell asking whether its defense is random) finds it whichever rank computed it. Iteration and
    ``len`` cover the rank's own records only.

    Example:
        >>> import tempfile, pathlib
        >>> shard = Shard(shard_path(pathlib.Path(tempfile.mkdtemp()), 0), known={"a": {"key": "a"}})
        >>> shard.add({"key": "b"})
        >>> "a" in shard, shard.get("a"), len(shard)
        (True, {'key': 'a'}, 1)
    """

    def __init__(self, path: Path, *, known: Mapping[str, dict[str, Any]]) -> None:
        super().__init__(path)
        self.known: dict[str, dict[str, Any]] = dict(known)

    def __contains__(self, key: str) -> bool:
        return super().__contains__(key) or key in self.known

    def get(self, key: str) -> dict[str, Any] | None:
        own = super().get(key)
        return own if own is not None else self.known.get(key)

    def own(self) -> Iterator[dict[str, Any]]:
        """The records this rank computed."""
        return super().__iter__()
