"""The iterative gradient attacks without a schedule: BIM (Kurakin, Goodfellow, Bengio 2017), PGD (Madry et
al. 2018, no random start) and ``pgd-rs`` (PGD from a uniform random point of the ball, with restarts).

>>> from stochdef.evaluations.libraries import BIM
>>> BIM(eps=0.1, norm="l2").unsupported("art")
"ART's BasicIterativeMethod is L-inf only"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...attacks import AttackResult, pgd
from ..base import NOT_AUTOATTACK, UNIT_BOX, Iterative, Restarting, Runner, is_l2
from ..calls import art_generate, art_norm, fb_call, restarted, ta_run

Tensor = torch.Tensor


def in_pgd(a: Iterative, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    kw: dict[str, Any] = {"bounds": a.bounds, "samples": a.samples, "targeted": a.targeted}
    if isinstance(a, PGDRS):  # a random start and restarts
        kw.update(random_start=True, restarts=a.restarts)
    else:
        kw.update(random_start=False, restarts=1)
    return pgd(model, x, y, eps=a.radius, step=a.step_size, steps=a.steps, norm=a.norm, **kw)


# ---- BIM ------------------------------------------------------------------------------------------------------


def fb_bim(a: BIM, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2BasicIterativeAttack if a.norm == "l2" else fb.attacks.LinfBasicIterativeAttack
    return fb_call(cls(abs_stepsize=a.step_size, steps=a.steps), a, fmodel, x, y, a.radius)


def art_bim(a: BIM, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import BasicIterativeMethod

    kw: dict[str, Any] = {"targeted": a.targeted, "batch_size": len(x), "verbose": False}
    return art_generate(BasicIterativeMethod(clf, eps=a.radius, eps_step=a.step_size, max_iter=a.steps, **kw), x, y)


def ta_bim(a: BIM, m: nn.Module) -> Any:
    import torchattacks as ta

    return ta.BIM(m, eps=a.radius, alpha=a.step_size, steps=a.steps)


@dataclass(frozen=True, kw_only=True)
class BIM(Iterative):
    """The basic iterative method (I-FGSM): ``steps`` steps of ``step``, no random start."""

    name = "bim"
    rank = 2
    runners = {
        "inhouse": Runner(in_pgd),
        "foolbox": Runner(fb_bim),
        "art": Runner(art_bim, ((is_l2, "ART's BasicIterativeMethod is L-inf only"),)),
        "torchattacks": Runner(ta_run(ta_bim), (UNIT_BOX, (is_l2, "torchattacks' BIM is L-inf only"))),
        "autoattack": NOT_AUTOATTACK,
    }


# ---- PGD ------------------------------------------------------------------------------------------------------


def fb_pgd(a: PGD, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2PGD if a.norm == "l2" else fb.attacks.LinfPGD
    return fb_call(cls(abs_stepsize=a.step_size, steps=a.steps, random_start=False), a, fmodel, x, y, a.radius)


def art_pgd(a: PGD, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import ProjectedGradientDescent

    kw: dict[str, Any] = {"targeted": a.targeted, "batch_size": len(x), "verbose": False, "num_random_init": 0}
    attack = ProjectedGradientDescent(clf, norm=art_norm(a), eps=a.radius, eps_step=a.step_size, max_iter=a.steps, **kw)
    return art_generate(attack, x, y)


def ta_pgd(a: PGD, m: nn.Module) -> Any:
    import torchattacks as ta

    cls = ta.PGDL2 if a.norm == "l2" else ta.PGD
    return cls(m, eps=a.radius, alpha=a.step_size, steps=a.steps, random_start=False)


@dataclass(frozen=True, kw_only=True)
class PGD(Iterative):
    """Projected gradient descent from ``x`` itself (no random start), L-inf or L2."""

    name = "pgd"
    rank = 3
    in_evaluate = True
    default = True
    runners = {
        "inhouse": Runner(in_pgd),
        "foolbox": Runner(fb_pgd),
        "art": Runner(art_pgd),
        "torchattacks": Runner(ta_run(ta_pgd), (UNIT_BOX,)),
        "autoattack": NOT_AUTOATTACK,
    }


# ---- PGD with a random start and restarts (pgd-rs) ------------------------------------------------------------


def fb_pgd_rs(a: PGDRS, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2PGD if a.norm == "l2" else fb.attacks.LinfPGD
    fb_attack = cls(abs_stepsize=a.step_size, steps=a.steps, random_start=True)

    def attempt(xs: Tensor, ys: Tensor) -> Tensor:
        criterion = fb.criteria.TargetedMisclassification(ys) if a.targeted else ys
        _, clipped, _ = fb_attack(fmodel, xs, criterion, epsilons=a.radius)
        out: Tensor = clipped
        return out

    return restarted(a, fmodel, x, y, attempt)


def art_pgd_rs(a: PGDRS, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import ProjectedGradientDescent

    kw: dict[str, Any] = {"targeted": a.targeted, "batch_size": len(x), "verbose": False}
    attack = ProjectedGradientDescent(
        clf, norm=art_norm(a), eps=a.radius, eps_step=a.step_size, max_iter=a.steps, num_random_init=a.restarts, **kw
    )  # ART keeps, per example, the restart that fooled its predict
    return attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())


def ta_pgd_rs(a: PGDRS, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    cls = ta.PGDL2 if a.norm == "l2" else ta.PGD
    attack = cls(model, eps=a.radius, alpha=a.step_size, steps=a.steps, random_start=True)
    if a.targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return restarted(a, model, x, y, lambda xs, ys: attack(xs, ys))


@dataclass(frozen=True, kw_only=True)
class PGDRS(Restarting):
    """PGD from a uniform random point of the ball, ``restarts`` times, keeping per example a success."""

    name = "pgd-rs"
    rank = 6
    in_evaluate = True
    runners = {
        "inhouse": Runner(in_pgd),
        "foolbox": Runner(fb_pgd_rs),
        "art": Runner(art_pgd_rs),
        "torchattacks": Runner(ta_pgd_rs, (UNIT_BOX,)),
        "autoattack": NOT_AUTOATTACK,
    }
