"""Benchmark: a cell-heavy ``stochdef evaluate`` sweep on 1 and on 2 processes (target: >= 1.8x faster).

Both runs go through the same launcher, ``python -m torch.distributed.run --standalone --nproc-per-node K
-m stochdef evaluate ...``, one torch thread per process (``OMP_NUM_THREADS=1``), into a fresh folder, so
the wall times include the same start-up (imports, model loads) and no cell is reused. The sweep has many
mid-sized cells (four randomized and plain MNIST-5k defenses, FGSM and PGD from all four libraries, three
eps, naive and EoT, the transfer matrix; no indicators, whose one long cell per defense would dominate).
The result also says whether the two runs recorded the same cells (they must), the CPU seconds of each
run and the machine's load average before and after: on a shared machine the 2-process run cannot have
two free cores, and its wall time says more about the load than about the split.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import target

THRESHOLD = 1.8
SWEEP: tuple[str, ...] = (
    "--defense", "vanilla-mlp,sdr-learnable,noise-gaussian,adv-bnn", "--attack", "fgsm,pgd",
    "--eps", "0.1,0.2,0.3", "--samples", "1,4", "--examples", "200", "--steps", "10", "--judge-samples", "8",
    "--no-indicators",
)  # fmt: skip
QUICK: tuple[str, ...] = (
    "--defense", "vanilla-mlp,sdr-learnable", "--attack", "fgsm,pgd", "--library", "inhouse,torchattacks",
    "--eps", "0.1", "--samples", "1,2", "--examples", "20", "--steps", "2", "--judge-samples", "2",
    "--no-indicators", "--no-transfer",
)  # fmt: skip


def command(processes: int, out: Path, sweep: tuple[str, ...], device: str) -> list[str]:
    """The torchrun command line of the sweep on ``processes`` processes.

    Example:
        >>> command(2, Path("o"), ("--steps", "2"), "cpu")[3:6]
        ['--standalone', '--nproc-per-node=2', '-m']
    """
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [*launcher, "-m", "stochdef", "evaluate", "--out", str(out), "--device", device, *sweep]


def numbers(path: Path) -> dict[str, dict[str, Any]]:
    """The records of a results file without what equal runs may differ in (wall time, versions)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["key"]: {k: v for k, v in r.items() if k not in ("seconds", "versions")} for r in records}


def children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sweep_once(
    processes: int, sweep: tuple[str, ...], device: str, *, keep: Path | None = None
) -> tuple[float, float, dict[str, dict[str, Any]]]:
    """Wall seconds and CPU seconds of the sweep on ``processes`` processes, fresh folder, and its records
    (the results file is copied to ``keep`` when given)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cpu, start = children_cpu_seconds(), time.perf_counter()
        subprocess.run(command(processes, Path(tmp), sweep, device), check=True, env=env, capture_output=True)
        wall, cpu = time.perf_counter() - start, children_cpu_seconds() - cpu
        if keep is not None:
            shutil.copyfile(Path(tmp) / "results.jsonl", keep)
        return wall, cpu, numbers(Path(tmp) / "results.jsonl")


def cost_model(sweep: tuple[str, ...], results: Path, device: str) -> dict[str, Any]:
    """How well the schedule's expected seconds (this machine's :func:`..evaluate.grid.schedule.measure`) rank and
    size the cells of the one-process run recorded in ``results`` (:func:`..evaluate.grid.schedule.agreement`);
    ``forward_only``: the same without the fixed part per cell."""
    from ..cli import parse_args
    from ..cli.evaluate import build_from_args
    from ..evaluate.engine import open_run
    from ..evaluate.grid.cells import grid
    from ..evaluate.grid.schedule import agreement, measure
    from ..evaluate.store.results import ResultsFile

    config = build_from_args(parse_args(["evaluate", *sweep, "--device", device]))
    run = open_run(config, ResultsFile(results))
    weights = measure(run)
    return {**agreement(run, grid(config), weights), "forward_only": agreement(run, grid(config), weights.forward)}


def run(*, device: str = "cpu", repeat: int = 1, quick: bool = False) -> dict[str, Any]:
    sweep = QUICK if quick else SWEEP
    load_before = os.getloadavg()
    walls: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    records: dict[int, dict[str, dict[str, Any]]] = {}
    kept = Path(tempfile.mkdtemp()) / "results.jsonl"
    for _ in range(repeat):
        for processes in (1, 2):  # interleaved, so a change of load hits both
            wall, cpu, records[processes] = sweep_once(processes, sweep, device, keep=kept if processes == 1 else None)
            walls[processes].append(wall)
            cpus[processes].append(cpu)
    timings = {
        f"sweep, {p} process{'es' if p > 1 else ''}": {
            "median": sorted(w)[len(w) // 2], "min": min(w), "max": max(w), "repeat": repeat,
        }
        for p, w in walls.items()
    }  # fmt: skip
    one, two = (timings[name]["median"] for name in timings)
    ratio = one / two
    return {
        "config": {"sweep": list(sweep), "cells": len(records[1]), "threads_per_process": 1, "repeat": repeat},
        "timings": timings,
        "ratios": {"2 processes vs 1": round(ratio, 3)},
        "targets": {"speed-up with 2 processes": target(ratio, THRESHOLD)},
        "identical_cells": records[1] == records[2],
        # the split's costs against the one-process run's cell times (Spearman's rho; seconds per unit of cost)
        "cost_model": cost_model(sweep, kept, device),
        # CPU seconds of all processes (the launcher included): the work is the same, only spread over more cores
        "cpu_seconds": {
            f"{p} process{'es' if p > 1 else ''}": round(sorted(c)[len(c) // 2], 1) for p, c in cpus.items()
        },
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
