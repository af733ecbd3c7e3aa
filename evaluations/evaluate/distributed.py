"""``torchrun -m stochdef evaluate ...``: an evaluation's cells split across the ranks of torch.distributed.

Every cell is independent given two things: its seed, fixed by the run's seed and its key
(:func:`.store.results.cell_seed`), and the clean cells' records (an attack cell asks whether its defense is
random). So a run goes in two phases, clean cells then the rest; in each, every rank lists the cells not yet
done in the same units and order, largest expected time first (:func:`.grid.schedule.queue`), and takes the
next unit from a counter on torch.distributed's store whenever it is free (:func:`.grid.schedule.claimed`:
each unit goes to exactly one rank; a rank that a long cell holds up takes fewer). Each rank computes on its own
device (``LOCAL_RANK`` picks the GPU of a ``cuda`` run) and writes to its own shard (:mod:`.store.shards`);
which rank computes a cell changes no number, since each cell is seeded by its key. At the end of a phase the
ranks exchange their records (``all_gather_object``), so every rank sees every clean record. Rank 0 then
writes the one ``results.jsonl`` and the shards are removed. A 1-rank and an N-rank run of one configuration give the
same records (except ``seconds``). With ``--block`` the units of the second phase are the blocks of each
attack cell (:mod:`.store.blocks`), so that the ranks also share a long cell; rank 0 combines them into the cell.
At the end rank 0 folds the ranks' parts of the worst-case files into the one a single process writes
(:func:`.store.examples.fold_parts`; each part keeps per example the first cell in grid order that broke it).
Under a process group the caller made (no store of ours to count on) the units are dealt out in advance
instead (:func:`.grid.schedule.split`, the same on every rank).

Resuming: a killed rank (torchrun then stops the others) leaves whole shards; the next run, with any
number of ranks or none, merges them into ``results.jsonl`` before it lists the remaining cells; so does
the attempt torchrun restarts under ``--max-restarts``. The output folder must be one file system that
every rank sees (on several nodes, a shared one).

Process groups: NCCL for CUDA tensors and gloo for CPU ones (``"cpu:gloo,cuda:nccl"``) on GPUs, gloo alone
on CPU; the records travel on a separate gloo group. The collectives wait up to :data:`TIMEOUT`, since a
rank may wait for a long cell of another.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .checks import check_out
from .compute.run import Run
from .config import EvalConfig
from .engine import compute, open_run, prepare, retire_stale
from .grid.cells import AttackCell, Cell, CleanCell, grid
from .grid.schedule import Weights, claimed, measure, queue, split
from .store.examples import fold_parts
from .store.results import ResultsFile, is_transient
from .store.shards import Shard, merge_shards, remove_shard, shard_path, worst_case_parts

logger = logging.getLogger(__name__)

TIMEOUT = timedelta(hours=24)


def launched() -> bool:
    """True under a launcher that started more than one process (``WORLD_SIZE`` > 1: torchrun, SLURM + torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str, local_rank: int, gpus: int | None = None) -> str:
    """The device of a rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` (modulo the node's ``gpus``, so that more
    ranks than GPUs share them in turn); any other device (``cpu``, ``cuda:1``) stays as given.

    Example:
        >>> rank_device("cuda", 3, 8), rank_device("cuda", 3, 2), rank_device("cpu", 3), rank_device("cuda:0", 3)
        ('cuda:3', 'cuda:1', 'cpu', 'cuda:0')
    """
    if device != "cuda":
        return device
    count = torch.cuda.device_count() if gpus is None else gpus
    return f"cuda:{local_rank % count if count else local_rank}"


def phases(everything: list[Cell]) -> list[list[Cell]]:
    """The cells in the order the ranks may compute them: the clean cells, whose records the others read,
    then all the rest."""
    return [
        [c for c in everything if isinstance(c, CleanCell)],
        [c for c in everything if not isinstance(c, CleanCell)],
    ]


def _init(device: str) -> tuple[Any, bool, Any]:
    """Join the default process group (unless the caller did) and make the gloo group the records travel on;
    also the store the ranks count their claims on (None in a group the caller made)."""
    if dist.is_initialized():
        return dist.new_group(backend="gloo", timeout=TIMEOUT), False, None
    store, rank, world = _rendezvous()
    backend = "cpu:gloo,cuda:nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend, timeout=TIMEOUT, store=dist.PrefixStore("default_pg", store), rank=rank, world_size=world
    )
    return dist.new_group(backend="gloo", timeout=TIMEOUT), True, dist.PrefixStore("stochdef/claims", store)


