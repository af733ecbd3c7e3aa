"""Pure functions for layers whose weights are random per example (DESIGN.md, §C2).

Every row of a batch gets its own weight draw, vectorized, never with a Python loop over examples:

* :func:`gaussian_linear`: weights ``W ~ N(M, S^2)`` elementwise, by the local reparameterization trick
  (Kingma et al. 2015). For a linear layer this is *exact in distribution*: given the input, the
  outputs are independent Gaussians with mean ``x M^T + b`` and variance ``x^2 (S^2)^T + s_b^2``. It
  draws one normal per output unit instead of one per weight.
* :func:`gaussian_conv2d`: the same for convolutions, where the trick is *not* exact (a shared kernel
  correlates output positions), so each example gets an explicit kernel draw, run as one grouped
  convolution (:func:`per_example_conv2d`).
* :func:`per_example_linear`: explicit per-example weights (e.g. DropConnect masks), one ``bmm``.

All randomness comes from ``torch.randn``/``torch.rand`` on the global RNG, or from ``generator``
when given, so ``torch.manual_seed`` makes a run repeat exactly (contract 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gaussian_conv2d", "gaussian_linear", "per_example_conv2d", "per_example_linear"]


_TINY_VARIANCE = 1e-24  # keeps sqrt differentiable where every weight std is exactly 0


def standard_normal(
    shape: tuple[int, ...], *, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``N(0, 1)`` noise of ``shape`` with ``like``'s dtype and device."""
    return torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)


def row_bias(
    batch: int, bias_mean: torch.Tensor, bias_std: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """``(batch, out)``: ``bias_mean`` plus, when ``bias_std`` is given, an independent normal per row."""
    if bias_std is None:
        return bias_mean.expand(batch, -1)
    return bias_mean + bias_std * standard_normal((batch, *bias_mean.shape), like=bias_mean, generator=generator)


def gaussian_linear(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x W^T + b`` with ``W ~ N(weight_mean, weight_std^2)``, ``b ~ N(bias_mean, bias_std^2)`` per row.

    Exact in distribution (local reparameterization); differentiable in ``x``, the means and the stds.

    Example:
        >>> x = torch.ones(4000, 2)
        >>> out = gaussian_linear(x, torch.zeros(1, 2), torch.ones(1, 2))
        >>> round(out.var().item())  # Var = sum_i x_i^2 * std_i^2 = 2
        2
    """
    mean = F.linear(x, weight_mean, bias_mean)
    var = F.linear(x * x, weight_std * weight_std)
    if bias_std is not None:
        var = var + bias_std * bias_std
    eps = standard_normal(tuple(mean.shape), like=mean, generator=generator)
    return mean + torch.sqrt(var.clamp_min(_TINY_VARIANCE)) * eps


def per_example_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``out[b] = weight[b] @ x[b] + bias[b]`` for per-example ``weight`` of shape ``(B, out, in)``."""
    out = torch.bmm(weight, x.unsqueeze(-1)).squeeze(-1)
    return out if bias is None else out + bias


def per_example_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Convolve each example with its own kernel: ``weight`` is ``(B, out, in/groups, kh, kw)``.

    The batch is folded into channels and run as one convolution with ``B * groups`` groups.

    Example:
        >>> x = torch.rand(3, 2, 5, 5)
        >>> w = torch.rand(3, 4, 2, 3, 3)
        >>> out = per_example_conv2d(x, w)
        >>> torch.allclose(out[1], F.conv2d(x[1:2], w[1])[0], atol=1e-6)
        True
    """
    batch, c_in, height, width = x.shape
    c_out = weight.shape[1]
    out = F.conv2d(
        x.reshape(1, batch * c_in, height, width),
        weight.reshape(batch * c_out, *weight.shape[2:]),
        None if bias is None else bias.reshape(batch * c_out),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=batch * groups,
    )
    return out.view(batch, c_out, *out.shape[2:])


def gaussian_conv2d(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Conv2d with a kernel ``W ~ N(weight_mean, weight_std^2)`` drawn independently for each example."""
    batch = x.shape[0]
    eps = standard_normal((batch, *weight_mean.shape), like=weight_mean, generator=generator)
    weight = weight_mean + weight_std * eps
    bias = None if bias_mean is None else row_bias(batch, bias_mean, bias_std, generator)
    return per_example_conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
