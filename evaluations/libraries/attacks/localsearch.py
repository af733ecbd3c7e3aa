"""LocalSearch (Narodytska & Kasiviswanathan 2016, "Simple Black-Box Adversarial Perturbations for Deep
Networks"), as Foolbox 2.x's ``LocalSearchAttack``: a score-based pixel search, ``rounds`` rounds at most.
In none of Foolbox 3, ART and torchattacks (the cross-check's reference is advertorch's).

>>> from stochdef.evaluations.libraries import LocalSearch
>>> LocalSearch(select="lowest").unsupported("foolbox")
"LocalSearch is in none of the three libraries (the cross-check's reference is advertorch's)"
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stochdef.adapters import EoT
from stochdef.defenses.validation import check_choice, check_int

from ...attacks import AttackResult, local_search
from ..base import NOT_AUTOATTACK, Attack, Runner

Tensor = torch.Tensor
NO_LOCAL_SEARCH = "LocalSearch is in none of the three libraries (the cross-check's reference is advertorch's)"
PROBES = 10  # Foolbox 2.x's t = 5 chosen pixels, about (2d+1)^2 / t probes each: a rough count per round


def in_local_search(a: LocalSearch, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    target = model if a.samples == 1 else EoT(model, samples=a.samples)  # a black box: it scores EoT outputs
    return local_search(target, x, y, rounds=a.rounds, select=a.select, bounds=a.bounds, targeted=a.targeted)


@dataclass(frozen=True, kw_only=True)
class LocalSearch(Attack):
    """LocalSearch: ``rounds`` rounds at most; ``select`` the ``"highest"`` (Foolbox 2.4) or ``"lowest"``
    pixel scores."""

    name = "localsearch"
    rank = 5
    takes_eps = False
    gradients = False
    runners = {
        "inhouse": Runner(in_local_search),
        "foolbox": NO_LOCAL_SEARCH,
        "art": NO_LOCAL_SEARCH,
        "torchattacks": NO_LOCAL_SEARCH,
        "autoattack": NOT_AUTOATTACK,
    }

    rounds: int = 150
    select: str = "highest"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("rounds", self.rounds)
        check_choice("select", self.select, ("highest", "lowest"))

    def passes(self, num_classes: int) -> float:
        """Forwards only: about :data:`PROBES` probes and one check per round, per EoT draw (an upper bound:
        the search stops at the first success)."""
        return (PROBES + 1.0) * self.rounds * self.samples
