"""``torchrun -m stochdef evaluate``: cells split across ranks give the records of one process; a killed rank
resumes (with another number of ranks) without recomputing a finished cell; the split and the shards.

The runs use the shipped MNIST-5k checkpoints (loaded, never trained, so two ranks never train the same
model at once) on a small grid.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stochdef.evaluations.cli import evaluate as evaluate_cli
from stochdef.evaluations.evaluate import CleanCell, EvalConfig, TransferCell, compute, grid
from stochdef.evaluations.evaluate.distributed import launched, phases, rank_device
from stochdef.evaluations.evaluate.engine import open_run
from stochdef.evaluations.evaluate.grid.schedule import balance, forward_seconds, split
from stochdef.evaluations.evaluate.store.examples import read
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.evaluate.store.shards import Shard, leftover_shards, merge_shards, shard_path

OPTIONS = [
    "--defense", "vanilla-mlp,sdr-learnable", "--attack", "fgsm,pgd", "--library", "inhouse,torchattacks",
    "--eps", "0.05,0.1,0.15", "--samples", "1,4", "--examples", "60", "--steps", "5", "--judge-samples", "4",
    "--no-indicators",
]  # fmt: skip
CELLS = 2 + 2 * 2 * 3 * 2 * 2 + 2 * 2  # clean + attacks + transfer pairs
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _one_process(out: Path) -> list[str]:
    return [sys.executable, "-m", "stochdef", "evaluate", "--out", str(out), *OPTIONS]


def _torchrun(out: Path, ranks: int) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    return [*launcher, "-m", "stochdef", "evaluate", "--out", str(out), *OPTIONS]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _numbers(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each record without what may differ between equal runs (wall time, versions)."""
    return {r["key"]: {k: v for k, v in r.items() if k not in ("seconds", "versions")} for r in records}


