"""The two samplers of a Gaussian-weight linear layer, named, and the switch between them (DESIGN.md, §C2).

A layer with ``W ~ N(M, S^2)`` and ``b ~ N(m_b, s_b^2)`` elementwise (SDR, Khan et al.; Adv-BNN, Liu et
al. 2019; SAP's RNW/RSW baselines, Dhillon et al. 2018) can be sampled two ways, both one independent
draw per batch row:

* ``"weights"`` (:func:`weight_sampled_linear`), **the papers' model and the default**: every weight of
  the layer is drawn for every row, ``y_b = W_b x_b + b_b``. A call is one draw of the sampled
  network, so one draw's input gradient ``dy/dx = W_b`` carries the weights' full noise. Vectorized
  (one ``bmm`` per chunk) and chunked so that no chunk draws more than ``max_elements`` weights;
  under autograd each chunk is recomputed in the backward pass from its own seed
  (``torch.utils.checkpoint``), so memory stays bounded by a chunk, not the batch.
* ``"local"`` (:func:`~stochdef.defenses.functional.gaussian_linear`), the **fast path**: the local
  reparameterization trick (Kingma et al. 2015) draws one normal per output unit from the
  pre-activation's exact law ``N(x M^T + m_b, x^2 (S^2)^T + s_b^2)``. Given the layer's input the
  output law is the same as ``"weights"`` (output units are independent in both), so the law of a
  network's output is the same; its input gradient is the conditional expectation of the
  ``"weights"`` gradient given the output, so the *expected* input gradient is the same too. One
  draw's gradient is much less noisy: use it where only expectations matter (EoT averages, ensemble
  predictions), never for a single draw an attacker sees.

A layer's ``sampler`` (``None``: follow the context) picks one; :func:`use_sampler` sets the context's
sampler (default ``"weights"``) for the layers that follow it; :func:`fast_sampling` is
``use_sampler("local")``, which the EoT engine (:mod:`stochdef.adapters.eot`) enters when it averages
two or more draws. The local trick applies to 2-D input only: with extra dimensions positions share a
weight draw, which it cannot express, so such inputs are always ``"weights"``-sampled.

Example:
    >>> torch.manual_seed(0) is not None
    True
    >>> x, mean, std = torch.ones(3, 4), torch.zeros(2, 4), torch.ones(2, 4)
    >>> sampled_linear(x, mean, std).shape  # the default: every weight drawn for every row
    torch.Size([3, 2])
    >>> with fast_sampling():
    ...     current_sampler()
    'local'
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

import torch
from torch.utils.checkpoint import checkpoint

from .functional import gaussian_linear, standard_normal
from .validation import check_choice, check_int

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "SAMPLERS",
    "current_sampler",
    "fast_sampling",
    "resolve_sampler",
    "sampled_linear",
    "use_sampler",
    "weight_sampled_linear",
]

Sampler = Literal["weights", "local"]
SAMPLERS: tuple[str, ...] = ("weights", "local")
DEFAULT_MAX_ELEMENTS = 1 << 22  # weights drawn per chunk (16 MiB in float32)

_SAMPLER: contextvars.ContextVar[str] = contextvars.ContextVar("stochdef_sampler", default="weights")


def current_sampler() -> str:
    """The context's sampler: ``"weights"`` unless inside :func:`use_sampler` / :func:`fast_sampling`."""
    return _SAMPLER.get()


@contextmanager
def use_sampler(sampler: str) -> Iterator[None]:
    """Inside the block, layers whose ``sampler`` is ``None`` sample with ``sampler``; restored on exit.

    Example:
        >>> with use_sampler("local"):
        ...     with use_sampler("weights"):
        ...         inner = current_sampler()
        ...     outer = current_sampler()
        >>> inner, outer, current_sampler()
        ('weights', 'local', 'weights')
    """
    token = _SAMPLER.set(check_choice("sampler", sampler, SAMPLERS))
    try:
        yield
    finally:
        _SAMPLER.reset(token)


