"""The three samplers of a Gaussian-weight linear or convolution layer, named, and the switch between them
(DESIGN.md, §C2).

A layer with ``W ~ N(M, S^2)`` and ``b ~ N(m_b, s_b^2)`` elementwise (SDR, Khan et al.; Adv-BNN, Liu et
al. 2019; SAP's RNW/RSW baselines, Dhillon et al. 2018) can be sampled three ways, each one draw per
batch row:

* ``"weights"`` (:func:`weight_sampled_linear`; for a convolution
  :func:`~stochdef.defenses.functional.gaussian_conv2d`), **strict independence**: every weight of the
  layer is drawn for every row, ``y_b = W_b x_b + b_b``, so rows are independent draws of the sampled
  network. Linear: ``B * out * in`` normals, memory-bound, 160-290x a plain ``nn.Linear`` (``stochdef
  bench layers``); chunked so that no chunk draws more than ``max_elements`` weights, each chunk
  recomputed in the backward pass from its own seed (``torch.utils.checkpoint``). Convolution: a kernel
  per row, one grouped convolution, measured 0.9-1.3x a plain ``nn.Conv2d`` forward+backward on CPU.
* ``"flipout"`` (:func:`~stochdef.defenses.flipout.flipout_linear`, ``flipout_conv2d``; Wen et al., ICLR
  2018): one noise tensor ``E`` per call and random signs per row, ``W_b = M + (S * E) * (s_b r_b^T)``.
  Every row's weights are an exact ``N(M, S^2)`` draw, so one row's output and input gradient have the
  per-weight law exactly; two rows are uncorrelated but not independent (they share ``|E|``). Two
  matrix products (two convolutions): 2.4-3.2x a plain linear, 1.6-2.3x a plain convolution.
* ``"local"`` (:func:`~stochdef.defenses.functional.gaussian_linear`), the **fast path for averages**:
  the local reparameterization trick (Kingma et al. 2015) draws one normal per output unit from the
  pre-activation's exact law ``N(x M^T + m_b, x^2 (S^2)^T + s_b^2)``; rows independent. Given the input
  the output law is the per-weight one; the input gradient is the per-weight gradient's conditional
  expectation given the output, so the *expected* input gradient is the same but one draw's gradient
  is much less noisy: never for a single draw an attacker sees. Linear layers with 2-D input only
  (extra dimensions and convolutions, whose positions share a kernel, take ``"weights"``).

Which serves what: a single draw (what an attacker, a naive cell, a judge's draw sees) uses an exact
per-row sampler; with no context and no ``sampler`` of its own a layer takes its kind's default
(:func:`resolve_sampler`): ``"flipout"`` for linear layers (the per-weight draws cost 190-290x),
``"weights"`` for convolutions (per-example kernels are cheaper than Flipout's two convolutions on CPU,
and independent). :func:`use_sampler` sets one sampler for the layers that follow it (``"weights"`` when
rows must be independent); :func:`fast_sampling` is ``use_sampler("local")``, which the EoT engine enters
when it averages two or more draws.

Example:
    >>> torch.manual_seed(0) is not None
    True
    >>> x, mean, std = torch.ones(3, 4), torch.zeros(2, 4), torch.ones(2, 4)
    >>> sampled_linear(x, mean, std).shape  # the default: Flipout, an exact draw per row
    torch.Size([3, 2])
    >>> resolve_sampler(None), resolve_sampler(None, conv=True)
    ('flipout', 'weights')
    >>> with fast_sampling():
    ...     current_sampler(), resolve_sampler(None, conv=True)
    ('local', 'weights')
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

import torch
from torch.utils.checkpoint import checkpoint

from .flipout import flipout_conv2d, flipout_linear
from .functional import gaussian_conv2d, gaussian_linear, standard_normal
from .validation import check_choice, check_int

__all__ = [
    "CONV_DEFAULT",
    "DEFAULT_MAX_ELEMENTS",
    "LINEAR_DEFAULT",
    "SAMPLERS",
    "current_sampler",
    "fast_sampling",
    "resolve_sampler",
    "sampled_conv2d",
    "sampled_linear",
    "use_sampler",
    "weight_sampled_linear",
]

Sampler = Literal["weights", "local", "flipout"]
SAMPLERS: tuple[str, ...] = ("weights", "local", "flipout")
LINEAR_DEFAULT = "flipout"  # a single draw of a linear layer: exact per row at two matrix products
CONV_DEFAULT = "weights"  # a single draw of a convolution: a kernel per row, cheaper than Flipout on CPU
DEFAULT_MAX_ELEMENTS = 1 << 22  # weights drawn per chunk (16 MiB in float32)

_SAMPLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("stochdef_sampler", default=None)


def current_sampler() -> str | None:
    """The context's sampler, or ``None`` (each layer's default) outside :func:`use_sampler` / :func:`fast_sampling`."""
    return _SAMPLER.get()


@contextmanager
def use_sampler(sampler: str | None) -> Iterator[None]:
    """Inside the block, layers whose ``sampler`` is ``None`` sample with ``sampler``; restored on exit.

    ``None`` restores each layer kind's default (:func:`resolve_sampler`), e.g. for a single-draw
    computation run inside :func:`fast_sampling`.

    Example:
        >>> with use_sampler("local"):
        ...     with use_sampler("weights"):
        ...         inner = current_sampler()
        ...     with use_sampler(None):
        ...         default = resolve_sampler(None)
        ...     outer = current_sampler()
        >>> inner, default, outer, current_sampler()
        ('weights', 'flipout', 'local', None)
    """
    token = _SAMPLER.set(None if sampler is None else check_choice("sampler", sampler, SAMPLERS))
    try:
        yield
    finally:
        _SAMPLER.reset(token)


def fast_sampling() -> AbstractContextManager[None]:
    """``use_sampler("local")``: the fast path, for computations that only need expectations over draws."""
    return use_sampler("local")


def resolve_sampler(sampler: str | None, *, conv: bool = False) -> str:
    """The sampler a layer uses: its own ``sampler``, else the context's, else its kind's default.

    Defaults: :data:`LINEAR_DEFAULT` (``"flipout"``) for linear layers, :data:`CONV_DEFAULT`
    (``"weights"``) for convolutions (``conv=True``), which also take ``"weights"`` for ``"local"``.
    """
    name = current_sampler() if sampler is None else sampler
    if name is None:
        return CONV_DEFAULT if conv else LINEAR_DEFAULT
    if conv and name == "local":
        return "weights"
    return name


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

    ``sampler`` ``None`` follows the context (:func:`use_sampler`; outside any, ``"flipout"``). ``"local"``
    applies to 2-D ``x`` only; other ranks are then sampled per weight. ``max_elements``: ``"weights"`` only.

    Example:
        >>> x = torch.ones(5, 3)
        >>> sampled_linear(x, torch.zeros(2, 3), torch.ones(2, 3), sampler="local").shape
        torch.Size([5, 2])
    """
    name = check_choice("sampler", resolve_sampler(sampler), SAMPLERS)
    if name == "local" and x.dim() == 2:
        return gaussian_linear(x, weight_mean, weight_std, bias_mean, bias_std, generator=generator)
    if name == "flipout":
        return flipout_linear(x, weight_mean, weight_std, bias_mean, bias_std, generator=generator)
    return weight_sampled_linear(
        x, weight_mean, weight_std, bias_mean, bias_std, generator=generator, max_elements=max_elements
    )


