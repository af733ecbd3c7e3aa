"""The schedule: units claimed from a shared counter go to exactly one rank each, largest first; the fixed part
per cell of the expected seconds; a rank's worst-case part keeps the grid-first breaker whatever order it ran in."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, TransferCell, grid
from stochdef.evaluations.evaluate.distributed import phases
from stochdef.evaluations.evaluate.engine import open_run
from stochdef.evaluations.evaluate.grid.schedule import (
    Weights,
    agreement,
    claimed,
    fold_seconds,
    forward_seconds,
    largest_first,
    queue,
    units,
)
from stochdef.evaluations.evaluate.store import examples
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.evaluate.store.shards import Shard

CONFIG = EvalConfig(
    defenses=("vanilla-mlp", "sdr-learnable", "noise-gaussian"), attacks=("fgsm", "pgd"),
    libraries=("inhouse", "art"), eps=(0.1, 0.2), samples=(1, 8), n=10, steps=3, judge_samples=2,
)  # fmt: skip


def _ranks_claim(count: int, ranks: int, key: str, store: dist.Store) -> list[list[int]]:
    """What each of ``ranks`` threads claims of ``count`` units on ``key``, each on its own client of ``store``'s
    server and each unit taking a random few milliseconds (so the ranks interleave)."""
    taken: list[list[int]] = [[] for _ in range(ranks)]

    def rank(r: int) -> None:
        client = dist.TCPStore("127.0.0.1", store.port, ranks + 1, is_master=False, timeout=timedelta(seconds=30))
        jitter = random.Random(r)
        for index in claimed(lambda: int(client.add(key, 1)), count):
            taken[r].append(index)
            time.sleep(jitter.random() * 0.004)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(ranks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return taken


def test_units_claimed_on_a_shared_store_go_to_exactly_one_rank() -> None:
    """Three ranks on one TCPStore (torch.distributed's, as under torchrun): every unit once, none twice, each
    rank's in increasing order; a second phase (another key) starts from 0 again."""
    server = dist.TCPStore("127.0.0.1", 0, 4, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    for key, count in (("run-0/phase-0", 40), ("run-0/phase-1", 7), ("run-1/phase-0", 0)):
        taken = _ranks_claim(count, 3, key, server)
        assert sorted(i for t in taken for i in t) == list(range(count)), key
        assert all(t == sorted(t) for t in taken)
    # claiming past the end on a spent counter gives nothing
    assert list(claimed(lambda: int(server.add("run-0/phase-1", 1)), 7)) == []


def test_the_queue_takes_every_cell_once_largest_unit_first_and_a_transfer_source_whole(tmp_path: Path) -> None:
    run = open_run(CONFIG, Shard(tmp_path / "shard.jsonl", known={}))
    _, rest = phases(grid(CONFIG))
    weights = Weights(forward_seconds(run), cell=0.01)
    order = queue(run, rest, weights)
    assert sorted(c.key for unit in order for c in unit) == sorted(c.key for c in rest)
    costs = {tuple(members): cost for cost, members in units(run, rest, weights)}
    by_key = {c.key: i for i, c in enumerate(rest)}
    in_order = [costs[tuple(by_key[c.key] for c in unit)] for unit in order]
    assert in_order == sorted(in_order, reverse=True) and in_order[0] > in_order[-1]
    for unit in order:
        sources = {c.source for c in unit if isinstance(c, TransferCell)}
        assert len(sources) <= 1 and (not sources or all(isinstance(c, TransferCell) for c in unit))
        if sources:  # the whole of that source's transfer cells
            assert len(unit) == len([c for c in rest if isinstance(c, TransferCell) and c.source in sources])
    assert largest_first([1.0, 3.0, 3.0, 2.0]) == [1, 2, 3, 0]


def test_the_fixed_part_of_a_cell_is_added_once_to_a_cell_that_runs_and_folds(tmp_path: Path) -> None:
    """Known answers: an attack cell's expected seconds are its forward passes plus ``cell``; a skipped cell's
    zero; a transfer cell's (no worst-case fold) its forward passes alone."""
    key = CleanCell.of(CONFIG, "vanilla-mlp").key  # recorded deterministic: its EoT cells are skipped
    run = open_run(CONFIG, Shard(tmp_path / "shard.jsonl", known={key: {"key": key, "random": False}}))
    forward = {"vanilla-mlp": 2e-6, "sdr-learnable": 5e-6, "noise-gaussian": 3e-6}
    weights, plain = Weights(forward, cell=0.25), Weights(forward)
    cells = grid(CONFIG)
    attack = next(
        c for c in cells if isinstance(c, AttackCell) and c.attack.name == "pgd" and c.defense != "vanilla-mlp"
    )
    passes = attack.attack.passes(run.num_classes) + 1 + CONFIG.judge_samples  # before its clean cell: random
    assert plain.expected(run, attack) == pytest.approx(forward[attack.defense] * CONFIG.n * passes)
    assert weights.expected(run, attack) == pytest.approx(plain.expected(run, attack) + 0.25)
    transfer = next(c for c in cells if isinstance(c, TransferCell))
    assert weights.expected(run, transfer) == plain.expected(run, transfer) > 0
    skipped = next(c for c in cells if isinstance(c, AttackCell) and c.skipped(run) is not None)
    assert skipped.defense == "vanilla-mlp" and skipped.attack.samples > 1
    assert weights.expected(run, skipped) == 0.0 == plain.expected(run, skipped)


def test_the_fixed_part_narrows_the_spread_of_seconds_per_expected_second(tmp_path: Path) -> None:
    """Cells that took their forward passes plus a fixed 0.05 s: with that fixed part the model is exact (spread
    1), without it cheap cells look 2x dearer or more than dear ones (spread > 2)."""
    run = open_run(CONFIG, ResultsFile(tmp_path / "results.jsonl"))
    weights = Weights({"vanilla-mlp": 2e-6, "sdr-learnable": 5e-5, "noise-gaussian": 3e-6}, cell=0.05)
    cells = [c for c in grid(CONFIG) if isinstance(c, AttackCell) and c.skipped(run) is None]
    judged = {"acc_single": 1.0, "acc_single_ci": [0, 1], "acc_ensemble": 1.0, "acc_ensemble_ci": [0, 1]}
    for cell in cells:
        run.store.add({"key": cell.key, "kind": AttackCell.kind, **judged, "seconds": weights.expected(run, cell)})
    exact, forward_only = agreement(run, cells, weights), agreement(run, cells, weights.forward)
    assert exact["cells"] == forward_only["cells"] == len(cells)
    assert exact["spread_90_10"] == pytest.approx(1.0) and exact["seconds_per_cost_p10_p50_p90"][1] == pytest.approx(1)
    assert forward_only["spread_90_10"] > 2.0


def test_fold_seconds_is_positive_and_draws_nothing(tmp_path: Path) -> None:
    run = open_run(CONFIG, ResultsFile(tmp_path / "results.jsonl"))
    state = torch.get_rng_state()
    assert fold_seconds(run, repeat=1) > 0
    assert torch.equal(torch.get_rng_state(), state)


def test_a_ranks_part_keeps_the_grid_first_breaker_whatever_order_it_computed_in(tmp_path: Path) -> None:
    """A part written out of grid order with each cell's position holds what one written in grid order holds;
    without positions (one process, grid order) the first one computed stays."""
    x, y = torch.zeros(4, 1, 2, 2), torch.arange(4)
    early, late = torch.full_like(x, 0.1), torch.full_like(x, 0.2)
    # cell "a" (grid position 1) breaks examples 0 and 1, cell "b" (position 2) breaks 1 and 2; "clean" breaks 3
    folds = {"clean": (0, None, x, "1110"), "a": (1, 0.1, early, "0011"), "b": (2, 0.1, late, "1001")}

    def part(name: str, order: list[str], positions: bool) -> dict[str, np.ndarray]:
        path = tmp_path / name / "worst-case.npz"
        for key in order:
            position, eps, x_adv, correct = folds[key]
            examples.update(
                path, key, key, eps, x, y, x_adv, correct, all_eps=(0.1, 0.2), position=position if positions else None
            )  # fmt: skip
        found = examples.read(path)
        assert found is not None
        return found

    grid_order, reversed_order = part("grid", ["clean", "a", "b"], False), part("rev", ["clean", "b", "a"], True)
    for array in ("x_adv", "broken_by", "robust"):
        np.testing.assert_array_equal(reversed_order[array], grid_order[array], err_msg=array)
    assert reversed_order["broken_by"][0].tolist() == ["a", "a", "b", "clean"]
    assert grid_order["broken_by"][1].tolist() == ["", "", "", "clean"]  # eps 0.2: only the clean cell's
    unordered = part("plain", ["clean", "b", "a"], False)
    assert unordered["broken_by"][0].tolist() == ["a", "b", "b", "clean"]  # without positions: first computed
