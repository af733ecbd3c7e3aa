"""What the attacks' runners share: the calling conventions of each library, seeds, and the restart loop.

The conventions are the same in every library: true labels (the targets when ``targeted``) as class indices,
inputs in ``bounds``, ART attacks over the whole batch (``batch_size=len(x)``). Each helper imports its
library on first use.

The libraries' APGD and Square re-seed the global RNG with their ``seed`` argument; the runners draw that
seed from the (cell-seeded) torch RNG (:func:`library_seed`), so a run stays a function of its seed and every
cell gets its own.

:func:`restarted` is the restart loop for the libraries without one of their own (Foolbox's and
torchattacks' PGD): it re-runs the attack on the examples still classified correctly by the wrapped model's
prediction (the EoT average at ``attack.samples``) and keeps, per example, the first adversarial found.

>>> import torch
>>> from torch import nn
>>> from stochdef.evaluations.libraries import PGDRS
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
>>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
>>> out = restarted(PGDRS(eps=0.1, restarts=2), net, x, y, lambda xs, ys: xs.clone())
>>> bool(torch.equal(out, x))
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .base import Attack

Tensor = torch.Tensor
Attempt = Callable[[Tensor, Tensor], Tensor]


def library_seed() -> int:
    """A seed for a library attack that re-seeds the global RNG, drawn from the current torch RNG."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


@torch.no_grad()
def predict(model: Any, x: Tensor) -> Tensor:
    """The predicted class of a library's wrapped model (a Foolbox model returns a tensor, the others logits)."""
    out = model(x)
    return out.raw.argmax(1) if hasattr(out, "raw") else out.argmax(1)


def restarted(attack: Any, model: Any, x: Tensor, y: Tensor, attempt: Attempt) -> Tensor:
    """``attack.restarts`` runs of ``attempt(x, y)``, each on the examples the earlier ones left unbroken."""
    best = attempt(x, y).to(x.device, x.dtype)
    for _ in range(attack.restarts - 1):
        robust = predict(model, best) == y  # untargeted: still correct; targeted: not yet the target
        if attack.targeted:
            robust = ~robust
        if not bool(robust.any()):
            break
        index = robust.nonzero().flatten()
        fresh = attempt(x[index], y[index]).to(x.device, x.dtype)
        broken = predict(model, fresh) != y[index]
        if attack.targeted:
            broken = ~broken
        best[index[broken]] = fresh[broken]
    return best


# ---- Foolbox 3 (a foolbox.PyTorchModel) -------------------------------------------------------------------------


def fb_call(fb_attack: Any, attack: Attack, fmodel: Any, x: Tensor, y: Tensor, epsilons: float | None) -> Any:
    """Run a Foolbox attack: the clipped points at ``epsilons``, or the raw ones of a minimal attack (``None``)."""
    import foolbox as fb

    criterion = fb.criteria.TargetedMisclassification(y) if attack.targeted else y
    raw, clipped, _ = fb_attack(fmodel, x, criterion, epsilons=epsilons)
    return raw if epsilons is None else clipped


# ---- ART (a PyTorchClassifier): numpy in, numpy out -------------------------------------------------------------


def art_generate(art_attack: Any, x: Tensor, y: Tensor | None) -> Any:
    labels = None if y is None else y.detach().cpu().numpy()
    return art_attack.generate(x.detach().cpu().numpy(), y=labels)


def art_norm(attack: Attack) -> float:
    return np.inf if attack.norm == "linf" else 2


# ---- torchattacks (an nn.Module) ------------------------------------------------------------------------------


def ta_norm(attack: Attack) -> str:
    return "L2" if attack.norm == "l2" else "Linf"


def ta_run(build: Callable[[Any, nn.Module], Any]) -> Callable[[Any, Any, Tensor, Tensor], Any]:
    """A runner from ``build(attack, model)`` (a torchattacks attack), set to targeted mode when asked."""

    def fn(attack: Any, model: Any, x: Tensor, y: Tensor) -> Any:
        ta_attack = build(attack, model)
        if attack.targeted:
            ta_attack.set_mode_targeted_by_label(quiet=True)
        return ta_attack(x, y)

    return fn
