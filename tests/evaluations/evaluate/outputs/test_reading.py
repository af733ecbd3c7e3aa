"""The evaluation's reading is generated from its records (the docs' results page quotes it: tests/test_docs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stochdef.evaluations.evaluate.outputs import reading as reading_module

ROOT = Path(__file__).resolve().parents[4]
REPORT = ROOT / reading_module.REPORT


def test_committed_reading_is_generated_from_the_committed_records() -> None:
    text = reading_module.reading(reading_module.load(REPORT))
    assert (REPORT / "reading.txt").read_text() == text + "\n", (
        "run: python -m stochdef.evaluations.evaluate.outputs.reading"
    )


def _attack(defense: str, samples: int, library: str, acc: float, ci: tuple[float, float]) -> dict[str, object]:
    return {"kind": "attack", "defense": defense, "eps": 0.2, "samples": samples, "library": library,
            "attack": "pgd", "acc_ensemble": acc, "acc_ensemble_ci": list(ci)}  # fmt: skip


def test_reading_takes_the_lowest_cell_and_counts_agreement() -> None:
    records = [
        {"kind": "clean", "defense": "net", "random": True},
        _attack("net", 1, "a", 0.40, (0.30, 0.50)),
        _attack("net", 1, "b", 0.35, (0.25, 0.45)),  # overlaps a: agree
        _attack("net", 4, "a", 0.10, (0.05, 0.20)),
        _attack("net", 4, "b", 0.60, (0.50, 0.70)),  # disjoint from a: disagree
        {"kind": "indicators", "defense": "net", "indicators": [{"name": "zero_gradients", "fired": True},
                                                               {"name": "randomized", "fired": False}]},
    ]  # fmt: skip
    text = reading_module.reading(records)
    assert "at eps 0.2, net 35% / 10%" in text
    assert "net (zero_gradients)" in text and "randomized" not in text
    assert "overlap in 1 of 2 cells" in text


def test_main_writes_reading_txt(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"kind": "clean", "defense": "d", "random": false}\n')
    assert reading_module.main([str(tmp_path)]) == 0
    assert (tmp_path / "reading.txt").read_text().endswith("No cell was run by two or more libraries.\n")


def test_missing_records_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        reading_module.load(tmp_path)
