"""The Bayesian layers of Adv-BNN (Liu et al., ICLR 2019); the family's entry point is :mod:`.bayes`.

Each weight is ``w = mu + exp(s) * eps`` with ``eps ~ N(0, 1)`` drawn on every call, in ``train()`` and
``eval()`` alike, and **each row of a batch gets its own weights** (DESIGN.md, §C1 and §C2):

* :class:`BayesLinear` takes an exact draw of every weight per row by default, by Flipout
  (:func:`~stochdef.defenses.flipout.flipout_linear`: one noise matrix per call, random signs per row,
  two matrix products; the paper's sampled network for every row); ``sampler="weights"`` draws every
  weight independently per row (strict independence across rows, 160-290x a plain layer); with
  ``sampler="local"`` or inside :func:`~stochdef.defenses.sampling.fast_sampling` (the EoT engine's
  averages) it samples its outputs by the local reparameterization trick (:func:`log_std_linear`): same
  output law and expected input gradient, a far less noisy single-draw gradient;
* :class:`BayesConv2d` draws an explicit kernel per example by default, run as one grouped convolution
  (:func:`~stochdef.defenses.functional.gaussian_conv2d`; cheaper than Flipout's two convolutions on
  CPU, ``stochdef bench layers``), or by Flipout with ``sampler="flipout"``; output positions sharing
  a kernel are correlated, so the local trick would be wrong there (``"local"`` means per-example
  kernels);
* :class:`BayesBatchNorm2d` normalizes exactly as ``nn.BatchNorm2d`` and applies a per-row draw of its
  affine scale and shift.

The prior is ``N(0, prior_std^2)``; :func:`gaussian_kl` is the closed-form KL of the paper's eq. 6.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .functional import standard_normal
from .sampling import SAMPLERS, resolve_sampler, sampled_conv2d, sampled_linear
from .validation import check_choice, check_range

__all__ = ["BayesBatchNorm2d", "BayesConv2d", "BayesLinear", "BayesModule", "gaussian_kl"]


def gaussian_kl(mean: torch.Tensor, log_std: torch.Tensor, *, prior_std: float) -> torch.Tensor:
    """Elementwise ``KL(N(mean, exp(log_std)^2) || N(0, prior_std^2))``, Adv-BNN eq. 6.

    ``log(s0 / sigma) + (sigma^2 + mean^2) / (2 s0^2) - 1/2`` with ``sigma = exp(log_std)``.

    Example:
        >>> gaussian_kl(torch.tensor([0.0]), torch.tensor([math.log(0.1)]), prior_std=0.1)
        tensor([0.])
    """
    return math.log(prior_std) - log_std + (torch.exp(2.0 * log_std) + mean * mean) / (2.0 * prior_std**2) - 0.5


def log_std_linear(
    x: torch.Tensor,
    weight_mean: torch.Tensor,
    weight_log_std: torch.Tensor,
    bias_mean: torch.Tensor | None = None,
    bias_log_std: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x W^T + b`` with ``W ~ N(weight_mean, exp(weight_log_std)^2)`` (and ``b`` alike), a draw per row.

    The local reparameterization of :func:`~stochdef.defenses.functional.gaussian_linear`, taking log-stds:
    the output variance ``x^2 exp(2 s)^T + exp(2 s_b)`` is formed with one ``exp`` per weight, which keeps
    a forward+backward pass near two plain ones (``stochdef bench layers``). Same draws as
    ``gaussian_linear(x, weight_mean, exp(weight_log_std), ...)`` under the same seed.

    Example:
        >>> out = log_std_linear(torch.ones(4000, 2), torch.zeros(1, 2), torch.zeros(1, 2))
        >>> round(out.var().item())  # sum_i x_i^2 * exp(2 s_i) = 2
        2
    """
    mean = F.linear(x, weight_mean, bias_mean)
    var = F.linear(
        x * x, torch.exp(2.0 * weight_log_std), None if bias_log_std is None else torch.exp(2.0 * bias_log_std)
    )
    if bias_log_std is None:  # a zero input row would have variance 0, whose sqrt has no gradient
        var = var.clamp_min(1e-24)
    eps = standard_normal(tuple(mean.shape), like=mean, generator=generator)
    return torch.addcmul(mean, var.sqrt(), eps)


def _draw(mean: torch.Tensor, log_std: torch.Tensor, batch: int, generator: torch.Generator | None) -> torch.Tensor:
    """``batch`` independent draws of ``mean + exp(log_std) * eps``, stacked on a new first dimension."""
    return mean + torch.exp(log_std) * standard_normal((batch, *mean.shape), like=mean, generator=generator)


