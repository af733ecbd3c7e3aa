"""The results file: atomic rewrites, resume, and corrupt lines reported with their line number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stochdef.evaluations.evaluate.store.results import CorruptResultsError, ResultsFile, cell_key, cell_seed


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ResultsFile(path)
    store.add({"key": cell_key(kind="clean", defense="a"), "acc": 0.5})
    store.add({"key": cell_key(kind="clean", defense="b"), "acc": 0.25})
    again = ResultsFile(path)
    assert len(again) == 2
    assert again.get(cell_key(kind="clean", defense="b"))["acc"] == 0.25
    assert [json.loads(line)["acc"] for line in path.read_text().splitlines()] == [0.5, 0.25]
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_a_cell_is_recorded_once(tmp_path: Path) -> None:
    store = ResultsFile(tmp_path / "r.jsonl")
    store.add({"key": "k"})
    with pytest.raises(ValueError, match="already recorded"):
        store.add({"key": "k"})


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"key": "a"}', '{"key": "b"', '{"key": "c"}'], "line 2: not valid JSON"),
        (['{"key": "a"}', "[1, 2]"], "line 2: a record must be an object"),
        (['{"key": "a"}', '{"key": "b"}', '{"key": "a"}'], "line 3: duplicate cell"),
    ],
)
def test_corrupt_file_names_the_line(tmp_path: Path, lines: list[str], match: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptResultsError, match=match):
        ResultsFile(path)


def test_keys_are_canonical_and_seeds_order_free() -> None:
    assert cell_key(a=1, b=2) == cell_key(b=2, a=1)
    assert cell_seed(0, "x") == cell_seed(0, "x")
    assert cell_seed(0, "x") != cell_seed(1, "x")
    assert cell_seed(0, "x") != cell_seed(0, "y")
    assert 0 <= cell_seed(123, "anything") < 2**31
