"""Hand a randomized model to Foolbox 3 with its output averaged over the model's randomness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from stochdef.defenses.validation import Bounds, check_bounds

from .eot import DEFAULT_MAX_BATCH, EoT, Reduce

if TYPE_CHECKING:
    import foolbox


def module_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to run on: ``device`` if given, else the model's (first parameter/buffer), else CPU."""
    if device is not None:
        return torch.device(device)
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_foolbox(
    model: nn.Module,
    *,
    bounds: Bounds,
    samples: int,
    reduce: Reduce = "logits",
    device: str | torch.device | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> foolbox.PyTorchModel:
    """A ``foolbox.PyTorchModel`` over ``EoT(model, samples=..., reduce=...)``.

    Every Foolbox attack differentiates the averaged output (module-level EoT). The model is put in
    ``eval()`` mode; stochdef defenses stay random there. Inputs outside ``bounds`` raise.

    Example:
        >>> import foolbox as fb, torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> fmodel = to_foolbox(net, bounds=(0, 1), samples=1)
        >>> attack = fb.attacks.FGSM()
        >>> x, y = torch.rand(2, 4), torch.tensor([0, 1])
        >>> _, adv, success = attack(fmodel, x, y, epsilons=0.1)
        >>> adv.shape
        torch.Size([2, 4])
    """
    import foolbox

    bounds = check_bounds("bounds", bounds)
    dev = module_device(model, device)
    eot = EoT(model, samples=samples, reduce=reduce, max_batch=max_batch, bounds=bounds).to(dev).eval()
    return foolbox.PyTorchModel(eot, bounds=bounds, device=dev)
