"""Benchmark: forward+backward through a layer whose every row draws its own weights, vs the plain layer.

Each case is ``(name, make_layer, make_reference, input_shape)``; family modules' layers are added to
:data:`CASES`. The ``gaussian_*`` cases time the shared per-example sampling maths alone. The
Gaussian-weight layers (SDR, Adv-BNN, RNW; linear and convolution) are timed with all three samplers
(:mod:`stochdef.defenses.sampling`): ``[weights]``, every weight drawn per row (strict independence;
linear: ``batch * out * in`` normals, memory-bound like DropConnect's masks; convolution: a kernel per
row, one grouped convolution), ``[flipout]``, one noise matrix per call and random signs per row (an
exact draw per row, two matrix products), and ``[local]``, local reparameterization (the fast path the
EoT engine takes to average draws; a convolution takes ``[weights]`` for it).

Targets: a layer's default single-draw sampler (``LINEAR_DEFAULT`` / ``CONV_DEFAULT``) at most 4x the
plain layer of the same shape; every other case at most 3x (the original target of per-example layers).
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
from stochdef.defenses.sampling import CONV_DEFAULT, LINEAR_DEFAULT, SAMPLERS
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
LINEAR_LAYERS: dict[str, Callable[[str], nn.Module]] = {  # the Gaussian-weight linear layers, by sampler
    "SDRLinear learnable 784->100": lambda sampler: SDRLinear(784, 100, sampler=sampler),
    "SDRLinear decay 784->100": lambda sampler: SDRLinear(784, 100, mode="decay", sampler=sampler),
    "BayesLinear 784->100": lambda sampler: BayesLinear(784, 100, prior_std=0.05, sampler=sampler),
    "RNW 784->100": lambda sampler: RandomNoisyWeights(nn.Linear(784, 100), std=0.05, sampler=sampler),
}
CONV_LAYERS: dict[str, Callable[[str], nn.Module]] = {  # the Gaussian-weight convolutions, by sampler
    "BayesConv2d 16->32 3x3": lambda sampler: BayesConv2d(16, 32, 3, padding=1, prior_std=0.05, sampler=sampler),
    "RNW conv 16->32 3x3": lambda sampler: RandomNoisyWeights(
        nn.Conv2d(16, 32, 3, padding=1), std=0.05, sampler=sampler
    ),
}
HEAD = "BayesLinear 1568->128 (adv-bnn's head)"  # the small CNN's hidden layer on 28x28 input, batch 100
DEFAULTS: set[str] = {f"{name} [{LINEAR_DEFAULT}]" for name in [*LINEAR_LAYERS, HEAD]} | {
    f"{name} [{CONV_DEFAULT}]" for name in CONV_LAYERS
}
CASES += [
    (f"{name} [{sampler}]", partial(make, sampler), lambda: nn.Linear(784, 100), LINEAR_SHAPE)
    for name, make in LINEAR_LAYERS.items()
    for sampler in SAMPLERS
]
CASES += [
    (
        f"{HEAD} [{sampler}]",
        partial(BayesLinear, 1568, 128, prior_std=0.05, sampler=sampler),
        lambda: nn.Linear(1568, 128),
        (100, 1568),
    )
    for sampler in SAMPLERS
]
CASES += [
    (f"{name} [{sampler}]", partial(make, sampler), lambda: nn.Conv2d(16, 32, 3, padding=1), CONV_SHAPE)
    for name, make in CONV_LAYERS.items()
    for sampler in SAMPLERS
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
    defaults = {f"{name} / plain" for name in DEFAULTS}
    return {
        "config": {
            "batch_linear": LINEAR_SHAPE[0],
            "batch_conv": CONV_SHAPE[0],
            "pass": "forward+backward",
            "default_samplers": {"linear": LINEAR_DEFAULT, "conv": CONV_DEFAULT},
        },
        "timings": timings,
        "ratios": ratios,
        "targets": {
            name: target(value, 4.0 if name in defaults else 3.0, at_most=True) for name, value in ratios.items()
        },
    }
