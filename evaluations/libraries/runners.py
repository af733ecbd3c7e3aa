"""What each entry of :data:`.table.TABLE` calls: one attack in one library.

Every function takes ``(spec, model, x, y)``, ``model`` being what :func:`.table.wrap`
made for that library; the in-house ones return an :class:`~stochdef.evaluations.attacks.AttackResult`,
the others the library's own output (a tensor, or a numpy array from ART). Each imports its attack
library on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.adapters import EoT

from ..attacks import AttackResult, deepfool, fgsm, fgsm_minimal, local_search, pgd
from .spec import AttackSpec

Tensor = torch.Tensor


# ---- in-house (stochdef.evaluations.attacks): each returns an AttackResult -----------------------------------


def in_fgsm(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    return fgsm(model, x, y, eps=s.radius, bounds=s.bounds, samples=s.samples, targeted=s.targeted)


def in_fgsm_minimal(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    kw: dict[str, Any] = {"bounds": s.bounds, "samples": s.samples, "targeted": s.targeted}
    return fgsm_minimal(model, x, y, epsilons=s.epsilons, max_eps=s.max_eps, refine=s.refine, **kw)


def in_pgd(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    kw: dict[str, Any] = {"bounds": s.bounds, "samples": s.samples, "targeted": s.targeted}
    kw.update(random_start=s.random_start, restarts=s.restarts)  # pgd-rs: a random start and restarts
    return pgd(model, x, y, eps=s.radius, step=s.step_size, steps=s.steps, norm=s.norm, **kw)


def in_deepfool(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    kw: dict[str, Any] = {"bounds": s.bounds, "samples": s.samples}
    return deepfool(model, x, y, steps=s.steps, overshoot=s.overshoot, candidates=s.candidates, norm=s.norm, **kw)


def in_local_search(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    target = model if s.samples == 1 else EoT(model, samples=s.samples)  # a black box: it scores EoT outputs
    return local_search(target, x, y, rounds=s.rounds, select=s.select, bounds=s.bounds, targeted=s.targeted)


# ---- Foolbox 3 (a foolbox.PyTorchModel) -----------------------------------------------------------------------


def _fb_call(attack: Any, s: AttackSpec, fmodel: Any, x: Tensor, y: Tensor, epsilons: float | None) -> Any:
    import foolbox as fb

    criterion = fb.criteria.TargetedMisclassification(y) if s.targeted else y
    raw, clipped, _ = attack(fmodel, x, criterion, epsilons=epsilons)
    return raw if epsilons is None else clipped


def fb_fgsm(s: AttackSpec, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    return _fb_call(fb.attacks.FGSM(), s, fmodel, x, y, s.radius)


def fb_bim(s: AttackSpec, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2BasicIterativeAttack if s.norm == "l2" else fb.attacks.LinfBasicIterativeAttack
    return _fb_call(cls(abs_stepsize=s.step_size, steps=s.steps), s, fmodel, x, y, s.radius)


def fb_pgd(s: AttackSpec, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2PGD if s.norm == "l2" else fb.attacks.LinfPGD
    return _fb_call(cls(abs_stepsize=s.step_size, steps=s.steps, random_start=False), s, fmodel, x, y, s.radius)


def fb_deepfool(s: AttackSpec, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2DeepFoolAttack if s.norm == "l2" else fb.attacks.LinfDeepFoolAttack
    return _fb_call(cls(steps=s.steps, candidates=s.candidates, overshoot=s.overshoot), s, fmodel, x, y, None)


# ---- ART (a PyTorchClassifier): numpy in, numpy out ---------------------------------------------------------


def _art_generate(attack: Any, x: Tensor, y: Tensor | None) -> Any:
    labels = None if y is None else y.detach().cpu().numpy()
    return attack.generate(x.detach().cpu().numpy(), y=labels)


def art_fgsm(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import FastGradientMethod

    return _art_generate(FastGradientMethod(clf, eps=s.radius, targeted=s.targeted, batch_size=len(x)), x, y)


def art_fgsm_minimal(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import FastGradientMethod

    grid = {"eps": s.max_eps, "eps_step": s.max_eps / s.epsilons, "minimal": True}
    return _art_generate(FastGradientMethod(clf, targeted=s.targeted, batch_size=len(x), **grid), x, y)


def art_bim(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import BasicIterativeMethod

    kw: dict[str, Any] = {"targeted": s.targeted, "batch_size": len(x), "verbose": False}
    return _art_generate(BasicIterativeMethod(clf, eps=s.radius, eps_step=s.step_size, max_iter=s.steps, **kw), x, y)


def art_pgd(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import ProjectedGradientDescent

    kw: dict[str, Any] = {"targeted": s.targeted, "batch_size": len(x), "verbose": False, "num_random_init": 0}
    norm = np.inf if s.norm == "linf" else 2
    attack = ProjectedGradientDescent(clf, norm=norm, eps=s.radius, eps_step=s.step_size, max_iter=s.steps, **kw)
    return _art_generate(attack, x, y)


def art_deepfool(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import DeepFool

    kw: dict[str, Any] = {"batch_size": len(x), "verbose": False}
    attack = DeepFool(clf, max_iter=s.steps, epsilon=s.overshoot, nb_grads=s.candidates, **kw)
    return _art_generate(attack, x, None)  # ART's DeepFool starts from the clean prediction, not the label


# ---- torchattacks (an nn.Module) ----------------------------------------------------------------------------


def ta_run(build: Callable[[AttackSpec, nn.Module], Any]) -> Callable[[AttackSpec, Any, Tensor, Tensor], Any]:
    def fn(s: AttackSpec, model: Any, x: Tensor, y: Tensor) -> Any:
        attack = build(s, model)
        if s.targeted:
            attack.set_mode_targeted_by_label(quiet=True)
        return attack(x, y)

    return fn


def ta_fgsm(s: AttackSpec, m: nn.Module) -> Any:
    import torchattacks as ta

    return ta.FGSM(m, eps=s.radius)


def ta_bim(s: AttackSpec, m: nn.Module) -> Any:
    import torchattacks as ta

    return ta.BIM(m, eps=s.radius, alpha=s.step_size, steps=s.steps)


def ta_pgd(s: AttackSpec, m: nn.Module) -> Any:
    import torchattacks as ta

    cls = ta.PGDL2 if s.norm == "l2" else ta.PGD
    return cls(m, eps=s.radius, alpha=s.step_size, steps=s.steps, random_start=False)


def ta_deepfool(s: AttackSpec, m: nn.Module) -> Any:
    import torchattacks as ta

    return ta.DeepFool(m, steps=s.steps, overshoot=s.overshoot)  # every class is a candidate
