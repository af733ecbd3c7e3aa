"""Counting forward passes: how many (example, draw) rows went through the evaluated models.

A model card reports the compute an evaluation spent (RobustBench reports none; for a randomized model the
number of draws is the cost of an honest attack). Every row of every call of a watched model counts once:
an EoT call on B examples with n draws counts B * n; a library's internal queries count the same way.

>>> import torch
>>> from torch import nn
>>> net = nn.Linear(3, 2)
>>> with count_forward({"net": net}) as passes:
...     _ = net(torch.zeros(5, 3)); _ = net(torch.zeros(2, 3))
>>> passes.total
7
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Passes:
    """Rows counted so far."""

    total: int = 0


@contextmanager
def count_forward(models: Mapping[str, nn.Module]) -> Iterator[Passes]:
    """Count the rows of every call of the modules in ``models`` (a dict that may grow inside the block).

    A global module hook, so that a model loaded inside the block counts too; only the top modules listed
    in ``models`` count (their layers do not), by identity.
    """
    passes = Passes()

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and any(module is m for m in models.values()):
            passes.total += int(args[0].shape[0]) if args[0].dim() else 1

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield passes
    finally:
        handle.remove()
