"""What every adapter does alike: the ``EoT`` module handed to a library, the device to run on (DESIGN.md, §C5)."""

from __future__ import annotations

import torch
from torch import nn

from stochdef.defenses.validation import Bounds

from .eot import EoT, Reduce
from .randomness import check_draws_hook


def module_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to run on: ``device`` if given, else the model's (first parameter/buffer), else CPU."""
    if device is not None:
        return torch.device(device)
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def library_eot(model: nn.Module, *, samples: int, reduce: Reduce, max_batch: int, bounds: Bounds | None = None) -> EoT:
    """The ``EoT`` module an adapter hands a library: no checks on the library's queries (DESIGN.md, §C5).

    A library's attack may query the model anywhere (outside ``bounds``, at non-finite points); the library's
    own wrapper of the bare model answers, and so does this module (``validate=False``).

    Its mode is the model's (set on the wrapper alone: the model's layers keep theirs), so the library sees
    the mode the user left, as with the bare model; with ``samples > 1`` its first call warns if the model's
    draws are identical (:func:`~stochdef.adapters.randomness.warn_identical_draws`).
    """
    eot = EoT(model, samples=samples, reduce=reduce, max_batch=max_batch, bounds=bounds, validate=False)
    eot.training = model.training  # not eot.train(): that would reset every layer's own mode
    eot.register_forward_pre_hook(check_draws_hook)
    return eot
