"""What every adapter does alike: the ``EoT`` module handed to a library, the device to run on (DESIGN.md, §C5)."""

from __future__ import annotations

import torch
from torch import nn

from stochdef.defenses.validation import Bounds

from .draws import check_draws_hook
from .eot import EoT, Reduce


def module_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to run on: ``device`` if given, else the model's (first parameter/buffer), else CPU."""
    if device is not None:
        return torch.device(device)
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def eot_of(adapter: object) -> EoT:
    """The :class:`~stochdef.adapters.EoT` module an adapter averages with: ``to_torchattacks``' result itself,
    ``to_foolbox``'s (kept on the Foolbox model) or ``to_art``'s (its estimator's). Its ``draws`` tells how the
    model's draws are taken (found at the adapter's first non-empty call with ``samples > 1``).

    >>> import torch
    >>> from torch import nn
    >>> from stochdef.adapters import to_torchattacks
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train()  # dropout in training mode: per row
    >>> eot = eot_of(to_torchattacks(net, samples=4))
    >>> _ = eot(torch.rand(2, 4))
    >>> eot.draws
    'per-row'
    """
    for found in (adapter, getattr(adapter, "_eot", None), getattr(adapter, STOCHDEF_EOT, None)):
        if isinstance(found, EoT):
            return found
    raise TypeError(f"adapter must come from to_foolbox, to_art or to_torchattacks, got {type(adapter).__name__}")


STOCHDEF_EOT = "_stochdef_eot"  # the attribute of a Foolbox model from to_foolbox that holds its EoT module


def library_eot(model: nn.Module, *, samples: int, reduce: Reduce, max_batch: int, bounds: Bounds | None = None) -> EoT:
    """The ``EoT`` module an adapter hands a library: no checks on the library's queries (DESIGN.md, §C5).

    A library's attack may query the model anywhere (outside ``bounds``, at non-finite points); the library's
    own wrapper of the bare model answers, and so does this module (``validate=False``).

    Its mode is the model's (set on the wrapper alone: the model's layers keep theirs), so the library sees
    the mode the user left, as with the bare model; with ``samples > 1`` its first call finds how the model
    draws (``eot.draws``, :func:`~stochdef.adapters.draw_kind`) and warns if its draws are identical or taken
    one call per draw (:func:`~stochdef.adapters.draws.warn_draws`).
    """
    eot = EoT(model, samples=samples, reduce=reduce, max_batch=max_batch, bounds=bounds, validate=False)
    eot.training = model.training  # not eot.train(): that would reset every layer's own mode
    eot.register_forward_pre_hook(check_draws_hook)
    return eot
