"""``stochdef demo``: wrap a randomized MNIST model and attack it through Foolbox, ART and torchattacks.

Trains a small noise-injection MLP on the embedded MNIST-5k (a few seconds), then runs FGSM and PGD
from each library on it, once attacking a single draw (``samples=1``, the naive attack) and once
through the EoT adapters, and prints robust accuracy (ensemble prediction over 32 draws) side by side.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from stochdef.adapters import EoT, to_art, to_foolbox, to_torchattacks
from stochdef.defenses import NoiseInjection, fit, load_dataset, mlp

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf perturbation size")
    parser.add_argument("--samples", type=int, default=16, help="EoT draws for the adaptive attack")
    parser.add_argument("--n", type=int, default=200, help="test images attacked")
    parser.add_argument("--seed", type=int, default=0)


def noisy_mlp(std: float) -> nn.Module:
    return nn.Sequential(NoiseInjection(std=std), mlp((784, 100, 100, 10)))


def attack(
    library: str, name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, samples: int
) -> torch.Tensor:
    """One attack from one library through the matching stochdef adapter."""
    steps, step = 20, eps / 8
    if library == "foolbox":
        import foolbox as fb

        fmodel = to_foolbox(model, bounds=(0, 1), samples=samples)
        fb_attack = (
            fb.attacks.FGSM()
            if name == "fgsm"
            else fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=False)
        )
        return fb_attack(fmodel, x, y, epsilons=eps)[1]
    if library == "art":
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

        clf = to_art(model, input_shape=tuple(x.shape[1:]), nb_classes=10, clip_values=(0, 1), samples=samples)
        art_attack = (
            FastGradientMethod(clf, eps=eps)
            if name == "fgsm"
            else ProjectedGradientDescent(clf, eps=eps, eps_step=step, max_iter=steps, num_random_init=0, verbose=False)
        )
        return torch.from_numpy(art_attack.generate(x.numpy(), y=y.numpy()))
    import torchattacks

    tmodel = to_torchattacks(model, samples=samples)
    ta_attack = (
        torchattacks.FGSM(tmodel, eps=eps)
        if name == "fgsm"
        else torchattacks.PGD(tmodel, eps=eps, alpha=step, steps=steps, random_start=False)
    )
    return ta_attack(x, y)


def main(args: argparse.Namespace) -> int:
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
    judge = EoT(model, samples=32, reduce="probs")

    def robust(x_adv: torch.Tensor) -> float:
        with torch.no_grad():
            return float((judge(x_adv).argmax(1) == y).float().mean())

    print(f"clean accuracy (32-draw ensemble): {robust(x):.3f}   eps = {args.eps}, n = {args.n}")
    print(f"{'library':<14}{'attack':<8}{'naive (1 draw)':>16}{f'EoT ({args.samples} draws)':>18}")
    jobs = [(lib, name) for lib in ("foolbox", "art", "torchattacks") for name in ("fgsm", "pgd")]
    for lib, name in tqdm(jobs, desc="attacks", leave=False):
        accs = [robust(attack(lib, name, model, x, y, args.eps, s)) for s in (1, args.samples)]
        print(f"{lib:<14}{name:<8}{accs[0]:>16.3f}{accs[1]:>18.3f}")
    print("lower is a stronger attack; the EoT column is the honest one.")
    return 0
