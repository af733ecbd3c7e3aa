"""Flipout (Wen, Vicol, Ba, Tran, Grosse, "Flipout: Efficient Pseudo-Independent Weight Perturbations on
Mini-Batches", ICLR 2018) for Gaussian-weight linear and convolution layers (DESIGN.md, §C2).

A call draws **one** noise tensor ``E ~ N(0, 1)`` of the weight's shape and, for every batch row ``b``,
a random sign vector on the input side ``r_b`` and on the output side ``s_b`` (input and output
channels for a convolution). Row ``b`` uses ``W_b = M + (S * E) * (s_b r_b^T)``:

* every row's ``W_b`` is an exact ``N(M, S^2)`` draw of the whole layer (``E`` is symmetric and
  independent of the signs, so ``E * (s_b r_b^T)`` is again i.i.d. ``N(0, 1)``); a row's output,
  its input gradient ``dy_b/dx_b = W_b`` and anything else about one example have the per-weight
  sampler's law exactly;
* two rows' weights are uncorrelated (``E[s_b s_c r_b r_c] = 0``) but not independent: they share
  ``|E|``. Nothing about one example depends on that; averages over rows of a nonlinear function
  of the weights do (their variance), which is why the EoT engine's averages sample otherwise;
* the forward pass is two matrix products (two convolutions): ``x M^T + ((x * r_b)(S * E)^T) * s_b``;
  the random numbers are ``out * in + B * (in + out)`` instead of ``B * out * in``.

Biases are drawn per row, ``b_b ~ N(m_b, s_b^2)`` (``B * out`` normals). Randomness comes from
``generator`` when given, else the global RNG (DESIGN.md, §C4).

Example:
    >>> x = torch.ones(3, 4)
    >>> flipout_linear(x, torch.zeros(2, 4), torch.ones(2, 4)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .functional import row_bias, standard_normal

__all__ = ["flipout_conv2d", "flipout_linear", "random_signs"]


def random_signs(
    shape: tuple[int, ...], *, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Independent ``+1`` / ``-1`` with probability 1/2 each, of ``shape``, with ``like``'s dtype and device.

    The 8 bits of ``ceil(numel / 8)`` uniform random bytes, unpacked through a 256-row table (one
    ``randint`` per sign costs about as much as the layer's matrix product).

    Example:
        >>> signs = random_signs((1000,), like=torch.zeros(1))
        >>> sorted(signs.unique().tolist()), abs(float(signs.mean())) < 0.2
        ([-1.0, 1.0], True)
    """
    count = math.prod(shape)
    octets = torch.randint(0, 256, ((count + 7) // 8,), dtype=torch.uint8, device=like.device, generator=generator)
    codes = torch.arange(256, device=like.device)[:, None].bitwise_right_shift(torch.arange(8, device=like.device))
    table = codes.bitwise_and_(1).to(like.dtype).mul_(2.0).sub_(1.0)  # row v: the signs of v's 8 bits
    return F.embedding(octets.long(), table).view(-1)[:count].view(shape)


def flipout_linear(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x W_b^T + b_b`` with Flipout's ``W_b = M + (S * E) * (s_b r_b^T)``: an exact ``N(M, S^2)`` draw per row.

    ``x`` is ``(B, in)`` or ``(B, ..., in)`` (then a row's positions share its draw, as under the
    per-weight sampler). Differentiable in ``x``, the means and the stds. Draws ``E`` first, then
    ``r``, ``s``, then the bias noise.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> x = torch.ones(8, 3)
        >>> y = flipout_linear(x, torch.zeros(1, 3), torch.ones(1, 3))
        >>> bool(y.abs().unique().numel() <= 4)  # one |E| per call: every row is +-E1 +-E2 +-E3
        True
    """
    if x.dim() < 2:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    batch, out_features, in_features = x.shape[0], weight_mean.shape[0], weight_mean.shape[1]
    noise = weight_std * standard_normal(tuple(weight_mean.shape), like=weight_mean, generator=generator)
    view = (batch, *([1] * (x.dim() - 2)))
    r = random_signs((batch, in_features), like=x, generator=generator).view(*view, in_features)
    s = random_signs((batch, out_features), like=x, generator=generator).view(*view, out_features)
    y = F.linear(x, weight_mean) + F.linear(x * r, noise) * s
    if bias_mean is None:
        return y
    return y + row_bias(batch, bias_mean, bias_std, generator).view(*view, out_features)


def flipout_conv2d(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    **geometry: Any,
) -> torch.Tensor:
    """Conv2d whose kernel for row ``b`` is Flipout's ``M + (S * E) * (s_b r_b^T)``, signs on channels.

    ``conv(x, M) + conv(x * r_b, S * E) * s_b`` with ``r_b`` on the input channels and ``s_b`` on the
    output channels: every row's kernel is an exact ``N(M, S^2)`` draw (with ``groups``, each kernel
    entry still gets the sign of its own input and output channel). ``geometry``: ``stride``,
    ``padding``, ``dilation``, ``groups`` as :func:`torch.nn.functional.conv2d` takes them.

    Example:
        >>> x = torch.rand(5, 2, 6, 6)
        >>> flipout_conv2d(x, torch.zeros(4, 2, 3, 3), torch.ones(4, 2, 3, 3), padding=1).shape
        torch.Size([5, 4, 6, 6])
    """
    if x.dim() != 4:
        raise ValueError(f"x must be a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    batch, out_channels = x.shape[0], weight_mean.shape[0]
    noise = weight_std * standard_normal(tuple(weight_mean.shape), like=weight_mean, generator=generator)
    r = random_signs((batch, x.shape[1]), like=x, generator=generator)[:, :, None, None]
    s = random_signs((batch, out_channels), like=x, generator=generator)[:, :, None, None]
    y = F.conv2d(x, weight_mean, None, **geometry) + F.conv2d(x * r, noise, None, **geometry) * s
    if bias_mean is None:
        return y
    return y + row_bias(batch, bias_mean, bias_std, generator)[:, :, None, None]
