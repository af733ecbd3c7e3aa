"""Zoo entries of noise injection (Pinot et al., NeurIPS 2019): noise-trained MLPs, the paper training with
the noise it evaluates with.

The layer and the converter are in :mod:`stochdef.defenses.noise`; this module holds the model, the noise
level and the trainer (also used by :mod:`stochdef.evaluations.reproduce.pinot`).

Example:
    >>> [spec.name for spec in SPECS]
    ['noise-gaussian', 'noise-laplace']
"""

from __future__ import annotations

import functools
import math

from torch import nn

from ..models import mlp
from ..noise import inject_noise
from .spec import Spec, plain_trainer

__all__ = ["SPECS", "ZOO_STD", "noisy_mlp", "train_noisy"]


ZOO_STD = 0.25  # on [0, 1] inputs: the paper's std 0.5 on its [-1, 1] inputs (Tables 1, 2)


def noisy_mlp(
    input_shape: tuple[int, ...], num_classes: int, *, distribution: str = "gaussian", std: float = ZOO_STD
) -> nn.Module:
    """The 784-100-100-100-10 ReLU MLP with ``distribution`` noise of ``std`` on its input.

    Example:
        >>> noisy_mlp((1, 8, 8), 10, distribution="laplace", std=0.25)[0]
        NoiseInjection(distribution='laplace', std=0.25)
    """
    size = math.prod(input_shape)
    return inject_noise(mlp((size, 100, 100, 100, num_classes)), at="input", distribution=distribution, std=std)


#: Adam, lr 1e-3, 20 epochs (2 with ``quick``), the noise on throughout (it is on in every mode).
train_noisy = plain_trainer("noise")


SPECS: list[Spec] = [
    Spec(
        name=f"noise-{dist}",
        family="noise",
        paper="Pinot et al. 2019, Section 5 (noise on the image, trained and evaluated with it)",
        description=f"{dist} input noise, std {ZOO_STD} on [0, 1] inputs, on the 784-100-100-100-10 MLP",
        build=functools.partial(noisy_mlp, distribution=dist, std=ZOO_STD),
        train=train_noisy,
    )
    for dist in ("gaussian", "laplace")
]
