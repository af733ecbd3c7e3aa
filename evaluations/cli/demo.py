"""``stochdef demo``: wrap a randomized MNIST model and attack it through Foolbox, ART and torchattacks.

Trains a small noise-injection MLP on the embedded MNIST-5k (a few seconds), then runs FGSM and PGD
from each library on it, once attacking a single draw (``samples=1``, the naive attack) and once
through the EoT adapters, and prints robust accuracy (ensemble prediction over 32 draws) side by side.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and stochdef load inside the functions: `stochdef --help` must not import torch
    import torch
    from torch import nn

    from ..libraries import FGSM, PGD

logger = logging.getLogger(__name__)
STEPS = 20  # PGD: 20 steps of eps / 8, no random start


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf perturbation size")
    parser.add_argument("--samples", type=int, default=16, help="EoT draws per gradient of the adaptive attack")
    parser.add_argument("--n", type=int, default=200, help="test images attacked")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training and the attacks")


def noisy_mlp(std: float) -> nn.Module:
    from torch import nn

    from stochdef.defenses import NoiseInjection, mlp

    return nn.Sequential(NoiseInjection(std=std), mlp((784, 100, 100, 10)))


def attack(
    library: str, kind: type[FGSM | PGD], model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, samples: int
) -> torch.Tensor:
    """One attack from one library through the matching stochdef adapter (:mod:`stochdef.evaluations.libraries`)."""
    from ..libraries import PGD, run

    chosen = PGD(eps=eps, steps=STEPS, step=eps / 8, samples=samples) if kind is PGD else kind(eps=eps, samples=samples)
    return run(library, chosen, model, x, y, num_classes=10)


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from stochdef.adapters import ensemble_accuracy
    from stochdef.defenses import fit, load_dataset

    from ..libraries import FGSM, PGD

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
    jobs = [(lib, kind) for lib in ("foolbox", "art", "torchattacks") for kind in (FGSM, PGD)]
    rows = []
    for lib, kind in tqdm(jobs, desc="attacks", leave=False):
        accs = [robust(attack(lib, kind, model, x, y, args.eps, s)) for s in (1, args.samples)]
        tqdm.write(f"{lib:<14}{kind.name:<8}{accs[0]:>16.3f}{accs[1]:>18.3f}")
        rows.append((accs[0], accs[1]))
    print(closing(rows, n=args.n, samples=args.samples))
    return 0


def closing(rows: list[tuple[float, float]], *, n: int, samples: int) -> str:
    """The demo's last sentence, read off its own table: how often EoT beat the naive attack by more than the
    noise of ``n`` images (two 95% margins of a difference of accuracies, worst case p = 1/2), how often it lost.

    >>> print(closing([(0.30, 0.10), (0.20, 0.19)], n=200, samples=16))
    lower accuracy = stronger attack. EoT (16 draws) beat the naive attack by more than the noise of 200 images
    (0.098) in 1 of 2 rows, was within it in 1 and weaker in 0.
    """
    noise = 1.96 * math.sqrt(2 * 0.25 / n)
    stronger = sum(naive - eot > noise for naive, eot in rows)
    weaker = sum(eot - naive > noise for naive, eot in rows)
    return (
        f"lower accuracy = stronger attack. EoT ({samples} draws) beat the naive attack by more than the noise of "
        f"{n} images\n({noise:.3f}) in {stronger} of {len(rows)} rows, was within it in "
        f"{len(rows) - stronger - weaker} and weaker in {weaker}."
    )