def fast_sampling() -> AbstractContextManager[None]:
    """``use_sampler("local")``: the fast path, for computations that only need expectations over draws."""
    return use_sampler("local")


def resolve_sampler(sampler: str | None) -> str:
    """A layer's own ``sampler``, or the context's when it is ``None``."""
    return current_sampler() if sampler is None else sampler


def _rows(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``x_b (S * E_b)^T`` for ``E_b ~ N(0, 1)`` of the weight's shape, one per row ``b`` (the noise part)."""
    eps = standard_normal((x.shape[0], *weight_mean.shape), like=weight_mean, generator=generator)
    return torch.einsum("b...i,boi->b...o", x, weight_std * eps)


def _seeded_rows(x: torch.Tensor, weight_mean: torch.Tensor, weight_std: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator(device=weight_mean.device)
    generator.manual_seed(seed)
    return _rows(x, weight_mean, weight_std, generator)


def weight_sampled_linear(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """``x W_b^T + b_b`` with every weight drawn per row: ``W_b ~ N(weight_mean, weight_std^2)`` (the papers' model).

    ``x`` is ``(B, in)`` or ``(B, ..., in)`` (then a row's positions share its draw). Rows are processed
    in chunks of at most ``max_elements // weight.numel()`` rows (at least one); a batch that needs more
    than one chunk draws each chunk's weights from a seed taken from ``generator`` (or the global RNG),
    and under autograd recomputes them in the backward pass instead of keeping them. Differentiable in
    ``x``, the means and the stds.

    Example:
        >>> x = torch.ones(4000, 2)
        >>> out = weight_sampled_linear(x, torch.zeros(1, 2), torch.ones(1, 2), max_elements=1000)
        >>> round(out.var().item())  # Var = sum_i x_i^2 * std_i^2 = 2
        2
    """
    max_elements = check_int("max_elements", max_elements)
    if x.dim() < 2:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    batch = x.shape[0]
    mean = torch.nn.functional.linear(x, weight_mean, bias_mean)
    if bias_std is not None:
        shape = (batch, *([1] * (x.dim() - 2)), bias_std.shape[0])
        mean = mean + bias_std * standard_normal((batch, bias_std.shape[0]), like=mean, generator=generator).view(shape)
    rows = max(1, max_elements // weight_mean.numel())
    if batch <= rows:
        return mean + _rows(x, weight_mean, weight_std, generator)
    parts = []
    for start in range(0, batch, rows):
        chunk = x[start : start + rows]
        seed = int(torch.randint(0, 2**62, (1,), device=x.device, generator=generator).item())
        if torch.is_grad_enabled() and (chunk.requires_grad or weight_std.requires_grad):
            part = checkpoint(_seeded_rows, chunk, weight_mean, weight_std, seed, use_reentrant=False)
        else:
            part = _seeded_rows(chunk, weight_mean, weight_std, seed)
        parts.append(part)
    return mean + torch.cat(parts)


def sampled_linear(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    sampler: str | None = None,
    generator: torch.Generator | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """``x W^T + b``, one draw of ``W ~ N(weight_mean, weight_std^2)`` (and ``b``) per row, by ``sampler``.

    ``sampler`` ``None`` follows the context (:func:`use_sampler`; default ``"weights"``). ``"local"``
    applies to 2-D ``x`` only; other ranks are always sampled per weight.

    Example:
        >>> x = torch.ones(5, 3)
        >>> sampled_linear(x, torch.zeros(2, 3), torch.ones(2, 3), sampler="local").shape
        torch.Size([5, 2])
    """
    name = check_choice("sampler", resolve_sampler(sampler), SAMPLERS)
    if name == "local" and x.dim() == 2:
        return gaussian_linear(x, weight_mean, weight_std, bias_mean, bias_std, generator=generator)
    return weight_sampled_linear(
        x, weight_mean, weight_std, bias_mean, bias_std, generator=generator, max_elements=max_elements
    )
