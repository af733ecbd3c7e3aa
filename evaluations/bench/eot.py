"""Benchmark: the batched EoT gradient against the two ways people average draws by hand.

On the SDR paper's 784-100-100-100-10 ReLU MLP with per-example Gaussian weights (SDR-Learnable
layers, every weight and bias sigma set to :data:`REPRESENTATIVE_STD`), batch 100, 80 draws:
(a) :func:`stochdef.adapters.eot_gradient` (one replicated batch); (b) a Python loop of 80 single-draw
gradients; (c) one step of torchattacks' ``EOTPGD`` at ``eot_iter=80``. Targets: (a) at least 1.5x faster
than both on a CPU, 10x on a GPU.

The cost of a model that draws once per call (DESIGN.md, §C2), measured on the same per-row model so that only
the path differs: (d) ``eot_gradient(draws="per-call")``, one call per draw on the batch, against
(e) ``eot_gradient(draws="per-row")``, the replicated call without the probe; (a) has no ``draws=`` and so
probes the model (``draw_kind``) at every call: (a) / (e) is the probe's cost. No targets: the ratios inform.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import eot_gradient
from stochdef.defenses.sampling import fast_sampling
from stochdef.defenses.sdr import sdr_layers, sdr_mlp

from . import measure, target

# The median sigma of the shipped sdr-learnable--mnist5k checkpoint (its final lower threshold; its sigmas
# span [0.10, 0.26]). The timing does not depend on the value.
REPRESENTATIVE_STD = 0.1


def sdr_learnable_mlp(std: float = REPRESENTATIVE_STD) -> nn.Module:
    """The SDR paper's MLP with SDR-Learnable layers, every weight's and bias's sigma set to ``std``."""
    net = sdr_mlp((784, 100, 100, 100, 10), mode="learnable")
    with torch.no_grad():
        for layer in sdr_layers(net):
            for _, sigma in layer.mean_std_pairs():
                sigma.fill_(std)
    return net


def run(*, device: str = "cpu", repeat: int = 7, quick: bool = False) -> dict[str, Any]:
    import torchattacks

    torch.manual_seed(0)
    samples, batch = (8, 20) if quick else (80, 100)
    model = sdr_learnable_mlp().to(device).eval()
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def batched() -> torch.Tensor:
        return eot_gradient(model, x, y, samples=samples)

    def replicated() -> torch.Tensor:
        return eot_gradient(model, x, y, samples=samples, draws="per-row")

    def per_call() -> torch.Tensor:
        return eot_gradient(model, x, y, samples=samples, draws="per-call")

    def loop() -> torch.Tensor:  # the same estimator, so the same (fast-path) sampler as the batched one
        total = torch.zeros_like(x)
        with fast_sampling():
            for _ in range(samples):
                xr = x.clone().requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
                total += g
        return total / samples

    eotpgd = torchattacks.EOTPGD(model, eps=0.1, alpha=0.01, steps=1, eot_iter=samples, random_start=False)

    def torchattacks_step() -> torch.Tensor:
        with fast_sampling():
            return eotpgd(x, y)

    timings = {
        f"batched eot_gradient (samples={samples})": measure(batched, repeat=repeat, device=device),
        f"python loop of {samples} single-draw gradients": measure(loop, repeat=repeat, device=device),
        f"torchattacks EOTPGD, 1 step, eot_iter={samples}": measure(torchattacks_step, repeat=repeat, device=device),
        f"eot_gradient draws='per-row' (replicated, no probe, samples={samples})": measure(
            replicated, repeat=repeat, device=device
        ),
        f"eot_gradient draws='per-call' (one call per draw, samples={samples})": measure(
            per_call, repeat=repeat, device=device
        ),
    }
    medians = [t["median"] for t in timings.values()]
    ratios = {"loop / batched": medians[1] / medians[0], "EOTPGD step / batched": medians[2] / medians[0]}
    targets = {
        name: target(value, 10.0 if torch.device(device).type == "cuda" else 1.5) for name, value in ratios.items()
    }
    ratios |= {
        "per-call / replicated": medians[4] / medians[3],
        "batched (with probe) / replicated": medians[0] / medians[3],
    }
    return {
        "config": {
            "samples": samples,
            "batch": batch,
            "model": f"784-100-100-100-10 SDR-Learnable MLP, sigma {REPRESENTATIVE_STD}",
        },
        "timings": timings,
        "ratios": ratios,
        "targets": targets,
    }
