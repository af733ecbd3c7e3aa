"""stochdef.adapters: the EoT engine and the Foolbox / ART / torchattacks adapters.

Any randomized ``torch.nn.Module`` classifier goes to an attack library with its randomness averaged:

>>> import torch
>>> from torch import nn
>>> from stochdef.adapters import EoT, draw_kind, eot_gradient
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
>>> EoT(net, samples=8)(torch.rand(2, 4)).shape
torch.Size([2, 3])

How a model draws decides how its draws are averaged (:func:`draw_kind`: ``"per-row"``, ``"per-call"`` or
``"deterministic"``; DESIGN.md, §C2):

>>> draw_kind(net, torch.rand(2, 4))
'deterministic'

``to_foolbox``, ``to_art`` and ``to_torchattacks`` import their library on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .chunking import DEFAULT_MAX_BATCH, Chunk, chunked_sum, chunks, plan, replicate
from .draws import (
    DRAW_KINDS,
    DrawKind,
    DrawsWarning,
    PerCallDrawsWarning,
    distinct_draws,
    draw_kind,
    draws_taken,
)
from .eot import (
    EoT,
    cross_entropy,
    ensemble_accuracy,
    eot_gradient,
    eot_value_and_grad,
    expectation,
    log_mean_softmax,
    margin,
)
from .randomness import (
    FixedRandomness,
    IdenticalDrawsWarning,
    fix_randomness,
    identical_draws,
    is_random,
    keep_random,
)
from .torchattacks_model import to_torchattacks
from .wrapping import eot_of

if TYPE_CHECKING:
    from .art_classifier import EoTClassifier, to_art
    from .foolbox_model import to_foolbox

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DRAW_KINDS",
    "Chunk",
    "DrawKind",
    "DrawsWarning",
    "EoT",
    "EoTClassifier",
    "FixedRandomness",
    "IdenticalDrawsWarning",
    "PerCallDrawsWarning",
    "chunked_sum",
    "chunks",
    "cross_entropy",
    "distinct_draws",
    "draw_kind",
    "draws_taken",
    "ensemble_accuracy",
    "eot_of",
    "eot_gradient",
    "eot_value_and_grad",
    "expectation",
    "fix_randomness",
    "identical_draws",
    "is_random",
    "keep_random",
    "log_mean_softmax",
    "margin",
    "plan",
    "replicate",
    "to_art",
    "to_foolbox",
    "to_torchattacks",
]


def __getattr__(name: str) -> Any:
    if name in ("to_art", "EoTClassifier"):
        from . import art_classifier

        return getattr(art_classifier, name)
    if name == "to_foolbox":
        from .foolbox_model import to_foolbox

        return to_foolbox
    raise AttributeError(f"module 'stochdef.adapters' has no attribute {name!r}")
