"""Zoo entry of DropConnect (Wan et al. 2013), the SDR paper's baseline that stays random at inference.

The layer is :class:`stochdef.defenses.dropconnect.DropConnectLinear`; this module holds the trainer and its
hyper-parameters.

Example:
    >>> [spec.name for spec in SPECS]
    ['dropconnect']
"""

from __future__ import annotations

import math

from torch import nn

from ..data import Dataset
from ..dropconnect import dropconnect_mlp
from ..training import History
from .spec import Spec, TrainSettings, fit_settings

__all__ = ["SPECS"]

EPOCHS, LR, BATCH = 20, 1e-3, 128
QUICK_EPOCHS, QUICK_TRAIN = 2, 1000  # --quick: 2 epochs on the first 1,000 training images (seconds)


def _train(model: nn.Module, data: Dataset, s: TrainSettings) -> History:
    train = QUICK_TRAIN if s.quick else None
    epochs = QUICK_EPOCHS if s.quick else EPOCHS
    return fit_settings(model, data, s, desc="dropconnect", rows=train, epochs=epochs, batch_size=BATCH, lr=LR)


SPECS: list[Spec] = [
    Spec(
        name="dropconnect",
        family="dropconnect",
        paper="Khan et al. (SDR), Table 1 baseline; Wan et al. 2013",
        description="ReLU MLP 784-100-100-100-10, DropConnect p=0.2 on every layer, random at inference",
        build=lambda shape, k: dropconnect_mlp((math.prod(shape), 100, 100, 100, k)),
        train=_train,
    ),
]
