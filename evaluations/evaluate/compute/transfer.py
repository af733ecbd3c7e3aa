"""The transfer-attack matrix between defenses (Liu et al., Adv-BNN, eq. 14 and Fig. 3).

``rho_{A->B} = (Acc[B] - Acc[B|A]) / (Acc[B] - Acc[B|B])``: how much of the damage a white-box attack on B
does is done by adversarial examples made on A. ``Acc[B]`` is B's clean accuracy, ``Acc[B|A]`` its accuracy
on examples made on A (in-house EoT-PGD at the run's middle eps and largest sample count), all judged by
B's n-draw ensemble.
"""

from __future__ import annotations

import torch
from torch import nn

from stochdef.adapters import EoT

from ...attacks import pgd


def source_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, bounds: tuple[float, float],
    samples: int,
) -> torch.Tensor:  # fmt: skip
    """Adversarial examples made on the source ``model``: in-house EoT-PGD (``samples`` draws per gradient, no
    random start, steps of 2.5 eps / steps) inside the run's ``bounds``."""
    return pgd(model, x, y, eps=eps, step=2.5 * eps / steps, steps=steps, bounds=bounds, samples=samples).x_adv


@torch.no_grad()
def transfer_accuracy(target: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *, judge: int) -> float:
    """Accuracy of ``target``'s ``judge``-draw ensemble on adversarial examples made on another model."""
    probs = EoT(target, samples=judge, reduce="probs")(x_adv)
    return float((probs.argmax(1) == y).float().mean())


def rho(clean: float, transferred: float, whitebox: float) -> float:
    """``(Acc[B] - Acc[B|A]) / (Acc[B] - Acc[B|B])``; nan when the white-box attack did no damage.

    Example:
        >>> rho(0.9, 0.6, 0.3)
        0.5
    """
    damage = clean - whitebox
    return (clean - transferred) / damage if damage > 0 else float("nan")
