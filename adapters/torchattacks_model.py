"""Hand a randomized model to torchattacks with its output averaged over the model's randomness."""

from __future__ import annotations

from torch import nn

from stochdef.defenses.validation import Bounds, check_bounds

from .eot import DEFAULT_MAX_BATCH, EoT, Reduce
from .wrapping import library_eot


def to_torchattacks(
    model: nn.Module,
    *,
    samples: int,
    reduce: Reduce = "logits",
    bounds: Bounds = (0.0, 1.0),
    max_batch: int = DEFAULT_MAX_BATCH,
) -> EoT:
    """An ``nn.Module`` any ``torchattacks.Attack`` accepts: ``EoT(model, samples=..., reduce=...)``.

    It behaves like the bare model in everything but the averaging (DESIGN.md, §C5): it answers every query
    the attack makes (NIFGSM, SPSA, EAD, SparseFool and the smoothing attacks PGDRS query outside the box),
    and it is in the model's mode; torchattacks calls ``eval()`` on it before it attacks (stochdef defenses
    stay random there; for ``nn.Dropout`` see :func:`~stochdef.adapters.keep_random`). torchattacks assumes
    inputs in ``[0, 1]``; ``bounds`` is recorded, not enforced. With ``samples > 1`` the first call finds how
    the model draws (``.draws``) and warns if its draws are identical or taken one call per draw.

    Example:
        >>> import torch, torchattacks
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> attack = torchattacks.FGSM(to_torchattacks(net, samples=1), eps=0.1)
        >>> attack(torch.rand(2, 4), torch.tensor([0, 1])).shape
        torch.Size([2, 4])
    """
    bounds = check_bounds("bounds", bounds)
    return library_eot(model, samples=samples, reduce=reduce, max_batch=max_batch, bounds=bounds)