class BayesModule(nn.Module):
    """Base of the Bayes layers: the prior, the mean-weights switch and the KL of its ``(mean, log_std)`` pairs.

    ``stochastic`` (default ``True``) is the only switch between sampling and the mean weights; it never
    depends on ``self.training``. Use :func:`mean_weights` rather than setting it by hand.
    """

    prior_std: float
    stochastic: bool
    generator: torch.Generator | None
    weight_mean: nn.Parameter
    weight_log_std: nn.Parameter
    bias_mean: nn.Parameter | None
    bias_log_std: nn.Parameter | None

    def _setup(self, prior_std: float, init_log_std: float | None, generator: torch.Generator | None) -> float:
        self.prior_std = check_range("prior_std", prior_std, low=0.0, low_open=True)
        init = math.log(self.prior_std) if init_log_std is None else check_range("init_log_std", init_log_std)
        if not math.isfinite(init):
            raise ValueError(f"init_log_std must be finite, got {init_log_std}")
        self.stochastic = True
        self.generator = generator
        return init

    def _log_std(self, mean: torch.Tensor, init: float) -> nn.Parameter:
        return nn.Parameter(torch.full_like(mean, init))

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The ``(mean, log_std)`` parameter pairs of this layer: the weight's, and the bias's if any."""
        out: list[tuple[torch.Tensor, torch.Tensor]] = [(self.weight_mean, self.weight_log_std)]
        if self.bias_mean is not None and self.bias_log_std is not None:
            out.append((self.bias_mean, self.bias_log_std))
        return out

    def kl(self) -> torch.Tensor:
        """``KL(q || p)`` of all this layer's weights (eq. 6, summed)."""
        terms = [gaussian_kl(m, s, prior_std=self.prior_std).sum() for m, s in self.pairs()]
        return functools.reduce(operator.add, terms)  # terms[0] + terms[1] + ...: one or two KL sums

    def extra_repr(self) -> str:
        return f"prior_std={self.prior_std}, stochastic={self.stochastic}"


