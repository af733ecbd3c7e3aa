"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard 2016), L2 or L-inf: a minimal-perturbation attack that steps
to the linearized boundary of the closest of ``candidates`` classes, ``steps`` iterations at most, and
overshoots by ``overshoot``. Untargeted, no fixed radius.

>>> from stochdef.evaluations.libraries import DeepFool
>>> DeepFool(norm="linf").unsupported("art")
"ART's DeepFool is L2 only"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.defenses.validation import check_int, check_range

from ...attacks import AttackResult, deepfool
from ..base import GRADIENT_PASSES, NOT_AUTOATTACK, UNIT_BOX, Attack, Runner, is_linf
from ..calls import art_generate, fb_call, ta_run

Tensor = torch.Tensor


def in_deepfool(a: DeepFool, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    kw: dict[str, Any] = {"bounds": a.bounds, "samples": a.samples}
    return deepfool(model, x, y, steps=a.steps, overshoot=a.overshoot, candidates=a.candidates, norm=a.norm, **kw)


def fb_deepfool(a: DeepFool, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2DeepFoolAttack if a.norm == "l2" else fb.attacks.LinfDeepFoolAttack
    return fb_call(cls(steps=a.steps, candidates=a.candidates, overshoot=a.overshoot), a, fmodel, x, y, None)


def art_deepfool(a: DeepFool, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import DeepFool as ArtDeepFool

    kw: dict[str, Any] = {"batch_size": len(x), "verbose": False}
    attack = ArtDeepFool(clf, max_iter=a.steps, epsilon=a.overshoot, nb_grads=a.candidates, **kw)
    return art_generate(attack, x, None)  # ART's DeepFool starts from the clean prediction, not the label


def ta_deepfool(a: DeepFool, m: nn.Module) -> Any:
    import torchattacks as ta

    return ta.DeepFool(m, steps=a.steps, overshoot=a.overshoot)  # every class is a candidate


@dataclass(frozen=True, kw_only=True)
class DeepFool(Attack):
    """DeepFool: ``steps`` iterations at most, ``overshoot``, the ``candidates`` classes it linearizes."""

    name = "deepfool"
    rank = 4
    takes_eps = False
    takes_steps = True
    targets = False
    art_output = "logits"  # ART's DeepFool linearises its predictions: logits, not probabilities
    runners = {
        "inhouse": Runner(in_deepfool),
        "foolbox": Runner(fb_deepfool),
        "art": Runner(art_deepfool, ((is_linf, "ART's DeepFool is L2 only"),)),
        "torchattacks": Runner(ta_run(ta_deepfool), (UNIT_BOX, (is_linf, "torchattacks' DeepFool is L2 only"))),
        "autoattack": NOT_AUTOATTACK,
    }

    steps: int = 10
    overshoot: float = 0.02
    candidates: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps)
        check_range("overshoot", self.overshoot, low=0.0)
        check_int("candidates", self.candidates, minimum=2)

    def passes(self, num_classes: int) -> float:
        """Per step, one forward and a backward per candidate class (its gradient), per EoT draw."""
        gradients = min(self.candidates, num_classes)
        return (1.0 + (GRADIENT_PASSES - 1.0) * gradients) * self.steps * self.samples