def sampled_conv2d(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_std: torch.Tensor | None = None,
    *,
    sampler: str | None = None,
    generator: torch.Generator | None = None,
    **geometry: Any,
) -> torch.Tensor:
    """Conv2d with one draw of the kernel ``W ~ N(weight_mean, weight_std^2)`` (and the bias) per row.

    ``sampler`` ``None`` follows the context, outside any ``"weights"`` (a kernel per row,
    :func:`~stochdef.defenses.functional.gaussian_conv2d`); ``"local"`` means ``"weights"`` here;
    ``"flipout"``: :func:`~stochdef.defenses.flipout.flipout_conv2d`. ``geometry``: ``stride``,
    ``padding``, ``dilation``, ``groups``.

    Example:
        >>> x = torch.rand(4, 2, 5, 5)
        >>> sampled_conv2d(x, torch.zeros(3, 2, 3, 3), torch.ones(3, 2, 3, 3), sampler="flipout").shape
        torch.Size([4, 3, 3, 3])
    """
    name = resolve_sampler(check_choice("sampler", sampler, SAMPLERS) if sampler is not None else None, conv=True)
    if name == "flipout":
        return flipout_conv2d(x, weight_mean, weight_std, bias_mean, bias_std, generator=generator, **geometry)
    return gaussian_conv2d(x, weight_mean, weight_std, bias_mean, bias_std, generator=generator, **geometry)