@pytest.fixture(scope="module")
def one_process_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one")
    subprocess.run(_one_process(out), check=True, env=ENV, capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def one_process(one_process_out: Path) -> list[dict[str, Any]]:
    return _lines(one_process_out / "results.jsonl")


def _worst_case_files(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {path.name: read(path) for path in sorted(out.glob("worst-case*.npz"))}
    return {name: arrays for name, arrays in found.items() if arrays is not None}


def _same_worst_case(out: Path, reference: Path, *, exact: bool) -> None:
    """The worst-case files of ``out`` equal those of ``reference`` (``exact``: every array; else what does not
    depend on the order the cells were computed in: the examples no cell broke, the cells folded)."""
    got, want = _worst_case_files(out), _worst_case_files(reference)
    assert sorted(got) == sorted(want) == ["worst-case--sdr-learnable.npz", "worst-case--vanilla-mlp.npz"]
    for name, arrays in want.items():
        assert sorted(got[name]) == sorted(arrays)
        assert set(got[name]["keys"].tolist()) == set(arrays["keys"].tolist())
        assert not arrays["robust"].all()  # some example is broken: the fold has something to choose
        names = sorted(arrays) if exact else ["x", "y", "robust"]
        for array in names:
            np.testing.assert_array_equal(got[name][array], arrays[array], err_msg=f"{name}: {array}")


def test_two_ranks_give_the_cells_of_one_process(
    one_process: list[dict[str, Any]], one_process_out: Path, tmp_path: Path
) -> None:
    done = subprocess.run(_torchrun(tmp_path, 2), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = _lines(tmp_path / "results.jsonl")
    assert len(one_process) == CELLS
    assert [r["key"] for r in merged] == [r["key"] for r in one_process]  # same cells, same order
    assert _numbers(merged) == _numbers(one_process)
    # both ranks worked, each wrote its own shard (now merged and removed); rank 0 alone wrote the report
    assert "rank 0: phase 1" in done.stderr and "rank 1: phase 1" in done.stderr
    assert leftover_shards(tmp_path) == [] and not (tmp_path / "shards").exists()
    assert (tmp_path / "report.md").exists() and done.stdout.count("evaluated in") == 1
    _same_worst_case(tmp_path, one_process_out, exact=True)  # the ranks' parts folded "first to break"


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker process of ``rank`` started by the torchrun process ``launcher``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    return None


def _shard_records(out: Path) -> list[dict[str, Any]]:
    found = []
    for path in leftover_shards(out):
        with contextlib.suppress(FileNotFoundError):  # merged and removed meanwhile
            found += _lines(path)
    return found


def _kill_rank_one(launcher: subprocess.Popen[Any], out: Path) -> dict[str, dict[str, Any]]:
    """SIGKILL rank 1 once both clean cells and a few attack cells are in the shards; the records then."""
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and launcher.poll() is None:
        if len(_shard_records(out)) >= 8:  # both clean cells and a few attack cells are done
            victim = _rank_pid(launcher.pid, 1)
            if victim is not None:
                break
        time.sleep(0.005)
    assert victim is not None, "the run ended before a rank could be killed"
    records = {r["key"]: r for r in _shard_records(out)}
    os.kill(victim, signal.SIGKILL)
    return records


def test_a_killed_rank_resumes_with_another_number_of_ranks(
    one_process: list[dict[str, Any]], one_process_out: Path, tmp_path: Path
) -> None:
    launcher = subprocess.Popen(_torchrun(tmp_path, 2), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_rank_one(launcher, tmp_path)
    assert launcher.wait(timeout=120) != 0  # torchrun stops the other rank and fails
    partial = {r["key"]: r for r in _shard_records(tmp_path)}  # every shard parses: nothing half-written
    assert 8 <= len(partial) < CELLS, "the run was not killed mid-way"
    assert not (tmp_path / "results.jsonl").exists()

    resumed = subprocess.run(_one_process(tmp_path), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{len(partial)} already done" in resumed.stderr
    final = _lines(tmp_path / "results.jsonl")
    assert _numbers(final) == _numbers(one_process)
    by_key = {r["key"]: r for r in final}
    for key, record in partial.items():  # finished cells were kept as they were (same seconds), not recomputed
        assert by_key[key] == record
    assert leftover_shards(tmp_path) == [] and not (tmp_path / "shards").exists()
    _same_worst_case(tmp_path, one_process_out, exact=False)  # the killed run's parts were folded, not lost


def test_every_option_passes_through_torchrun_unchanged() -> None:
    """torchrun parses the options after ``-m MODULE`` too: each one of evaluate's must reach stochdef as given
    (``--n`` would not: torchrun takes it for an abbreviation of its own options)."""
    import argparse

    from torch.distributed.run import get_args_parser

    parser = argparse.ArgumentParser()
    evaluate_cli.add_arguments(parser)
    spellings = [s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")]
    assert "--examples" in spellings and "--n" in spellings
    for option in spellings:
        if option == "--n":  # the alias for direct calls
            continue
        args = ["-m", "stochdef", "evaluate", option, "1"]
        parsed = get_args_parser().parse_args(["--nproc-per-node", "2", *args])
        assert parsed.training_script_args == args[2:], option
    # --n and --examples are the same option
    assert parser.parse_args(["--n", "7"]).n == parser.parse_args(["--examples", "7"]).n == 7


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_balance_is_within_grahams_bound_of_the_best_split(ranks: int) -> None:
    """Longest processing time first: every index once, makespan <= (4/3 - 1/(3m)) x the optimum
    (brute force over every assignment of 7 costs)."""
    rng = random.Random(ranks)
    for _ in range(20):
        costs = [rng.choice([0.0, 1.0, 2.5, 7.0, 13.0]) * rng.random() for _ in range(7)]
        given = balance(costs, ranks)
        assert sorted(i for g in given for i in g) == list(range(len(costs)))
        makespan = max(sum(costs[i] for i in g) for g in given)
        best = min(
            max(sum(c for c, r in zip(costs, owners, strict=True) if r == rank) for rank in range(ranks))
            for owners in itertools.product(range(ranks), repeat=len(costs))
        )
        assert makespan <= (4 / 3 - 1 / (3 * ranks)) * best + 1e-12
    with pytest.raises(ValueError, match="ranks"):
        balance([1.0], 0)


def test_split_gives_every_cell_to_one_rank_and_keeps_a_transfer_source_together(tmp_path: Path) -> None:
    config = EvalConfig(
        defenses=("vanilla-mlp", "sdr-learnable", "noise-gaussian"), attacks=("fgsm", "pgd"),
        libraries=("inhouse", "art"), eps=(0.1, 0.2), samples=(1, 8), n=10, steps=3, judge_samples=2,
    )  # fmt: skip
    key = CleanCell.of(config, "vanilla-mlp").key
    run = open_run(config, Shard(tmp_path / "shard.jsonl", known={key: {"key": key, "random": False}}))
    clean, rest = phases(grid(config))
    assert all(isinstance(c, CleanCell) for c in clean) and not any(isinstance(c, CleanCell) for c in rest)
    weights = forward_seconds(run)
    assert set(weights) == set(config.defenses) and min(weights.values()) > 0
    for ranks in (1, 2, 3, 5):
        given = split(run, rest, ranks, weights)
        assert sorted(c.key for g in given for c in g) == sorted(c.key for c in rest)
        for g in given:  # each rank keeps the order of the grid
            assert [c.key for c in g] == [c.key for c in rest if c in g]
        owner = {c.key: rank for rank, g in enumerate(given) for c in g}
        for source in config.defenses:
            sources = {owner[c.key] for c in rest if isinstance(c, TransferCell) and c.source == source}
            assert len(sources) == 1
    # the same split whenever it is asked for (every rank computes it for itself)
    assert split(run, rest, 3, weights) == split(run, rest, 3, weights)


def test_merge_keeps_the_stores_record_and_removes_the_shards(tmp_path: Path) -> None:
    store = ResultsFile(tmp_path / "results.jsonl")
    store.add({"key": "a", "v": 1})
    ResultsFile(shard_path(tmp_path, 0)).add({"key": "a", "v": 2})  # merged before a kill removed the shard
    ResultsFile(shard_path(tmp_path, 3)).add({"key": "b", "v": 3})
    assert merge_shards(store, tmp_path) == 1
    assert [(r["key"], r["v"]) for r in ResultsFile(tmp_path / "results.jsonl")] == [("a", 1), ("b", 3)]
    assert leftover_shards(tmp_path) == [] and not (tmp_path / "shards").exists()
    assert merge_shards(store, tmp_path) == 0


def test_a_shard_writes_its_own_records_and_reads_the_run(tmp_path: Path) -> None:
    shard = Shard(shard_path(tmp_path, 1), known={"a": {"key": "a", "v": 1}})
    shard.add({"key": "b", "v": 2})
    assert "a" in shard and shard.get("a") == {"key": "a", "v": 1} and shard.get("c") is None
    assert [r["key"] for r in shard.own()] == ["b"]
    assert [r["key"] for r in ResultsFile(shard.path)] == ["b"]


def test_rank_device_and_launch_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rank_device("cuda", 2, gpus=4) == "cuda:2" and rank_device("cuda", 5, gpus=4) == "cuda:1"
    assert rank_device("cpu", 2) == "cpu" and rank_device("cuda:3", 0, gpus=4) == "cuda:3"
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()
    monkeypatch.delenv("WORLD_SIZE")
    assert not launched()


def test_a_transfer_cell_does_not_depend_on_the_cells_before_it(tmp_path: Path) -> None:
    """A transfer cell made its source's examples or found them cached (a resumed or split run): same record."""
    config = EvalConfig(
        defenses=("vanilla-mlp", "noise-gaussian"), attacks=("fgsm",), libraries=("inhouse",), eps=(0.1,),
        samples=(1, 2), n=100, steps=2, judge_samples=2, indicators=False,
    )  # fmt: skip

    def transfer_records(order: int, folder: str) -> dict[str, dict[str, Any]]:
        run = open_run(config, ResultsFile(tmp_path / folder / "results.jsonl"))
        cells = grid(config)
        for cell in cells:
            if isinstance(cell, CleanCell):
                compute(run, cell)
        transfers = [c for c in cells if isinstance(c, TransferCell) and c.source == "noise-gaussian"]
        for cell in transfers[::order]:
            compute(run, cell)
        return _numbers([r for r in run.store if r["kind"] == TransferCell.kind])

    assert transfer_records(1, "forward") == transfer_records(-1, "backward")


def test_torchrun_restarts_a_killed_rank_and_the_run_completes(
    one_process: list[dict[str, Any]], one_process_out: Path, tmp_path: Path
) -> None:
    """With ``--max-restarts``, torchrun restarts the ranks after a kill; they resume from the shards."""
    command = _torchrun(tmp_path, 2)
    command.insert(command.index("-m", 2), "--max-restarts=1")
    launcher = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = _kill_rank_one(launcher, tmp_path)
    _, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, stderr[-3000:]
    # the restarted attempt found at least what was recorded before the kill, and not everything
    assert len(partial) <= int(re.findall(r"(\d+) already done", stderr)[-1]) < CELLS
    final = _lines(tmp_path / "results.jsonl")
    assert _numbers(final) == _numbers(one_process)
    by_key = {r["key"]: r for r in final}
    assert all(by_key[key] == record for key, record in partial.items())
    _same_worst_case(tmp_path, one_process_out, exact=False)


def test_own_models_and_samples_auto_are_refused_under_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    evaluate_cli.add_arguments(parser)
    args = parser.parse_args(["--samples", "auto", "--out", str(tmp_path), "--defense", "vanilla-mlp"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="samples auto run in one process"):
        evaluate_cli.main(args)
    assert not (tmp_path / "results.jsonl").exists()


BLOCKED = [
    "--defense", "sdr-learnable", "--attack", "pgd", "--library", "inhouse", "--eps", "0.1", "--samples", "4",
    "--examples", "60", "--steps", "5", "--judge-samples", "4", "--no-indicators", "--block", "16",
]  # fmt: skip


def test_blocks_of_one_long_cell_split_across_ranks_give_the_cell_of_one_process(tmp_path: Path) -> None:
    """One attack cell (fewer cells than ranks): its four blocks are shared by two ranks, and the combined
    cell, its worst-case file included, is the one a single process computes block by block."""
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run(
        [sys.executable, "-m", "stochdef", "evaluate", "--out", str(one), *BLOCKED],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*launcher, "-m", "stochdef", "evaluate", "--out", str(two), *BLOCKED],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # the attack phase had 4 units (the blocks of rows 0-16, 16-32, 32-48, 48-60), claimed by both ranks (each
    # takes one at once, then the next whenever it is free: two each unless one rank is held up)
    counts = {rank: int(n) for rank, n in re.findall(r"rank (\d): phase 1, (\d) of 4 cells", done.stderr)}
    assert sorted(counts) == ["0", "1"] and sum(counts.values()) == 4 and min(counts.values()) >= 1
    want, got = _lines(one / "results.jsonl"), _lines(two / "results.jsonl")
    assert [r["kind"] for r in got] == ["clean", "attack"]  # no block record is left in the store
    assert _numbers(got) == _numbers(want)
    attack = got[1]
    assert len(attack["correct"]) == 60 and attack["acc_ensemble"] == attack["correct"].count("1") / 60
    assert not (two / "shards").exists()
    for name in ("worst-case.npz",):
        ref, out = read(one / name), read(two / name)
        assert ref is not None and out is not None and sorted(out) == sorted(ref)
        assert len(ref["keys"]) == 1 + 4  # the clean cell and the attack cell's four blocks
        assert not ref["robust"].all()
        for array in ref:
            np.testing.assert_array_equal(out[array], ref[array], err_msg=array)