def _rendezvous() -> tuple[Any, int, int]:
    """``(store, rank, world size)``. Under torchrun, the agent's store seen through a prefix of this attempt: with
    ``--max-restarts`` the agent's store outlives a failed attempt (torch 2.14), and gloo would otherwise dial the
    addresses its dead ranks left there and fail. Elsewhere (no agent store) torch's own ``env://`` rendezvous."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        store, rank, world = next(dist.rendezvous("env://", timeout=TIMEOUT))
        return store, rank, world
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False, timeout=TIMEOUT
    )
    return dist.PrefixStore(f"stochdef/attempt-{attempt}", agent), rank, world


def evaluate(
    config: EvalConfig, *, out: Path, progress: bool = True, recompute_stale: bool = False
) -> ResultsFile | None:
    """This rank's part of the evaluation; on rank 0 the merged store (``out/results.jsonl``), else None.

    Every rank must call it with the same arguments (torchrun runs the same command on each). Rank 0 locks
    ``results.jsonl`` for the run and checks the recorded cells' provenance as a one-process run does
    (``recompute_stale``: see :func:`.engine.retire_stale`).
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    config = replace(config, device=rank_device(config.device, local_rank))
    if torch.device(config.device).type == "cuda":
        torch.cuda.set_device(torch.device(config.device))
    group, created, claims = _init(config.device)
    try:
        return _evaluate(config, Path(out), group, claims, progress=progress, recompute_stale=recompute_stale)
    finally:
        dist.destroy_process_group(group)
        if created:
            dist.destroy_process_group()


def _evaluate(
    config: EvalConfig, out: Path, group: Any, claims: Any, *, progress: bool, recompute_stale: bool
) -> ResultsFile | None:
    rank, world = dist.get_rank(), dist.get_world_size()
    inputs = prepare(config)  # a bad configuration fails on every rank before any file is touched
    with contextlib.ExitStack() as stack:
        store: ResultsFile | None = None
        run: Run | None = None
        box: list[Any] = [None]
        if rank == 0:
            out = check_out(out)
            store = stack.enter_context(ResultsFile(out / "results.jsonl", lock=True))
            run = open_run(config, store, inputs)
            # shards of a killed run, of any number of ranks (their worst-case parts folded in grid order)
            merge_shards(store, out, order=[cell.key for cell in grid(config)])
            # rank 0 loads every model (a bad checkpoint fails now; a missing one is trained once) and times it
            # and a cell's fixed part: the weights of the expected times
            weights = measure(run)
            retire_stale(run, grid(config), out, recompute_stale=recompute_stale)
            number = claims.add("runs", 1) if claims is not None else 0  # this run's counters (a store may outlive it)
            box = [({record["key"]: record for record in store}, weights, number)]
        dist.broadcast_object_list(box, src=0, group=group)  # after the merge: no rank reads a leftover shard
        done, weights, number = box[0]
        shard = Shard(shard_path(out, rank), known=done)
        if run is None:
            run = open_run(config, shard, inputs)
        else:
            run.store = shard
        everything = grid(config)
        run.order = {cell.key: index for index, cell in enumerate(everything)}  # ranks compute out of grid order
        if rank == 0:
            logger.info("%d cells, %d already done, %d ranks", len(everything), len(done), world)
        for phase_number, phase in enumerate(phases(everything)):
            todo = [unit for cell in phase if cell.key not in shard for unit in _units(run, cell, shard)]
            if claims is None:  # a group the caller made: no counter, the units dealt out in advance
                mine: Iterable[Cell] = split(run, todo, world, weights)[rank]
            else:
                mine = _claimed(run, todo, weights, claims, f"run-{number}/phase-{phase_number}")
            computed = 0
            for cell in tqdm(mine, desc=f"evaluate (phase {phase_number + 1}/2)", disable=not progress or rank):
                compute(run, cell)
                computed += 1
            device = config.device
            logger.info("rank %d: phase %d, %d of %d cells on %s", rank, phase_number, computed, len(todo), device)
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, list(shard.own()), group=group)
            for records in gathered:
                for record in records:
                    shard.known.setdefault(record["key"], record)
            if store is not None:
                _combine_blocks(run, shard, phase)
        if store is not None:  # in the order of the cells, as a one-process run writes them
            order = run.order
            new = [r for r in shard.known.values() if r["key"] not in store and not is_transient(r)]
            store.extend(sorted(new, key=lambda r: order.get(r["key"], len(order))))
            fold_parts(out, worst_case_parts(out), store, list(order))  # "first to break" in grid order
        dist.barrier(group=group)  # results.jsonl holds every record: the shards may go
        remove_shard(shard.path)
        return store


def _claimed(run: Run, todo: list[Cell], weights: Weights, claims: Any, key: str) -> Iterator[Cell]:
    """The cells of the units of ``todo`` that this rank claims on the counter ``key`` of the store ``claims``,
    largest expected time first."""
    units = queue(run, todo, weights)
    for index in claimed(lambda: int(claims.add(key, 1)), len(units)):
        yield from units[index]


def _units(run: Run, cell: Cell, shard: Shard) -> list[Cell]:
    """The work of a cell not done: the cell, or (``--block``) those of its blocks not done."""
    blocks = cell.blocks(run) if isinstance(cell, AttackCell) else None
    return [cell] if blocks is None else [block for block in blocks if block.key not in shard]


def _combine_blocks(run: Run, shard: Shard, phase: list[Cell]) -> None:
    """Rank 0: record every attack cell of ``phase`` whose blocks are all done, from their records (row order)."""
    for cell in phase:
        if not isinstance(cell, AttackCell):
            continue
        blocks = cell.blocks(run)
        if blocks is None or cell.key in shard:
            continue
        partials = [shard.known[block.key] for block in blocks]
        seconds = sum(float(p["seconds"]) for p in partials)
        run.record(cell.key, cell.kind, cell.combined(run, partials), seconds, cell.defenses())
        record = shard.get(cell.key)
        if record is not None:
            shard.known[cell.key] = record
