"""Zoo entry of Random Self-Ensemble (Liu et al., ECCV 2018), the Adv-BNN paper's baseline.

The converter is :func:`stochdef.defenses.rse.to_rse`; the noise levels are those of the Adv-BNN authors'
RSE baseline on Fashion-MNIST (see that module).

Example:
    >>> [spec.name for spec in SPECS]
    ['rse']
"""

from __future__ import annotations

from torch import nn

from ..models import small_cnn
from ..rse import to_rse
from .spec import Spec, plain_trainer

__all__ = ["INIT_STD", "INNER_STD", "SPECS"]

INIT_STD = 0.2
INNER_STD = 0.1


def _build(shape: tuple[int, ...], k: int) -> nn.Module:
    net = small_cnn(in_channels=shape[0], image_size=shape[-1], num_classes=k)
    return to_rse(net, init_std=INIT_STD, inner_std=INNER_STD)


_train = plain_trainer("rse")


SPECS: list[Spec] = [
    Spec(
        name="rse",
        family="rse",
        paper="Liu et al. 2018 (RSE), baseline of Liu et al. (Adv-BNN), Fig. 2/3",
        description=f"small CNN with Gaussian noise before each conv (init {INIT_STD}, inner {INNER_STD})",
        build=_build,
        train=_train,
    ),
]
