"""Targeted APGD (APGD-T; Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks"), as in AutoAttack's standard version: APGD on the targeted DLR loss,
run once per target class, the targets being the ``min(9, classes - 1)`` highest-scoring wrong classes at
the clean input; an example counts as broken by the first target that misclassifies it. Untargeted as a
whole (``y`` holds the true labels); ``steps`` iterations and ``restarts`` random starts per target.

Run by torchattacks (``APGDT``) through the EoT adapter, ``eot_iter=1``: the adapter averages ``samples``
draws per forward. The other libraries have none: Foolbox 3 has no APGD; ART's
``AutoProjectedGradientDescent`` has the untargeted DLR loss only (with ``targeted=True`` it steps towards
one given label, not on the targeted DLR loss), and ART's ``AutoAttack(targeted=True)`` cycles every other
class in index order rather than the top classes by score; stochdef does not write APGD in-house.

>>> from stochdef.evaluations.libraries import get
>>> attack = get("apgd-t")(eps=0.1, steps=10, samples=8)
>>> attack.passes(10), attack.unsupported("art") is not None
(2160.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.defenses.validation import probe_classes

from ..base import NOT_AUTOATTACK, NOT_INHOUSE, UNIT_BOX, Runner
from ..calls import library_seed, ta_norm
from .apgd import APGD

Tensor = torch.Tensor
TARGETS = 9  # AutoAttack's n_target_classes
MIN_CLASSES = 4  # the targeted DLR loss reads the third and fourth highest logits


def target_classes(num_classes: int) -> int:
    """The number of target classes APGD-T tries on a ``num_classes``-way classifier."""
    return min(TARGETS, num_classes - 1)


def ta_apgd_t(a: APGDT, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    num_classes = probe_classes(model, input_shape=x.shape[1:], bounds=a.bounds, device=x.device)
    if num_classes < MIN_CLASSES:
        raise ValueError(f"apgd-t needs at least {MIN_CLASSES} classes (the targeted DLR loss), got {num_classes}")
    attack = ta.APGDT(
        model, norm=ta_norm(a), eps=a.radius, steps=a.steps, n_restarts=a.restarts, seed=library_seed(),
        eot_iter=1, n_classes=target_classes(num_classes) + 1,
    )  # fmt: skip
    return attack(x, y)


@dataclass(frozen=True, kw_only=True)
class APGDT(APGD):
    """APGD-T: targeted APGD on the DLR loss over the top-9 wrong classes, untargeted overall."""

    name = "apgd-t"
    rank = 11
    in_evaluate = True
    runners = {
        "inhouse": NOT_INHOUSE,
        "foolbox": "Foolbox 3 has no APGD",
        "art": "ART's APGD has no targeted DLR loss and its AutoAttack has no top-k multi-targeted run",
        "torchattacks": Runner(ta_apgd_t, (UNIT_BOX,)),
        "autoattack": NOT_AUTOATTACK,
    }

    def gradient_steps(self, num_classes: int) -> float:
        """``steps`` gradients per target class (an upper bound: a broken example is not attacked again)."""
        return float(self.steps * target_classes(num_classes))
