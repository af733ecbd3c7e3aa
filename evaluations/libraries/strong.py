"""The stronger attacks of the table: PGD with random restarts, APGD-CE / APGD-DLR, Square, AutoAttack-rand.

Same contract as :mod:`.runners`: every function takes ``(spec, model, x, y)``, ``model`` being what
:func:`.table.wrap` made for that library (the EoT adapter at ``spec.samples``), and returns the library's
own output. APGD and Square are Croce & Hein 2020 ("Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks") and Andriushchenko et al. 2020; AutoAttack's ``rand`` version
is the pair APGD-CE + APGD-DLR with 20 EoT draws per gradient, the version its authors give for randomized
defenses.

The libraries' APGD and Square re-seed the global RNG with their ``seed`` argument; the runners draw that
seed from the (cell-seeded) torch RNG, so a run stays a function of its seed and every cell gets its own.

:func:`restarted` is the restart loop for the libraries without one of their own (Foolbox's and
torchattacks' PGD): it re-runs the attack on the examples still classified correctly by the wrapped model's
prediction (the EoT average at ``spec.samples``) and keeps, per example, the first adversarial found.

>>> import torch
>>> from torch import nn
>>> from stochdef.evaluations.libraries import AttackSpec
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
>>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
>>> out = restarted(AttackSpec("pgd-rs", 0.1, restarts=2), net, x, y, lambda xs, ys: xs.clone())
>>> bool(torch.equal(out, x))
True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .spec import AttackSpec

Tensor = torch.Tensor
Attempt = Callable[[Tensor, Tensor], Tensor]


def library_seed() -> int:
    """A seed for a library attack that re-seeds the global RNG, drawn from the current torch RNG."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


@torch.no_grad()
def _predict(model: Any, x: Tensor) -> Tensor:
    out = model(x)
    return out.raw.argmax(1) if hasattr(out, "raw") else out.argmax(1)  # a Foolbox model returns a tensor


def restarted(spec: AttackSpec, model: Any, x: Tensor, y: Tensor, attempt: Attempt) -> Tensor:
    """``spec.restarts`` runs of ``attempt(x, y)``, each on the examples the earlier ones left unbroken."""
    best = attempt(x, y).to(x.device, x.dtype)
    for _ in range(spec.restarts - 1):
        robust = _predict(model, best) == y  # untargeted: still correct; targeted: not yet the target
        if spec.targeted:
            robust = ~robust
        if not bool(robust.any()):
            break
        index = robust.nonzero().flatten()
        fresh = attempt(x[index], y[index]).to(x.device, x.dtype)
        broken = _predict(model, fresh) != y[index]
        if spec.targeted:
            broken = ~broken
        best[index[broken]] = fresh[broken]
    return best


# ---- PGD with a random start (pgd-rs) ----------------------------------------------------------------------


def fb_pgd_rs(s: AttackSpec, fmodel: Any, x: Tensor, y: Tensor) -> Any:
    import foolbox as fb

    cls = fb.attacks.L2PGD if s.norm == "l2" else fb.attacks.LinfPGD
    attack = cls(abs_stepsize=s.step_size, steps=s.steps, random_start=True)

    def attempt(xs: Tensor, ys: Tensor) -> Tensor:
        criterion = fb.criteria.TargetedMisclassification(ys) if s.targeted else ys
        _, clipped, _ = attack(fmodel, xs, criterion, epsilons=s.radius)
        out: Tensor = clipped
        return out

    return restarted(s, fmodel, x, y, attempt)


def art_pgd_rs(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import ProjectedGradientDescent

    kw: dict[str, Any] = {"targeted": s.targeted, "batch_size": len(x), "verbose": False}
    norm = np.inf if s.norm == "linf" else 2
    attack = ProjectedGradientDescent(
        clf, norm=norm, eps=s.radius, eps_step=s.step_size, max_iter=s.steps, num_random_init=s.restarts, **kw
    )  # ART keeps, per example, the restart that fooled its predict
    return attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())


def ta_pgd_rs(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    cls = ta.PGDL2 if s.norm == "l2" else ta.PGD
    attack = cls(model, eps=s.radius, alpha=s.step_size, steps=s.steps, random_start=True)
    if s.targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return restarted(s, model, x, y, lambda xs, ys: attack(xs, ys))


# ---- APGD (Croce & Hein 2020) ----------------------------------------------------------------------------


def _ta_norm(s: AttackSpec) -> str:
    return "L2" if s.norm == "l2" else "Linf"


def ta_apgd(loss: str) -> Callable[[AttackSpec, Any, Tensor, Tensor], Any]:
    def fn(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> Any:
        import torchattacks as ta

        attack = ta.APGD(
            model, norm=_ta_norm(s), eps=s.radius, steps=s.steps, n_restarts=s.restarts, seed=library_seed(),
            loss=loss, eot_iter=1,
        )  # fmt: skip  # the EoT average is the adapter's (samples draws per forward)
        return attack(x, y)

    return fn


def art_apgd(loss: str | None) -> Callable[[AttackSpec, Any, Tensor, Tensor], Any]:
    """ART's APGD; ``loss=None`` is the estimator's own cross-entropy (``EoTClassifier.loss_gradient``)."""

    def fn(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
        from art.attacks.evasion import AutoProjectedGradientDescent

        norm = np.inf if s.norm == "linf" else 2
        attack = AutoProjectedGradientDescent(
            clf, norm=norm, eps=s.radius, eps_step=s.radius, max_iter=s.steps, targeted=False,
            nb_random_init=s.restarts, batch_size=len(x), loss_type=loss, verbose=False,
        )  # fmt: skip  # eps_step = eps: APGD's first step is 2 * eps_step, Croce & Hein's 2 * eps
        return attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())

    return fn


# ---- Square (score-based) and AutoAttack-rand -----------------------------------------------------------


def ta_square(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    attack = ta.Square(
        model, norm=_ta_norm(s), eps=s.radius, n_queries=s.queries, n_restarts=s.restarts, seed=library_seed()
    )
    if s.targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return attack(x, y)


def art_square(s: AttackSpec, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import SquareAttack

    seed = library_seed()
    random.seed(seed)  # ART's Square also draws from Python's RNG
    np.random.seed(seed)
    norm = np.inf if s.norm == "linf" else 2
    attack = SquareAttack(
        clf, norm=norm, eps=s.radius, max_iter=s.queries, nb_restarts=s.restarts, batch_size=len(x), verbose=False
    )
    return attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())


def ta_autoattack_rand(s: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    num_classes = int(model(x[:1]).shape[1])
    attack = ta.AutoAttack(model, norm=_ta_norm(s), eps=s.radius, version="rand", n_classes=num_classes,
                           seed=library_seed())  # fmt: skip
    return attack(x, y)
