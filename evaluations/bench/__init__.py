"""``stochdef bench TARGET``: benchmarks that print medians and ratios and write JSON.

Performance targets are measured here, never by timed tests. Each target module exposes
``run(*, device, repeat, quick) -> dict`` whose result holds ``timings`` (name -> seconds statistics),
``ratios`` and ``targets`` (name -> {"value", "threshold", "met"}). Medians and ratios come from one run.
"""

from __future__ import annotations

import importlib
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stochdef.defenses.files import atomic_write_json

TARGETS: dict[str, str] = {
    "eot": "EoT gradient: batched vs a Python loop of single draws vs torchattacks EOTPGD; per-call vs replicated path",
    "layers": "forward+backward of per-example random-weight layers vs nn.Linear / nn.Conv2d (<= 3x)",
    "pgd": "in-house EoT-PGD (samples=80) vs torchattacks EOTPGD (eot_iter=80) on a randomized MLP, per step",
    "sap": "forward with SAP-100 after every ReLU vs the dense network, batch 100 x 16 draws (<= 3x)",
    "intervals": "interval bound propagation vs one forward pass, MWD / ReLU / sigmoid 512-512-512-10 (<= 3x)",
    "evaluate": "the default `stochdef evaluate` end to end, fresh results folder (<= 180 s on a 2-core CPU)",
    "distributed": "a cell-heavy `stochdef evaluate` sweep under torchrun, 2 processes vs 1, one thread each (>= 1.8x)",
}


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work so timings measure the work itself."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], *, repeat: int = 7, device: str = "cpu") -> dict[str, float]:
    """Time ``repeat`` calls of ``fn`` with ``torch.utils.benchmark.Timer``; return median, min, max, quartiles (s).

    The timer runs on torch's current thread count (its own default is one thread) and synchronizes CUDA around
    each timed run. Each repetition is one ``Timer.timeit(number=1)``, which first calls ``fn`` twice untimed
    (the timer's warm-up): a benchmark costs about three times the time it reports.

    >>> stats = measure(lambda: sum(range(1000)), repeat=3)
    >>> stats["min"] <= stats["median"] <= stats["max"], stats["repeat"]
    (True, 3)
    """
    from torch.utils import benchmark as torch_benchmark

    del device  # the timer synchronizes whatever accelerator is present
    timer = torch_benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    times = [timer.timeit(number=1).median for _ in range(repeat)]
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "q1": q[0],
        "q3": q[2],
        "repeat": repeat,
    }


def target(value: float, threshold: float, *, at_most: bool = False) -> dict[str, Any]:
    """A performance target: ``value >= threshold`` (or ``value <= threshold`` with ``at_most=True``)."""
    met = value <= threshold if at_most else value >= threshold
    return {"value": round(value, 3), "threshold": threshold, "op": "<=" if at_most else ">=", "met": bool(met)}


def device_name(device: str) -> str:
    """A human-readable name of the device (the GPU's name, or the CPU's)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run(name: str, *, device: str = "cpu", repeat: int | None = None, quick: bool = False) -> dict[str, Any]:
    """Run benchmark ``name`` and return its result with the environment recorded."""
    if name not in TARGETS:
        raise ValueError(f"benchmark must be one of {sorted(TARGETS)}, got {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    kwargs = {} if repeat is None else {"repeat": repeat}  # None: the benchmark's own default
    result: dict[str, Any] = module.run(device=device, quick=quick, **kwargs)
    result.update(
        benchmark=name,
        description=TARGETS[name],
        device=device,
        device_name=device_name(device),
        torch=torch.__version__,
        python=platform.python_version(),
    )
    return result


def save(result: dict[str, Any], out: Path) -> Path:
    """Write ``result`` as JSON to ``out`` (a file, or a folder to hold ``bench-<name>-<device>.json``)."""
    path = out if out.suffix == ".json" else out / f"bench-{result['benchmark']}-{result['device'].split(':')[0]}.json"
    atomic_write_json(path, result)
    return path


def format_result(result: dict[str, Any]) -> str:
    """A plain-text table of the timings, ratios and targets."""
    lines = [f"{result['benchmark']} on {result['device_name']} ({result['device']})"]
    for name, stats in result["timings"].items():
        lines.append(f"  {name:<44} median {stats['median'] * 1e3:10.2f} ms  (min {stats['min'] * 1e3:.2f})")
    for name, value in result.get("ratios", {}).items():
        lines.append(f"  ratio {name:<38} {value:8.2f}x")
    for name, t in result.get("targets", {}).items():
        lines.append(f"  target {name:<37} {t['value']} {t['op']} {t['threshold']}: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)
