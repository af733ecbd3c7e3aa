"""What a zoo entry is: :class:`Spec` (how to build and train a named defense) and :class:`TrainSettings`.

This is the base module of :mod:`stochdef.defenses.zoo`: every family module imports it and nothing else of
the zoo but :mod:`.store` (and, for post-hoc defenses, the family whose weights they take), so the
registry in ``zoo/__init__.py`` can import every family without an import cycle.

Example:
    >>> TrainSettings(quick=True).seed
    0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..data import Dataset
from ..training import History, fit

Builder = Callable[[tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class TrainSettings:
    """How to train: ``quick`` cuts epochs for tests and smoke runs; ``seed`` fixes everything."""

    seed: int = 0
    quick: bool = False
    device: str = "cpu"
    progress: bool = True


Trainer = Callable[[nn.Module, Dataset, TrainSettings], History]


@dataclass(frozen=True)
class Spec:
    """A named, trainable defense (or baseline).

    ``build(input_shape, num_classes)`` makes an untrained model; ``train(model, data, settings)``
    trains it in place and returns its :class:`~stochdef.defenses.training.History`.
    """

    name: str
    family: str
    paper: str
    description: str
    build: Builder
    train: Trainer


def flat(input_shape: tuple[int, ...]) -> int:
    """The number of features of one input of shape ``input_shape`` (an MLP's input width)."""
    return math.prod(input_shape)


def fit_settings(
    model: nn.Module,
    data: Dataset,
    s: TrainSettings,
    *,
    desc: str,
    rows: int | None = None,
    validate: bool = True,
    **kwargs: Any,
) -> History:
    """:func:`~stochdef.defenses.training.fit` as every zoo trainer calls it: on ``data``'s training split (its
    first ``rows`` rows when given), scored on the held-out split after each epoch unless ``validate=False``,
    with the seed, device and progress bar of ``s``; ``kwargs`` are the trainer's own choices (epochs, lr, ...)."""
    held_out: dict[str, Any] = {"x_val": data.x_test, "y_val": data.y_test} if validate else {}
    x, y = (data.x_train, data.y_train) if rows is None else (data.x_train[:rows], data.y_train[:rows])
    return fit(model, x, y, seed=s.seed, device=s.device, progress=s.progress, desc=desc, **held_out, **kwargs)


def plain_trainer(desc: str) -> Trainer:
    """Adam, lr 1e-3, 20 epochs (2 with ``quick``) of cross-entropy, the model as it is (its randomness on)."""

    def train(model: nn.Module, data: Dataset, s: TrainSettings) -> History:
        return fit_settings(model, data, s, desc=desc, epochs=2 if s.quick else 20, lr=1e-3)

    return train
