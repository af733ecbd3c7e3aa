"""APGD with the cross-entropy or the DLR loss (Croce & Hein 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks"): a step-size schedule instead of a step,
``steps`` iterations, ``restarts`` random starts. Untargeted; ART and torchattacks run it, through the EoT
adapters (``eot_iter=1``: the adapter averages ``samples`` draws per forward).

>>> from stochdef.evaluations.libraries import APGDDLR
>>> APGDDLR(eps=0.1, samples=8).estimator("art")
"gradient of the mean logits (EoT module, inside ART's own PyTorchClassifier for the DLR loss)"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.defenses.validation import check_int

from ..base import NOT_INHOUSE, UNIT_BOX, Attack, Runner
from ..calls import art_norm, library_seed, ta_norm
from ..reference import MISSING, reference_apgd
from ..reference import UNIT_BOX as REFERENCE_BOX

Tensor = torch.Tensor
NO_FOOLBOX_APGD = "Foolbox 3 has no APGD"


def ta_apgd(loss: str) -> Callable[[Any, Any, Tensor, Tensor], Any]:
    def fn(a: APGD, model: nn.Module, x: Tensor, y: Tensor) -> Any:
        import torchattacks as ta

        attack = ta.APGD(
            model, norm=ta_norm(a), eps=a.radius, steps=a.steps, n_restarts=a.restarts, seed=library_seed(),
            loss=loss, eot_iter=1,
        )  # fmt: skip  # the EoT average is the adapter's (samples draws per forward)
        return attack(x, y)

    return fn


def art_apgd(loss: str | None) -> Callable[[Any, Any, Tensor, Tensor], Any]:
    """ART's APGD; ``loss=None`` is the estimator's own cross-entropy (``EoTClassifier.loss_gradient``)."""

    def fn(a: APGD, clf: Any, x: Tensor, y: Tensor) -> Any:
        from art.attacks.evasion import AutoProjectedGradientDescent

        attack = AutoProjectedGradientDescent(
            clf, norm=art_norm(a), eps=a.radius, eps_step=a.radius, max_iter=a.steps, targeted=False,
            nb_random_init=a.restarts, batch_size=len(x), loss_type=loss, verbose=False,
        )  # fmt: skip  # eps_step = eps: APGD's first step is 2 * eps_step, Croce & Hein's 2 * eps
        return attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())

    return fn


@dataclass(frozen=True, kw_only=True)
class APGD(Attack):
    """What APGD-CE and APGD-DLR share: ``steps`` iterations, ``restarts`` random starts, untargeted."""

    takes_steps = True
    takes_restarts = True
    targets = False
    art_output = "logits"  # ART's APGD refuses probabilities

    steps: int = 10
    restarts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps)
        check_int("restarts", self.restarts)


@dataclass(frozen=True, kw_only=True)
class APGDCE(APGD):
    """APGD on the cross-entropy loss."""

    name = "apgd-ce"
    rank = 7
    in_evaluate = True
    default = True
    runners = {
        "inhouse": NOT_INHOUSE,
        "foolbox": NO_FOOLBOX_APGD,
        "art": Runner(art_apgd(None)),
        "torchattacks": Runner(ta_apgd("ce"), (UNIT_BOX,)),
        "autoattack": Runner(reference_apgd("ce"), (MISSING, REFERENCE_BOX)),
    }


@dataclass(frozen=True, kw_only=True)
class APGDDLR(APGD):
    """APGD on the difference-of-logits-ratio loss (invariant to a shift and a scale of the logits)."""

    name = "apgd-dlr"
    rank = 8
    in_evaluate = True
    runners = {
        "inhouse": NOT_INHOUSE,
        "foolbox": NO_FOOLBOX_APGD,
        "art": Runner(art_apgd("difference_logits_ratio")),
        "torchattacks": Runner(ta_apgd("dlr"), (UNIT_BOX,)),
        "autoattack": Runner(reference_apgd("dlr"), (MISSING, REFERENCE_BOX)),
    }

    def estimator(self, library: str) -> str:
        if library == "art" and self.samples != 1:
            return "gradient of the mean logits (EoT module, inside ART's own PyTorchClassifier for the DLR loss)"
        return super().estimator(library)
