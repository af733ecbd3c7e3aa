"""The cross-check's references outside :mod:`stochdef.evaluations.libraries`.

* advertorch's ``LocalSearchAttack`` (LocalSearch, Narodytska & Kasiviswanathan 2016, is in none of Foolbox 3,
  ART and torchattacks), configured as Foolbox 2.x;
* torchattacks' ``EOTPGD`` on the raw randomized model, the library's own EoT loop (against PGD through the
  adapters and in-house at the same ``samples``).

Each takes the attack object it mirrors (a :class:`~stochdef.evaluations.libraries.PGD` or a
:class:`~stochdef.evaluations.libraries.LocalSearch`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.adapters import EoT

from ..libraries import PGD, LocalSearch

Tensor = torch.Tensor


def eotpgd(spec: PGD, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """torchattacks' ``EOTPGD`` on the raw randomized model: the exact EoT gradient, a Python loop of draws."""
    import torchattacks as ta

    attack = ta.EOTPGD(
        model, eps=spec.radius, alpha=spec.step_size, steps=spec.steps, eot_iter=spec.samples, random_start=False
    )
    return attack(x, y).detach()


# ---- advertorch (LocalSearch reference) ------------------------------------------------------------------


def import_advertorch() -> tuple[Any, str]:
    """``(LocalSearchAttack, "")``, or ``(None, reason)`` when advertorch 0.2.3 cannot be imported."""
    try:
        import torch.autograd.gradcheck  # noqa: F401  (advertorch imports a helper removed from torch)

        module = sys.modules["torch.autograd.gradcheck"]
        if not hasattr(module, "zero_gradients"):
            module.zero_gradients = lambda x: None  # type: ignore[attr-defined]
        from advertorch.attacks import LocalSearchAttack
    except ImportError as err:
        return None, f"advertorch is not importable ({err}); install the `localsearch` extra (tox -e localsearch)"
    return LocalSearchAttack, ""


class _Counting(nn.Module):
    """Counts the rows the wrapped model is asked to score."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        return self.model(x)


def advertorch_local_search(spec: LocalSearch, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor] | None:
    """advertorch's ``LocalSearchAttack`` per example (it has no batch mode): ``(x_adv, queries)``.

    Configured as Foolbox 2.x (``comply_with_foolbox=True``: the image accumulates its perturbation
    across rounds and probes are not clipped; without it advertorch restarts from the clean image every
    round). ``select="highest"`` flips its pixel ranking to Foolbox 2.4's (scores ``1 - p``); its own is
    ``"lowest"``. Outputs outside the bounds (advertorch may return a probe) are replaced by ``x``.
    """
    cls, _ = import_advertorch()
    if cls is None:
        return None
    select: Callable[[Any], Any] = (lambda s: 1.0 - s) if spec.select == "highest" else (lambda s: s)

    class Matched(cls):  # type: ignore[misc, valid-type]
        def _rescale_x_score(self, predict, images, label, ori, best_dist):  # type: ignore[no-untyped-def]
            scores, best_img, best = super()._rescale_x_score(predict, images, label, ori, best_dist)
            return select(scores), best_img, best

    target = model if spec.samples == 1 else EoT(model, samples=spec.samples)
    counting = _Counting(target)
    low, high = spec.bounds
    attack = Matched(
        counting, clip_min=low, clip_max=high, p=10.0, r=1.5, d=5, t=5, round_ub=spec.rounds, comply_with_foolbox=True
    )
    outs, queries = [], []
    state = np.random.get_state()  # advertorch re-seeds NumPy's global RNG for every example
    for i in range(len(x)):
        counting.rows = 0
        with torch.no_grad():
            out = attack.perturb(x[i : i + 1], y[i : i + 1]).detach()
        if bool((out < low).any() or (out > high).any()):
            out = x[i : i + 1]
        outs.append(out)
        queries.append(counting.rows)
    np.random.set_state(state)
    return torch.cat(outs), torch.tensor(queries, device=x.device)
