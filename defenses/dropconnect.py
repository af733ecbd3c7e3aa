"""DropConnect (Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013): each weight
of a linear layer is dropped (set to 0) with probability ``p``, independently for every example.

Khan et al. (SDR) use it with ``p = 0.2`` as a baseline that stays random at inference. Here the
randomness hangs on an explicit switch, ``stochastic=True`` (the default), never on ``self.training``:
``DropConnectLinear(..., stochastic=True).eval()`` still draws masks.

Rescaling convention ("inverted" DropConnect): a kept weight is divided by ``1 - p``, so
``E[output] = x W^T + b`` and ``stochastic=False`` (the plain layer with ``W``) is the mean network.
Wan et al. instead leave training weights unscaled and approximate inference by moment matching; with
the inverted convention the trained ``W`` means the same thing in both switch positions. Only weights
are masked; the bias is kept (one bias per unit, as in Wan et al.'s ``r = a((M * W) v)``).

Every row of a batch draws its own ``(out, in)`` Bernoulli mask (DESIGN.md, §C2): exact, and
vectorized as one ``bmm`` over per-example weights, so it costs ``O(batch * out * in)`` memory and random
numbers, unlike ``nn.Linear``. Given ``x``, one unit's output ``y = b + sum_i m_i W_i x_i / (1 - p)``,
``m_i ~ Bernoulli(1 - p)``, has mean ``b + W x`` and variance ``p / (1 - p) * sum_i W_i^2 x_i^2``.

Example:
    >>> layer = DropConnectLinear(4, 3, p=0.2).eval()
    >>> x = torch.ones(2, 4)
    >>> layer(x).shape, layer.stochastic
    (torch.Size([2, 3]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .functional import per_example_linear
from .models import mlp
from .validation import check_int, check_range

__all__ = ["DropConnectLinear", "dropconnect_linear", "dropconnect_mask", "dropconnect_mlp", "set_stochastic"]


def check_p(p: float) -> float:
    """``p`` as a float if it is a drop probability in ``[0, 1)``, else ``ValueError`` naming ``p``."""
    return check_range("p", p, low=0.0, high=1.0, high_open=True)


def dropconnect_mask(
    batch: int, weight: torch.Tensor, *, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A boolean keep-mask of shape ``(batch, *weight.shape)``: each entry True with probability ``1 - p``."""
    u = torch.rand((batch, *weight.shape), dtype=weight.dtype, device=weight.device, generator=generator)
    return u >= p


def dropconnect_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``out[b] = (M_b * weight / (1 - p)) @ x[b] + bias`` with an independent mask ``M_b`` per row of ``x``.

    Example:
        >>> w = torch.ones(1, 1000)
        >>> out = dropconnect_linear(torch.ones(8, 1000), w, p=0.2)
        >>> bool((out - 1000).abs().max() < 100)  # each row sums ~800 kept weights of 1 / 0.8
        True
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, features), got {tuple(x.shape)}")
    if p == 0.0:
        return F.linear(x, weight, bias)
    mask = dropconnect_mask(x.shape[0], weight, p=p, generator=generator)
    return per_example_linear(x, mask * (weight / (1.0 - p)), bias)


class DropConnectLinear(nn.Module):
    """A linear layer whose weights are dropped with probability ``p`` per example (``stochastic=True``).

    Example:
        >>> layer = DropConnectLinear(3, 2, p=0.5, stochastic=False)
        >>> x = torch.rand(4, 3)
        >>> torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # the mean network
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        p: float = 0.2,
        bias: bool = True,
        stochastic: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.p = check_p(p)
        if not isinstance(stochastic, bool):
            raise TypeError(f"stochastic must be a bool, got {type(stochastic).__name__} ({stochastic!r})")
        self.stochastic = stochastic
        self.generator = generator
        ref = nn.Linear(in_features, out_features, bias=bias)
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, p={self.p}, "
            f"bias={self.bias is not None}, stochastic={self.stochastic}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features in its last dimension, got {tuple(x.shape)}")
        if not self.stochastic:
            return F.linear(x, self.weight, self.bias)
        return dropconnect_linear(x, self.weight, self.bias, p=self.p, generator=self.generator)


def set_stochastic(model: nn.Module, stochastic: bool) -> nn.Module:
    """Flip the ``stochastic`` switch of every :class:`DropConnectLinear` in ``model``; returns ``model``."""
    for module in model.modules():
        if isinstance(module, DropConnectLinear):
            module.stochastic = stochastic
    return model


def dropconnect_mlp(sizes: Sequence[int] = (784, 100, 100, 100, 10), *, p: float = 0.2) -> nn.Sequential:
    """The SDR paper's ReLU MLP with DropConnect on every linear layer.

    Example:
        >>> dropconnect_mlp((64, 32, 10))(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """
    return mlp(sizes, layer=partial(DropConnectLinear, p=check_p(p)))
