"""Square (Andriushchenko, Croce, Flammarion, Hein 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"): score-based, needs no gradient; ``queries`` per restart,
``restarts`` restarts. ART and torchattacks run it, scoring the EoT adapter's mean output.

>>> from stochdef.evaluations.libraries import Square
>>> Square(eps=0.3, samples=4).estimator("torchattacks")
'no gradient: mean scores of 4 draws'
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.defenses.validation import check_int

from ..base import NOT_AUTOATTACK, NOT_INHOUSE, UNIT_BOX, Attack, Runner, is_l2
from ..calls import art_norm, library_seed, ta_norm

Tensor = torch.Tensor


def ta_square(a: Square, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    attack = ta.Square(
        model, norm=ta_norm(a), eps=a.radius, n_queries=a.queries, n_restarts=a.restarts, seed=library_seed()
    )
    if a.targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return attack(x, y)


def art_square(a: Square, clf: Any, x: Tensor, y: Tensor) -> Any:
    from art.attacks.evasion import SquareAttack

    seed = library_seed()
    random.seed(seed)  # ART's Square also draws from Python's RNG
    np.random.seed(seed)
    attack = SquareAttack(
        clf, norm=art_norm(a), eps=a.radius, max_iter=a.queries, nb_restarts=a.restarts, batch_size=len(x),
        verbose=False,
    )  # fmt: skip
    return attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())


@dataclass(frozen=True, kw_only=True)
class Square(Attack):
    """Square: ``queries`` random-search queries per restart, ``restarts`` restarts."""

    name = "square"
    rank = 9
    takes_restarts = True
    takes_queries = True
    gradients = False
    in_evaluate = True
    runners = {
        "inhouse": NOT_INHOUSE,
        "foolbox": "Foolbox 3 has no Square attack",
        "art": Runner(
            art_square,
            (
                (lambda a: a.targeted, "ART's SquareAttack is untargeted"),
                (is_l2, "ART's L2 SquareAttack divides by zero and returns NaN inputs (seen with ART 1.20.1)"),
            ),
        ),
        "torchattacks": Runner(ta_square, (UNIT_BOX,)),
        "autoattack": NOT_AUTOATTACK,
    }

    restarts: int = 1
    queries: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("restarts", self.restarts)
        check_int("queries", self.queries)

    def passes(self, num_classes: int) -> float:
        """About one forward per query per restart per EoT draw (an upper bound: it stops on success)."""
        return float(self.queries * self.restarts * self.samples)

    def estimator(self, library: str) -> str:
        return (
            "no gradient: scores of one draw"
            if self.samples == 1
            else f"no gradient: mean scores of {self.samples} draws"
        )
