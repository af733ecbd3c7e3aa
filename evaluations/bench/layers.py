"""Benchmark: forward+backward through a layer whose every row draws its own weights, vs the plain layer.

Target (issue: stochastic-weight defenses): at most 3x ``nn.Linear`` / ``nn.Conv2d`` at the same batch
size on a CPU. Each case is ``(name, make_layer, make_reference, input_shape)``; family modules' layers
are added to :data:`CASES`. The ``gaussian_*`` cases time the shared per-example sampling maths alone.
The Gaussian-weight linear layers (SDR, Adv-BNN, RNW) are timed with both samplers
(:mod:`stochdef.defenses.sampling`): ``[weights]``, every weight drawn per row (the papers' model and the
layers' default: ``batch * out * in`` normals, memory-bound like DropConnect's masks), and ``[local]``,
local reparameterization (the fast path the EoT engine takes to average draws).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from stochdef.defenses.bayes_layers import BayesConv2d, BayesLinear
from stochdef.defenses.dropconnect import DropConnectLinear
from stochdef.defenses.functional import gaussian_conv2d, gaussian_linear
from stochdef.defenses.sampling import SAMPLERS
from stochdef.defenses.sap_baselines import RandomNoisyWeights
from stochdef.defenses.sdr import SDRLinear

from . import measure, target


class _GaussianLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_linear(x, self.weight, 0.1 * self.weight.abs(), self.bias, None)


class _GaussianConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.padding  # nn.Conv2d stores a str or a tuple of ints; gaussian_conv2d takes a str or a pair
        padding = pad if isinstance(pad, str) else (pad[0], pad[1])
        return gaussian_conv2d(x, self.weight, 0.1 * self.weight.abs(), self.bias, None, padding=padding)


Case = tuple[str, Callable[[], nn.Module], Callable[[], nn.Module], tuple[int, ...]]

LINEAR_SHAPE = (128, 784)
CONV_SHAPE = (64, 16, 28, 28)

CASES: list[Case] = [
    ("gaussian_linear 784->100", lambda: _GaussianLinear(784, 100), lambda: nn.Linear(784, 100), LINEAR_SHAPE),
    (
        "gaussian_conv2d 16->32 3x3",
        lambda: _GaussianConv2d(16, 32, 3, padding=1),
        lambda: nn.Conv2d(16, 32, 3, padding=1),
        CONV_SHAPE,
    ),
    # Exact per-example masks draw batch*out*in Bernoullis: memory-bound, far above 3x nn.Linear's GEMM.
    ("DropConnect p=0.2 784->100", lambda: DropConnectLinear(784, 100), lambda: nn.Linear(784, 100), LINEAR_SHAPE),
]
SAMPLED: dict[str, Callable[[str], nn.Module]] = {  # the Gaussian-weight linear layers, by sampler
    "SDRLinear learnable 784->100": lambda sampler: SDRLinear(784, 100, sampler=sampler),
    "SDRLinear decay 784->100": lambda sampler: SDRLinear(784, 100, mode="decay", sampler=sampler),
    "BayesLinear 784->100": lambda sampler: BayesLinear(784, 100, prior_std=0.05, sampler=sampler),
    "RNW 784->100": lambda sampler: RandomNoisyWeights(nn.Linear(784, 100), std=0.05, sampler=sampler),
}
CASES += [
    (f"{name} [{sampler}]", partial(make, sampler), lambda: nn.Linear(784, 100), LINEAR_SHAPE)
    for name, make in SAMPLED.items()
    for sampler in SAMPLERS
]
CASES += [  # Adv-BNN (defenses/bayes_layers.py): every row its own kernel
    (
        "BayesConv2d 16->32 3x3",
        lambda: BayesConv2d(16, 32, 3, padding=1, prior_std=0.05),
        lambda: nn.Conv2d(16, 32, 3, padding=1),
        CONV_SHAPE,
    ),
]


def _step(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        layer.zero_grad(set_to_none=True)
        xr = x.detach().requires_grad_(True)
        layer(xr).square().mean().backward()

    return run


def run(*, device: str = "cpu", repeat: int = 7, quick: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    timings: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    for name, make, make_ref, shape in CASES:
        if quick:
            shape = (8, *shape[1:])
        x = torch.rand(shape, device=device)
        ours = measure(_step(make().to(device), x), repeat=repeat, device=device)
        ref = measure(_step(make_ref().to(device), x), repeat=repeat, device=device)
        timings[f"{name} (per-example draws)"] = ours
        timings[f"{name} (plain reference)"] = ref
        ratios[f"{name} / plain"] = ours["median"] / ref["median"]
    return {
        "config": {"batch_linear": LINEAR_SHAPE[0], "batch_conv": CONV_SHAPE[0], "pass": "forward+backward"},
        "timings": timings,
        "ratios": ratios,
        "targets": {name: target(value, 3.0, at_most=True) for name, value in ratios.items()},
    }
