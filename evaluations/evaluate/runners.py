"""One attack, one library: matched FGSM / PGD configurations run through the stochdef adapters.

Every library gets the same attack: L-inf, ``eps``, PGD with ``steps`` steps of ``step`` and no random
start, true labels passed, inputs in ``bounds``. With ``samples=1`` the model's randomness is attacked
one draw at a time (the naive attack); with ``samples>1`` the gradient is averaged over draws (EoT), by
the estimator each library can hold (see :data:`ESTIMATORS` and DESIGN.md, "EoT: what is averaged").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stochdef.adapters import to_art, to_foolbox, to_torchattacks
from stochdef.defenses.validation import check_choice, check_int, check_range

LIBRARIES: tuple[str, ...] = ("inhouse", "foolbox", "art", "torchattacks")
ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
ESTIMATORS: dict[str, str] = {
    "inhouse": "exact mean of per-draw loss gradients (eot_gradient)",
    "art": "exact mean of per-draw loss gradients (EoTClassifier.loss_gradient)",
    "foolbox": "gradient of the mean logits (EoT module)",
    "torchattacks": "gradient of the mean logits (EoT module)",
}


@dataclass(frozen=True)
class AttackSpec:
    """An L-inf attack: ``fgsm`` or ``pgd`` (``steps`` steps of ``step``, default ``2.5 * eps / steps``)."""

    attack: str
    eps: float
    samples: int = 1
    steps: int = 10
    step: float | None = None
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_choice("attack", self.attack, ATTACKS)
        check_range("eps", self.eps, low=0.0)
        check_int("samples", self.samples)
        check_int("steps", self.steps)
        if self.step is not None:
            check_range("step", self.step, low=0.0)

    @property
    def step_size(self) -> float:
        return self.step if self.step is not None else 2.5 * self.eps / self.steps


def run_attack(
    library: str, spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int
) -> torch.Tensor:
    """Adversarial examples for ``(x, y)`` from ``library``'s ``spec.attack`` through the matching adapter."""
    check_choice("library", library, LIBRARIES)
    if spec.eps == 0.0:
        return x.clone()
    runner = {"inhouse": _inhouse, "foolbox": _foolbox, "art": _art, "torchattacks": _torchattacks}[library]
    x_adv = runner(spec, model, x, y, num_classes)
    return x_adv.to(x.device, x.dtype).detach()


def _inhouse(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    from stochdef.evaluations import attacks

    if spec.attack == "fgsm":
        return attacks.fgsm(model, x, y, eps=spec.eps, bounds=spec.bounds, samples=spec.samples).x_adv
    return attacks.pgd(
        model,
        x,
        y,
        eps=spec.eps,
        step=spec.step_size,
        steps=spec.steps,
        norm="linf",
        random_start=False,
        bounds=spec.bounds,
        samples=spec.samples,
    ).x_adv


def _foolbox(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    import foolbox as fb

    fmodel = to_foolbox(model, bounds=spec.bounds, samples=spec.samples, device=x.device)
    attack = (
        fb.attacks.FGSM()
        if spec.attack == "fgsm"
        else fb.attacks.LinfPGD(abs_stepsize=spec.step_size, steps=spec.steps, random_start=False)
    )
    return attack(fmodel, x, y, epsilons=spec.eps)[1]


def _art(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    clf = to_art(
        model,
        input_shape=tuple(x.shape[1:]),
        nb_classes=num_classes,
        clip_values=spec.bounds,
        samples=spec.samples,
        device=x.device,
    )
    if spec.attack == "fgsm":
        attack = FastGradientMethod(clf, eps=spec.eps, batch_size=len(x))
    else:
        attack = ProjectedGradientDescent(
            clf,
            eps=spec.eps,
            eps_step=spec.step_size,
            max_iter=spec.steps,
            num_random_init=0,
            batch_size=len(x),
            verbose=False,
        )
    return torch.from_numpy(np.asarray(attack.generate(x.cpu().numpy(), y=y.cpu().numpy())))


def _torchattacks(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> torch.Tensor:
    import torchattacks

    tmodel = to_torchattacks(model, samples=spec.samples, bounds=spec.bounds)
    if spec.attack == "fgsm":
        attack = torchattacks.FGSM(tmodel, eps=spec.eps)
    else:
        attack = torchattacks.PGD(tmodel, eps=spec.eps, alpha=spec.step_size, steps=spec.steps, random_start=False)
    return attack(x, y)
