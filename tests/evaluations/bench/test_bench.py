"""``stochdef bench``: every benchmark runs at smoke size and writes a consistent JSON record (no timing asserted)."""

from __future__ import annotations

import json
import operator
from pathlib import Path

import pytest

from stochdef.evaluations import bench


@pytest.mark.parametrize("name", sorted(bench.TARGETS))
def test_benchmark_record_is_consistent(name: str, tmp_path: Path) -> None:
    result = bench.run(name, repeat=1, quick=True)
    assert result["benchmark"] == name and result["timings"]
    for stats in result["timings"].values():
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    ops = {"<=": operator.le, ">=": operator.ge}
    for t in result.get("targets", {}).values():
        assert t["met"] == ops[t["op"]](t["value"], t["threshold"])
    assert result.get("identical_cells", True)  # distributed: the 2-process sweep recorded the 1-process cells
    path = bench.save(result, tmp_path)
    assert json.loads(path.read_text())["benchmark"] == name


def test_unknown_benchmark_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="eot"):
        bench.run("nope")


def test_measure_times_each_repetition_once_after_the_timers_warm_up() -> None:
    calls = []
    stats = bench.measure(lambda: calls.append(1), repeat=4)
    assert stats["repeat"] == 4 and stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
    assert len(calls) == 3 * 4  # torch's Timer.timeit(1): two untimed warm-up calls, then the timed one
