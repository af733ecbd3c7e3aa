"""Noise injection (Pinot et al., "Theoretical evidence for adversarial robustness through randomization",
NeurIPS 2019): add exponential-family noise to the input or to any layer's output, at inference too.

The noise is parameterised by its standard deviation ``std``:

* ``gaussian``: ``N(0, std^2)``;
* ``laplace``: ``Laplace(0, b)`` with ``b = std / sqrt(2)``;
* ``uniform``: ``U(-a, a)`` with ``a = std * sqrt(3)``;
* ``exponential``: ``Exp(rate=1/std)`` minus its mean ``std`` (centred, so it shifts nothing on average).

Every element of every row gets its own draw, in ``train()`` and ``eval()`` alike (DESIGN.md contracts 1, 2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_choice, check_range

DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "laplace", "uniform", "exponential")


def sample_noise(
    distribution: str,
    std: float,
    shape: tuple[int, ...],
    *,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-mean noise of standard deviation ``std`` from ``distribution``, shaped ``shape``.

    Example:
        >>> z = sample_noise("laplace", 0.5, (20000,), like=torch.empty(0))
        >>> round(z.std().item(), 1)
        0.5
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    check_range("std", std, low=0.0)
    kw = {"dtype": like.dtype, "device": like.device, "generator": generator}
    if distribution == "gaussian":
        return std * torch.randn(shape, **kw)  # type: ignore[arg-type]
    u = torch.rand(shape, **kw)  # type: ignore[arg-type]
    if distribution == "uniform":
        return std * math.sqrt(3.0) * (2.0 * u - 1.0)
    if distribution == "exponential":
        return std * (-torch.log1p(-u) - 1.0)
    # Laplace by inverse CDF of u in [0, 1): b * sign(v) * -log(1 - 2|v|), v = u - 1/2.
    v = u - 0.5
    return (std / math.sqrt(2.0)) * -torch.sign(v) * torch.log1p(-2.0 * v.abs())


class NoiseInjection(nn.Module):
    """Add ``distribution`` noise of standard deviation ``std`` to its input, per element and per row.

    Example:
        >>> layer = NoiseInjection(distribution="gaussian", std=0.25).eval()
        >>> x = torch.zeros(2, 3)
        >>> bool((layer(x) != layer(x)).any())  # still random in eval mode
        True
    """

    def __init__(self, *, distribution: str = "gaussian", std: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        self.std = check_range("std", std, low=0.0)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"distribution={self.distribution!r}, std={self.std}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.std == 0.0:
            return x
        return x + sample_noise(self.distribution, self.std, tuple(x.shape), like=x, generator=self.generator)
