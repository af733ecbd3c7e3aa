"""Benchmark: the forward pass of a network with SAP-100 after every ReLU vs the dense network.

A batch of 100 inputs replicated 16 times (1,600 rows, each an independent SAP draw, as the EoT engine
runs it) through (a) the MLP 784-100-100-100-10 and (b) a ResNet-20-layout ``SmallResNet`` (3 units per
stage, widths 16/32/64) and (c) the zoo's ``SmallResNet`` (1 unit per stage, width 8), all on 28x28.
Target (issue 4): SAP with its default sampler (``method="auto"``) costs at most 3x the dense forward, for
(a) and (b), the paper's architectures. (c) is reported without a target: with 8 channels its convolutions
cost ~72 multiply-adds per activation, so SAP's fixed per-activation work (one uniform, a dozen elementwise
passes) weighs more there. The literal Algorithm-1 sampler (``method="direct"``: r inverse-CDF draws per
map) is timed beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from stochdef.adapters import replicate
from stochdef.defenses.models import SmallResNet, mlp
from stochdef.defenses.sap import apply_sap

from . import measure, target

NETWORKS: dict[str, Callable[[], nn.Module]] = {  # name -> builder
    "mlp 784-100-100-100-10": lambda: mlp((784, 100, 100, 100, 10)),
    "resnet-20 layout (3 units, width 16)": lambda: SmallResNet(units=3, width=16),
    "zoo resnet (1 unit, width 8)": lambda: SmallResNet(units=1, width=8),
}

TARGETED = ("mlp 784-100-100-100-10", "resnet-20 layout (3 units, width 16)")


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def run(*, device: str = "cpu", repeat: int = 7, quick: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    batch, draws = (10, 4) if quick else (100, 16)
    x = replicate(torch.rand(batch, 1, 28, 28, device=device), draws)
    timings: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    targets: dict[str, dict[str, Any]] = {}
    for name, make in NETWORKS.items():
        dense = make().to(device).eval()
        dense_t = measure(_forward(dense, x), repeat=repeat, device=device)
        timings[f"{name}: dense"] = dense_t
        for method in ("auto", "direct"):
            sap = apply_sap(dense, fraction=1.0, method=method).eval()
            stats = measure(_forward(sap, x), repeat=repeat, device=device)
            timings[f"{name}: SAP-100 ({method})"] = stats
            ratios[f"{name}: SAP-100 ({method}) / dense"] = stats["median"] / dense_t["median"]
        if name in TARGETED:
            targets[f"{name}: SAP-100 / dense"] = target(ratios[f"{name}: SAP-100 (auto) / dense"], 3.0, at_most=True)
    return {
        "config": {"batch": batch, "draws": draws, "rows": batch * draws, "fraction": 1.0, "pass": "forward"},
        "timings": timings,
        "ratios": ratios,
        "targets": targets,
    }