class BayesLinear(BayesModule):
    """``nn.Linear`` with Gaussian weights and bias, a new draw per row.

    ``sampler``: ``"flipout"`` (an exact draw per row, rows uncorrelated), ``"weights"`` (every weight
    drawn per row, rows independent), ``"local"`` (local reparameterization, 2-D input only: for
    averages) or ``None`` (the context's, :mod:`stochdef.defenses.sampling`; by default ``"flipout"``).

    Example:
        >>> layer = BayesLinear(3, 2, prior_std=0.1).eval()
        >>> x = torch.ones(4, 3)
        >>> bool((layer(x)[0] != layer(x)[1]).any())
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        prior_std: float,
        init_log_std: float | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        init = self._setup(prior_std, init_log_std, generator)
        self.sampler = None if sampler is None else check_choice("sampler", sampler, SAMPLERS)
        ref = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight_mean = nn.Parameter(ref.weight.detach().clone())
        self.weight_log_std = self._log_std(ref.weight, init)
        self.bias_mean = None if ref.bias is None else nn.Parameter(ref.bias.detach().clone())
        self.bias_log_std = None if ref.bias is None else self._log_std(ref.bias, init)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias_mean is not None}, {super().extra_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.stochastic:
            return F.linear(x, self.weight_mean, self.bias_mean)
        if x.dim() == 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        sampler = resolve_sampler(self.sampler)
        if x.dim() == 2 and sampler == "local":
            return log_std_linear(
                x, self.weight_mean, self.weight_log_std, self.bias_mean, self.bias_log_std, generator=self.generator
            )
        # an exact draw per row; (B, ..., in): one weight matrix per example, shared by its positions
        bias_std = None if self.bias_log_std is None else torch.exp(self.bias_log_std)
        return sampled_linear(
            x, self.weight_mean, torch.exp(self.weight_log_std), self.bias_mean, bias_std, sampler=sampler,
            generator=self.generator,
        )  # fmt: skip


class BayesConv2d(BayesModule):
    """``nn.Conv2d`` with Gaussian weights and bias: each example convolved with its own kernel draw.

    ``sampler``: ``"weights"`` (a kernel drawn per row, rows independent), ``"flipout"`` (one noise
    kernel per call, random signs on each row's input and output channels: an exact draw per row, rows
    uncorrelated), ``"local"`` (means ``"weights"``) or ``None`` (the context's; by default ``"weights"``,
    which measures cheaper than Flipout on CPU, ``stochdef bench layers``).

    Example:
        >>> layer = BayesConv2d(1, 2, 3, padding=1, prior_std=0.1)
        >>> layer(torch.rand(5, 1, 6, 6)).shape
        torch.Size([5, 2, 6, 6])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros",
        *,
        prior_std: float,
        init_log_std: float | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        init = self._setup(prior_std, init_log_std, generator)
        self.sampler = None if sampler is None else check_choice("sampler", sampler, SAMPLERS)
        # torch types Conv2d's kernel_size/stride/... attributes as tuple[int, ...] (what to_bayesian passes on)
        # but its __init__ as int | tuple[int, int]: the stubs disagree with themselves.
        ref = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,  # type: ignore[arg-type]
            device=device, dtype=dtype,
        )  # fmt: skip
        if padding_mode != "zeros" and isinstance(ref.padding, str):
            raise ValueError(f"padding must be numeric when padding_mode is {padding_mode!r}, got {padding!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ref.kernel_size
        self.stride, self.padding, self.dilation, self.groups = ref.stride, ref.padding, ref.dilation, groups
        self.padding_mode = padding_mode
        self._pad = ref._reversed_padding_repeated_twice
        self.weight_mean = nn.Parameter(ref.weight.detach().clone())
        self.weight_log_std = self._log_std(ref.weight, init)
        self.bias_mean = None if ref.bias is None else nn.Parameter(ref.bias.detach().clone())
        self.bias_log_std = None if ref.bias is None else self._log_std(ref.bias, init)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, {super().extra_repr()}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        padding: str | tuple[int, ...] = self.padding
        if self.padding_mode != "zeros":
            x, padding = F.pad(x, self._pad, mode=self.padding_mode), (0, 0)
        geometry: dict[str, Any] = {"stride": self.stride, "padding": padding, "dilation": self.dilation}
        if not self.stochastic:
            return F.conv2d(x, self.weight_mean, self.bias_mean, groups=self.groups, **geometry)
        bias_std = None if self.bias_log_std is None else torch.exp(self.bias_log_std)
        weight_std = torch.exp(self.weight_log_std)
        return sampled_conv2d(
            x, self.weight_mean, weight_std, self.bias_mean, bias_std, groups=self.groups, sampler=self.sampler,
            generator=self.generator, **geometry,
        )  # fmt: skip


class BayesBatchNorm2d(BayesModule):
    """``nn.BatchNorm2d`` whose affine scale and shift are Gaussian, drawn per row.

    Normalization (batch statistics in ``train()``, running statistics in ``eval()``) is exactly
    ``nn.BatchNorm2d``'s; only the affine part is random, and it stays random in ``eval()``.

    Example:
        >>> bn = BayesBatchNorm2d(3, prior_std=0.1).eval()
        >>> bn(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        track_running_stats: bool = True,
        *,
        prior_std: float,
        init_log_std: float | None = None,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        init = self._setup(prior_std, init_log_std, generator)
        ref = nn.BatchNorm2d(num_features, eps, momentum, True, track_running_stats, device=device, dtype=dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        self.weight_mean = nn.Parameter(ref.weight.detach().clone())
        self.weight_log_std = self._log_std(ref.weight, init)
        self.bias_mean: nn.Parameter = nn.Parameter(ref.bias.detach().clone())
        self.bias_log_std: nn.Parameter = self._log_std(ref.bias, init)
        self.running_mean: torch.Tensor | None
        self.running_var: torch.Tensor | None
        self.num_batches_tracked: torch.Tensor | None
        self.register_buffer("running_mean", ref.running_mean)
        self.register_buffer("running_var", ref.running_var)
        self.register_buffer("num_batches_tracked", ref.num_batches_tracked)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, {super().extra_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must be a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and tracked is not None:
            tracked.add_(1)
            factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or (running_mean is None and running_var is None)
        track = not self.training or self.track_running_stats
        mean, var = (running_mean, running_var) if track else (None, None)
        if not self.stochastic:
            return F.batch_norm(x, mean, var, self.weight_mean, self.bias_mean, batch_stats, factor, self.eps)
        normed = F.batch_norm(x, mean, var, None, None, batch_stats, factor, self.eps)
        scale = _draw(self.weight_mean, self.weight_log_std, x.shape[0], self.generator)
        shift = _draw(self.bias_mean, self.bias_log_std, x.shape[0], self.generator)
        return torch.addcmul(shift[:, :, None, None], normed, scale[:, :, None, None])
