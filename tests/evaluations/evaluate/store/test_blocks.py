"""``--block``: an attack cell's examples in blocks, combined into the cell (the distributed split of one long
cell is in test_distributed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate import EvalConfig
from stochdef.evaluations.evaluate.compute.judge import Judge
from stochdef.evaluations.evaluate.store.blocks import block_bits, block_key, block_rows, combine, parse_block_key
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.evaluate.store.shards import merge_shards, shard_path


def test_blocks_of_a_deterministic_model_combine_into_the_whole_batchs_verdict() -> None:
    """A deterministic model judges each example the same in any batch: the combined blocks must give the
    whole batch's judgement (accuracies, intervals, verdicts, calibration)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4)).eval()
    x, y = torch.randn(23, 6), torch.randint(0, 4, (23,))
    whole = Judge(model, 3)(x, y)
    partials = []
    for start, end in block_rows(23, 5):
        partials.append({**Judge(model, 3)(x[start:end], y[start:end]), "linf": 0.0, "l2": 0.0, "forward_passes": 1})
    combined = combine(partials)
    for name in ("acc_single", "acc_single_ci", "acc_ensemble", "acc_ensemble_ci", "correct"):
        assert combined[name] == whole[name], name
    for name in ("count", "correct"):
        assert combined["calibration"][name] == whole["calibration"][name]
    assert combined["calibration"]["confidence"] == pytest.approx(whole["calibration"]["confidence"], rel=1e-9)
    assert combined["forward_passes"] == len(partials) == 5


def test_block_rows_cover_every_example_once_and_keys_round_trip() -> None:
    for n, size in [(1, 1), (7, 3), (60, 16), (16, 16), (5, 9)]:
        rows = block_rows(n, size)
        assert [i for start, end in rows for i in range(start, end)] == list(range(n))
        assert all(end - start == size for start, end in rows[:-1])
        for start, end in rows:
            assert parse_block_key(block_key('{"kind":"attack"}', start, end)) == ('{"kind":"attack"}', start, end)
    assert parse_block_key('{"kind":"attack"}') is None
    with pytest.raises(ValueError, match="block must be >= 1"):
        block_rows(4, 0)
    with pytest.raises(ValueError, match="bits has 2 examples"):
        block_bits("01", 0, 3, 5)


def test_block_is_in_the_key_and_checked() -> None:
    plain, blocked = EvalConfig(n=8), EvalConfig(n=8, block=4)
    assert plain.identity() == {} and blocked.identity() == {"block": 4}
    with pytest.raises(ValueError, match="block"):
        EvalConfig(block=-1)


def test_a_killed_runs_block_records_are_not_merged(tmp_path: Path) -> None:
    """Blocks left in a shard are computed again (the cell's record comes from all its blocks at once)."""
    shard = ResultsFile(shard_path(tmp_path, 1))
    shard.add({"key": "cell", "kind": "note", "acc": 1.0})
    shard.add({"key": block_key("other", 0, 4), "kind": "block", "cell": "other"})
    store = ResultsFile(tmp_path / "results.jsonl")
    assert merge_shards(store, tmp_path) == 1
    assert [r["key"] for r in store] == ["cell"]
