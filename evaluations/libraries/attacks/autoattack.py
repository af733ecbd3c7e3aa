"""AutoAttack's ``rand`` version (Croce & Hein 2020): APGD-CE then APGD-DLR, each averaging 20 EoT draws per
gradient itself (``eot_iter=20``), the version its authors give for randomized defenses; torchattacks'
``AutoAttack(version="rand")`` (10 steps per APGD), and Croce & Hein's own (library ``autoattack``, 100 steps:
:mod:`..reference`), the only libraries that ship it as one attack.

>>> from stochdef.evaluations.libraries import AutoAttackRand
>>> AutoAttackRand(eps=0.1, samples=4).unsupported("torchattacks")
'AutoAttack-rand averages 20 draws per gradient itself (eot_iter=20): it runs at samples 1'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.defenses.validation import probe_classes

from ..base import GRADIENT_PASSES, NOT_INHOUSE, UNIT_BOX, Attack, Limit, Runner
from ..calls import library_seed, ta_norm
from ..reference import MISSING, reference_rand
from ..reference import UNIT_BOX as REFERENCE_BOX

Tensor = torch.Tensor
ONLY_TORCHATTACKS = "only torchattacks and Croce & Hein's package ship AutoAttack's rand version as one attack"
SAMPLES_ONE: Limit = (
    lambda a: a.samples != 1,
    "AutoAttack-rand averages 20 draws per gradient itself (eot_iter=20): it runs at samples 1",
)
EOT_ITER, STEPS = 20, 10  # torchattacks' AutoAttack(version="rand"): two APGDs at their default 10 steps


def ta_autoattack_rand(a: AutoAttackRand, model: nn.Module, x: Tensor, y: Tensor) -> Any:
    import torchattacks as ta

    num_classes = probe_classes(model, input_shape=x.shape[1:], bounds=a.bounds, device=x.device)
    attack = ta.AutoAttack(model, norm=ta_norm(a), eps=a.radius, version="rand", n_classes=num_classes,
                           seed=library_seed())  # fmt: skip
    return attack(x, y)


@dataclass(frozen=True, kw_only=True)
class AutoAttackRand(Attack):
    """AutoAttack-rand at radius ``eps``: it has no settings of its own (and runs at ``samples=1``)."""

    name = "autoattack-rand"
    rank = 10
    targets = False
    in_evaluate = True
    runners = {
        "inhouse": NOT_INHOUSE,
        "foolbox": ONLY_TORCHATTACKS,
        "art": ONLY_TORCHATTACKS,
        "torchattacks": Runner(
            ta_autoattack_rand,
            (UNIT_BOX, SAMPLES_ONE),
        ),
        "autoattack": Runner(reference_rand, (MISSING, REFERENCE_BOX, SAMPLES_ONE)),
    }

    def passes(self, num_classes: int) -> float:
        """APGD-CE and APGD-DLR, 10 steps of 20 draws each (an upper bound: the second attacks only the
        examples the first left)."""
        return 2 * GRADIENT_PASSES * STEPS * EOT_ITER * self.samples

    def estimator(self, library: str) -> str:
        return "exact mean of 20 per-draw loss gradients (AutoAttack-rand's eot_iter=20)"
