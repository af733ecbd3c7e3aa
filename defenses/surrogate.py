"""Surrogate gradients a model declares, so that an evaluation also attacks it adaptively through them.

A defense whose plain gradient is useless to an attacker (a non-differentiable or gradient-shattering layer:
Athalye et al., "Obfuscated Gradients Give a False Sense of Security", ICML 2018, BPDA; Tramer et al., "On
Adaptive Attacks to Adversarial Example Defenses", NeurIPS 2020) is evaluated honestly only if it is also
attacked through a gradient that works. The protocol: a module -- the model or any submodule -- may define

    def surrogate_gradients(self) -> Mapping[str, Callable[[], AbstractContextManager[object]]]

mapping each surrogate's name to a zero-argument factory of a context manager inside which the module
back-propagates that surrogate, its outputs unchanged. :func:`declared` collects the names over
``model.modules()``; :func:`surrogate_gradient` enters every declaring submodule's context of one name.
:class:`~stochdef.defenses.mwd.MWDLayer` declares ``"pseudo"`` (its pseudogradient); a straight-through estimate
of a rounding layer is the example below.

>>> import torch
>>> from torch import nn
>>> class Round(nn.Module):  # forward rounds; the surrogate back-propagates the identity
...     def __init__(self) -> None:
...         super().__init__()
...         self.straight_through = False
...     def forward(self, x: torch.Tensor) -> torch.Tensor:
...         return x + (x.round() - x).detach() if self.straight_through else x.round()
...     def surrogate_gradients(self):
...         return {"ste": lambda: switched(self, "straight_through", True)}
>>> net = nn.Sequential(Round(), nn.Linear(2, 1))
>>> declared(net)
('ste',)
>>> x = torch.tensor([[0.4, 0.6]], requires_grad=True)
>>> with surrogate_gradient(net, "ste"):
...     net(x).sum().backward()
>>> bool(x.grad.abs().sum() > 0), net[0].straight_through
(True, False)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from torch import nn

METHOD = "surrogate_gradients"
Surrogates = Mapping[str, Callable[[], AbstractContextManager[Any]]]


def _declarations(model: nn.Module) -> list[Surrogates]:
    found = []
    for module in model.modules():
        method = getattr(module, METHOD, None)
        if callable(method):
            table = method()
            if not isinstance(table, Mapping) or not all(isinstance(k, str) and k for k in table):
                raise TypeError(
                    f"{type(module).__name__}.{METHOD}() must return a mapping of names to context-manager "
                    f"factories, got {table!r}"
                )
            found.append(table)
    return found


def declared(model: nn.Module) -> tuple[str, ...]:
    """The surrogate gradients ``model`` or its submodules declare, sorted (empty: none)."""
    return tuple(sorted({name for table in _declarations(model) for name in table}))


@contextlib.contextmanager
def surrogate_gradient(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Within the block ``model`` back-propagates its declared surrogate ``name`` (every submodule declaring it)."""
    tables = [table for table in _declarations(model) if name in table]
    if not tables:
        raise ValueError(f"name must be a surrogate gradient the model declares {list(declared(model))}, got {name!r}")
    with contextlib.ExitStack() as stack:
        for table in tables:
            stack.enter_context(table[name]())
        yield model


@contextlib.contextmanager
def switched(module: nn.Module, attribute: str, value: object) -> Iterator[nn.Module]:
    """Within the block ``module.attribute`` is ``value``; the old value is restored after."""
    saved = getattr(module, attribute)
    setattr(module, attribute, value)
    try:
        yield module
    finally:
        setattr(module, attribute, saved)


__all__ = ["METHOD", "declared", "surrogate_gradient", "switched"]
