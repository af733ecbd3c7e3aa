"""``stochdef demo``: wrap a randomized MNIST model and attack it through Foolbox, ART and torchattacks.

Trains a small noise-injection MLP on the embedded MNIST-5k (a few seconds), then runs FGSM and PGD
from each library on it, once attacking a single draw (``samples=1``, the naive attack) and once
through the EoT adapters, and prints robust accuracy (ensemble prediction over 32 draws) side by side.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and stochdef load inside the functions: `stochdef --help` must not import torch
    import torch
    from torch import nn

logger = logging.getLogger(__name__)
STEPS = 20  # PGD: 20 steps of eps / 8, no random start


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf perturbation size")
    parser.add_argument("--samples", type=int, default=16, help="EoT draws for the adaptive attack")
    parser.add_argument("--n", type=int, default=200, help="test images attacked")
    parser.add_argument("--seed", type=int, default=0)


def noisy_mlp(std: float) -> nn.Module:
    from torch import nn

    from stochdef.defenses import NoiseInjection, mlp

    return nn.Sequential(NoiseInjection(std=std), mlp((784, 100, 100, 10)))


def attack(
    library: str, name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, samples: int
) -> torch.Tensor:
    """One attack from one library through the matching stochdef adapter (:mod:`stochdef.evaluations.libraries`)."""
    from ..libraries import AttackSpec, run

    spec = AttackSpec(name, eps, steps=STEPS, step=eps / 8, samples=samples)
    return run(library, spec, model, x, y, num_classes=10)


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from stochdef.adapters import ensemble_accuracy
    from stochdef.defenses import fit, load_dataset

    torch.manual_seed(args.seed)
    data = load_dataset("mnist5k")
    model = noisy_mlp(std=0.3)
    start = time.perf_counter()
    fit(
        model,
        data.x_train,
        data.y_train,
        epochs=5,
        x_val=data.x_test,
        y_val=data.y_test,
        seed=args.seed,
        desc="demo model",
    )
    model.eval()
    logger.info("trained the noise-injection MLP in %.1f s", time.perf_counter() - start)
    x, y = data.x_test[: args.n], data.y_test[: args.n]

    def robust(x_adv: torch.Tensor) -> float:  # the 32-draw ensemble's accuracy
        with torch.no_grad():
            return ensemble_accuracy(model, x_adv, y, samples=32)

    print(f"clean accuracy (32-draw ensemble): {robust(x):.3f}   eps = {args.eps}, n = {args.n}")
    print(f"{'library':<14}{'attack':<8}{'naive (1 draw)':>16}{f'EoT ({args.samples} draws)':>18}")
    jobs = [(lib, name) for lib in ("foolbox", "art", "torchattacks") for name in ("fgsm", "pgd")]
    for lib, name in tqdm(jobs, desc="attacks", leave=False):
        accs = [robust(attack(lib, name, model, x, y, args.eps, s)) for s in (1, args.samples)]
        print(f"{lib:<14}{name:<8}{accs[0]:>16.3f}{accs[1]:>18.3f}")
    print("lower is a stronger attack; the EoT column is the honest one.")
    return 0
