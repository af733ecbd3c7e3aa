"""FGSM (Goodfellow, Shlens, Szegedy 2015, "Explaining and Harnessing Adversarial Examples") and its
minimal-eps grid search (Foolbox 2.x's ``GradientSignAttack``, the variant of the SDR paper).

>>> from stochdef.evaluations.libraries import FGSM
>>> FGSM(eps=0.1, targeted=True).unsupported("foolbox")
"Foolbox 3's FGSM has no targeted mode"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.defenses.validation import check_int, check_range

from ...attacks import AttackResult, fgsm, fgsm_minimal
from ..base import GRADIENT_PASSES, NOT_AUTOATTACK, UNIT_BOX, Attack, Runner, check_bool
from ..calls import art_generate, fb_call, ta_run

Tensor = torch.Tensor
SIGN_STEP = "FGSM is L-inf only (the sign step)"


def in_fgsm(a: FGSM, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    return fgsm(model, x, y, eps=a.radius, bounds=a.bounds, samples=a.samples, targeted=a.targeted)


def fb_fgsm(a: FGSM, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    return fb_call(fb.attacks.FGSM(), a, fmodel, x, y, a.radius)


def art_fgsm(a: FGSM, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import FastGradientMethod

    return art_generate(FastGradientMethod(clf, eps=a.radius, targeted=a.targeted, batch_size=len(x)), x, y)


def ta_fgsm(a: FGSM, m: nn.Module) -> Any:
    import torchattacks as ta

    return ta.FGSM(m, eps=a.radius)


@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """One signed-gradient step of size ``eps`` (L-inf)."""

    name = "fgsm"
    rank = 0
    norms = ("linf",)
    why_norms = SIGN_STEP
    in_evaluate = True
    default = True
    runners = {
        "inhouse": Runner(in_fgsm),
        "foolbox": Runner(fb_fgsm, ((lambda a: a.targeted, "Foolbox 3's FGSM has no targeted mode"),)),
        "art": Runner(art_fgsm),
        "torchattacks": Runner(ta_run(ta_fgsm), (UNIT_BOX,)),
        "autoattack": NOT_AUTOATTACK,
    }

    def gradient_steps(self, num_classes: int) -> float:
        return 1.0


def in_fgsm_minimal(a: FGSMMinimal, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    kw: dict[str, Any] = {"bounds": a.bounds, "samples": a.samples, "targeted": a.targeted}
    return fgsm_minimal(model, x, y, epsilons=a.epsilons, max_eps=a.max_eps, refine=a.refine, **kw)


def art_fgsm_minimal(a: FGSMMinimal, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import FastGradientMethod

    grid = {"eps": a.max_eps, "eps_step": a.max_eps / a.epsilons, "minimal": True}
    return art_generate(FastGradientMethod(clf, targeted=a.targeted, batch_size=len(x), **grid), x, y)


@dataclass(frozen=True, kw_only=True)
class FGSMMinimal(Attack):
    """The smallest FGSM step that misclassifies, on a grid of ``epsilons`` step sizes up to ``max_eps``
    (``refine``: search again below an early success on a finer grid, as Foolbox 2.x did)."""

    name = "fgsm-minimal"
    rank = 1
    norms = ("linf",)
    why_norms = SIGN_STEP
    takes_eps = False
    runners = {
        "inhouse": Runner(in_fgsm_minimal),
        "foolbox": "Foolbox 3's FGSM has no minimal-eps mode (Foolbox 2.x's had)",
        "art": Runner(
            art_fgsm_minimal,
            ((lambda a: a.refine, "ART's minimal FGSM stops at the first successful grid step (no refinement)"),),
        ),
        "torchattacks": "torchattacks' FGSM has no minimal-eps mode",
        "autoattack": NOT_AUTOATTACK,
    }

    epsilons: int = 1000
    max_eps: float = 1.0
    refine: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("epsilons", self.epsilons)
        check_range("max_eps", self.max_eps, low=0.0, low_open=True)
        check_bool("refine", self.refine)

    def passes(self, num_classes: int) -> float:
        """One gradient, then at most one forward per grid point, per EoT draw (an upper bound)."""
        return (GRADIENT_PASSES + self.epsilons) * self.samples
