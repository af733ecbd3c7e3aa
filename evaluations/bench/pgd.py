"""Benchmark: in-house EoT-PGD against torchattacks' ``EOTPGD`` at the same number of draws, per step.

Both compute the exact EoT gradient (the mean of per-draw loss gradients) on the same randomized model
(:func:`stochdef.evaluations.bench.eot.sdr_learnable_mlp`: the SDR paper's 784-100-100-100-10 MLP with
per-example Gaussian weights), batch 100, 80 draws: :func:`stochdef.evaluations.attacks.pgd` in one
replicated batch per step, ``EOTPGD`` as a Python loop of 80 forward/backward passes. Targets: the
in-house step at least 1.5x faster on a CPU, 10x on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from stochdef.defenses.sampling import fast_sampling
from stochdef.evaluations.attacks import pgd

from . import measure, target
from .eot import REPRESENTATIVE_STD, sdr_learnable_mlp


def run(*, device: str = "cpu", repeat: int = 7, quick: bool = False) -> dict[str, Any]:
    import torchattacks

    torch.manual_seed(0)
    samples, batch, steps = (8, 20, 2) if quick else (80, 100, 5)
    model = sdr_learnable_mlp().to(device).eval()
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    eps, step = 0.1, 0.01

    def inhouse() -> torch.Tensor:
        return pgd(model, x, y, eps=eps, step=step, steps=steps, samples=samples).x_adv

    eotpgd = torchattacks.EOTPGD(model, eps=eps, alpha=step, steps=steps, eot_iter=samples, random_start=False)

    def library() -> torch.Tensor:  # an EoT estimate: the fast-path sampler, as the in-house pgd takes
        with fast_sampling():
            return eotpgd(x, y)

    whole = {
        "in-house": measure(inhouse, repeat=repeat, device=device),
        "torchattacks": measure(library, repeat=repeat, device=device),
    }
    # Per step: the whole attack divided by its steps (the in-house run also checks its input and
    # evaluates the final point once, which this charges to its steps).
    timings = {
        f"in-house pgd, samples={samples}, per step": {
            k: v / steps if k != "repeat" else v for k, v in whole["in-house"].items()
        },
        f"torchattacks EOTPGD, eot_iter={samples}, per step": {
            k: v / steps if k != "repeat" else v for k, v in whole["torchattacks"].items()
        },
    }
    ratio = whole["torchattacks"]["median"] / whole["in-house"]["median"]
    threshold = 10.0 if torch.device(device).type == "cuda" else 1.5
    return {
        "config": {
            "samples": samples,
            "batch": batch,
            "steps": steps,
            "eps": eps,
            "step": step,
            "model": f"784-100-100-100-10 SDR-Learnable MLP, every sigma {REPRESENTATIVE_STD}",
        },
        "timings": timings,
        "ratios": {"EOTPGD / in-house pgd": ratio},
        "targets": {"EOTPGD / in-house pgd": target(ratio, threshold)},
    }
