"""Hand a randomized model to Foolbox 3 with its output averaged over the model's randomness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from stochdef.defenses.validation import Bounds, check_bounds

from .eot import DEFAULT_MAX_BATCH, Reduce
from .wrapping import STOCHDEF_EOT, library_eot, module_device

if TYPE_CHECKING:
    import foolbox


def to_foolbox(
    model: nn.Module,
    *,
    bounds: Bounds,
    samples: int,
    reduce: Reduce = "logits",
    device: str | torch.device | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> foolbox.PyTorchModel:
    """A ``foolbox.PyTorchModel`` over ``EoT(model, samples=..., reduce=...)``: ``fb.PyTorchModel`` but averaged.

    Every Foolbox attack differentiates the averaged output (module-level EoT). Otherwise it behaves like
    ``foolbox.PyTorchModel(model, bounds=bounds, device=device)`` (DESIGN.md, §C5): the model is moved to
    ``device`` and left in the mode it is in (Foolbox warns if it is in training mode; stochdef defenses are
    random in ``eval()``, for ``nn.Dropout`` see :func:`~stochdef.adapters.keep_random`), and every query
    Foolbox makes is answered, including those its attacks make outside ``bounds`` (EAD, VirtualAdversarial).
    With ``samples > 1`` the first call finds how the model draws (:func:`~stochdef.adapters.eot_of`) and warns
    if its draws are identical or taken one call per draw.

    Example:
        >>> import foolbox as fb, torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
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
    eot = library_eot(model, samples=samples, reduce=reduce, max_batch=max_batch, bounds=bounds).to(dev)
    fmodel = foolbox.PyTorchModel(eot, bounds=bounds, device=dev)
    setattr(fmodel, STOCHDEF_EOT, eot)  # for stochdef.adapters.eot_of: Foolbox keeps only a closure over it
    return fmodel
