"""Benchmark: interval bound propagation vs one forward pass (Agrawal, de Alfaro & Helmbold 2019, Section 4).

Target: ``interval_bounds`` costs at most 3x one forward pass of the same model on the same batch (the
paper reports 2-3x), for the paper's 512-512-512-10 MWD, ReLU and sigmoid nets on MNIST-sized inputs.
Both sides run without autograd (a certificate needs no gradient); the MWD forward is the fused one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from stochdef.defenses.intervals import interval_bounds
from stochdef.defenses.models import mlp
from stochdef.defenses.mwd import mwd_net
from stochdef.defenses.zoo.mwd import sigmoid_mlp

from . import measure, target

SIZES = (784, 512, 512, 512, 10)
BATCH = 100
EPS = 0.1

MODELS: dict[str, Callable[[tuple[int, ...]], nn.Module]] = {
    "mwd": lambda sizes: mwd_net(sizes),
    "relu": lambda sizes: mlp(sizes),
    "sigmoid": lambda sizes: sigmoid_mlp(sizes),
}


def run(*, device: str = "cpu", repeat: int = 7, quick: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    sizes = (784, 64, 64, 64, 10) if quick else SIZES
    batch = 8 if quick else BATCH
    x = torch.rand(batch, 1, 28, 28, device=device)
    timings: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    for name, make in MODELS.items():
        model = make(sizes).to(device).eval()

        def forward(model: nn.Module = model) -> None:
            with torch.no_grad():
                model(x)

        def bounds(model: nn.Module = model) -> None:
            interval_bounds(model, x, EPS)

        timings[f"{name} forward"] = measure(forward, repeat=repeat, device=device)
        timings[f"{name} interval_bounds"] = measure(bounds, repeat=repeat, device=device)
        ratios[f"{name} intervals / forward"] = (
            timings[f"{name} interval_bounds"]["median"] / timings[f"{name} forward"]["median"]
        )
    return {
        "config": {"sizes": list(sizes), "batch": batch, "eps": EPS, "grad": False},
        "timings": timings,
        "ratios": ratios,
        "targets": {name: target(value, 3.0, at_most=True) for name, value in ratios.items()},
    }
