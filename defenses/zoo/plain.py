"""Zoo entries without a defense: the deterministic MLP and small CNN that the papers compare against.

Example:
    >>> [spec.name for spec in SPECS]
    ['vanilla-mlp', 'vanilla-cnn']
"""

from __future__ import annotations

from ..models import mlp, small_cnn
from .spec import Spec, flat, plain_trainer

__all__ = ["SPECS", "VANILLA_MLP"]

_train_plain = plain_trainer("vanilla")

VANILLA_MLP = Spec(
    name="vanilla-mlp",
    family="vanilla",
    paper="Khan et al. (SDR), Table 1 baseline",
    description="deterministic ReLU MLP 784-100-100-100-10",
    build=lambda shape, k: mlp((flat(shape), 100, 100, 100, k)),
    train=_train_plain,
)

SPECS: list[Spec] = [
    VANILLA_MLP,
    Spec(
        name="vanilla-cnn",
        family="vanilla",
        paper="Liu et al. (Adv-BNN), Table 1 'no defense'",
        description="deterministic small CNN (2 conv + BN)",
        build=lambda shape, k: small_cnn(in_channels=shape[0], image_size=shape[-1], num_classes=k),
        train=_train_plain,
    ),
]
