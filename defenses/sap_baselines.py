"""The baselines of Dhillon et al. (SAP, ICLR 2018), Appendix B and Section 4.1.2, as post-hoc transforms.

Each takes a trained network and returns a randomized copy (no fine-tuning), random in ``eval()`` mode
and independently per batch row (DESIGN.md, §C1 and §C2):

* weights (every ``nn.Linear`` / ``nn.Conv2d`` weight tensor; biases untouched):
  RNW :func:`apply_rnw` ``W + N(0, s^2)``; RSW :func:`apply_rsw` ``W * N(1, s^2)`` (i.e. ``N(W, s^2 W^2)``);
  SWP :func:`apply_swp` the SAP rule on the weights (``r = round(fraction * W.numel())`` draws from
  ``|W| / sum|W|``), a fresh mask per example; DWP :func:`apply_dwp` keeps the top ``keep`` share of each
  weight tensor by magnitude (deterministic: the paper's contrast to SWP).
* activations (after every ``nn.ReLU``, as SAP): RNA :func:`apply_rna` ``h + N(0, s^2)``;
  RSA :func:`apply_rsa` ``h * N(1, s^2)``; dropout kept on at inference :func:`apply_dropout`.

RNW/RSW take an exact draw of every weight per row (:mod:`stochdef.defenses.sampling`): linear layers by
Flipout by default (:func:`~stochdef.defenses.sampling.sampled_linear`; ``sampler="weights"`` for rows
drawn independently, local reparameterization, the fast path for averages, with ``sampler="local"`` or
inside :func:`~stochdef.defenses.sampling.fast_sampling`), convolutions a kernel per example by default
(:func:`~stochdef.defenses.sampling.sampled_conv2d`; ``sampler="flipout"`` for Flipout); SWP builds
per-example weights (``B x W.numel()`` memory).

Example:
    >>> import torch
    >>> from stochdef.defenses.models import mlp
    >>> net = apply_rsw(mlp((64, 32, 10)), std=0.1).eval()
    >>> x = torch.rand(2, 1, 8, 8)
    >>> bool((net(x) != net(x)).any())
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TypedDict

import torch
from torch import nn

from .functional import per_example_conv2d, per_example_linear
from .noise import NoiseInjection
from .sampling import SAMPLERS, sampled_conv2d, sampled_linear
from .sap import METHODS, Method, insert_after, replace_modules, sample_count, scale_factors
from .validation import check_choice, check_range

__all__ = [
    "InferenceDropout",
    "RandomNoisyWeights",
    "RandomlyScaledActivations",
    "RandomlyScaledWeights",
    "StochasticWeightPruning",
    "apply_dropout",
    "apply_dwp",
    "apply_rna",
    "apply_rnw",
    "apply_rsa",
    "apply_rsw",
    "apply_swp",
    "random_scale",
    "top_magnitude_mask",
    "wrap_layers",
]


WeightLayer = nn.Linear | nn.Conv2d

# ---- activation baselines ------------------------------------------------------------------------


def random_scale(h: torch.Tensor, *, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """RSA: ``h * eta`` with ``eta ~ N(1, std^2)`` independently per element."""
    eps = torch.randn(h.shape, dtype=h.dtype, device=h.device, generator=generator)
    return h * eps.mul_(std).add_(1.0)


class RandomlyScaledActivations(nn.Module):
    """RSA (Appendix B.6): multiply every activation by its own ``N(1, std^2)`` draw.

    Example:
        >>> rsa = RandomlyScaledActivations(std=0.5).eval()
        >>> h = torch.ones(20000, 1)
        >>> round(rsa(h).std().item(), 1)
        0.5
    """

    def __init__(self, *, std: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.std = check_range("std", std, low=0.0)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"std={self.std}"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.std == 0.0 else random_scale(h, std=self.std, generator=self.generator)


class InferenceDropout(nn.Module):
    """Dropout that stays on at inference when ``stochastic=True`` (Section 4.1.2): zero each unit with
    probability ``rate``, scale survivors by ``1 / (1 - rate)``. Never looks at ``self.training``.

    Example:
        >>> drop = InferenceDropout(rate=0.5).eval()
        >>> sorted(drop(torch.ones(1000, 1)).unique().tolist())
        [0.0, 2.0]
    """

    def __init__(self, *, rate: float, stochastic: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.rate = check_range("rate", rate, low=0.0, high=1.0, high_open=True)
        if not isinstance(stochastic, bool):
            raise TypeError(f"stochastic must be a bool, got {type(stochastic).__name__} ({stochastic!r})")
        self.stochastic = stochastic
        self.generator = generator

    def extra_repr(self) -> str:
        return f"rate={self.rate}, stochastic={self.stochastic}"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.stochastic or self.rate == 0.0:
            return h
        u = torch.rand(h.shape, dtype=h.dtype, device=h.device, generator=self.generator)
        return h * (u >= self.rate).to(h.dtype).mul_(1.0 / (1.0 - self.rate))


def apply_rna(model: nn.Module, *, std: float, generator: torch.Generator | None = None) -> nn.Module:
    """RNA (Appendix B.5): a copy of ``model`` adding ``N(0, std^2)`` after every ``nn.ReLU``."""
    check_range("std", std, low=0.0)
    return insert_after(model, lambda: NoiseInjection(distribution="gaussian", std=std, generator=generator))


def apply_rsa(model: nn.Module, *, std: float, generator: torch.Generator | None = None) -> nn.Module:
    """RSA (Appendix B.6): a copy of ``model`` scaling by ``N(1, std^2)`` after every ``nn.ReLU``."""
    check_range("std", std, low=0.0)
    return insert_after(model, lambda: RandomlyScaledActivations(std=std, generator=generator))


def apply_dropout(model: nn.Module, *, rate: float, generator: torch.Generator | None = None) -> nn.Module:
    """Dropout at inference (Section 4.1.2, Fig. 2a): a copy with dropout after every ``nn.ReLU``."""
    check_range("rate", rate, low=0.0, high=1.0, high_open=True)
    return insert_after(model, lambda: InferenceDropout(rate=rate, generator=generator))


# ---- weight baselines ----------------------------------------------------------------------------


def _check_layer(layer: nn.Module) -> WeightLayer:
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"layer must be an nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
        raise ValueError(f"layer.padding_mode must be 'zeros', got {layer.padding_mode!r}")
    return layer


class _ConvArgs(TypedDict):
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int


def _conv_args(layer: nn.Conv2d) -> _ConvArgs:
    return {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}


def _check_input(layer: WeightLayer, x: torch.Tensor) -> None:
    if isinstance(layer, nn.Linear) and x.dim() != 2:
        raise ValueError(f"x must be (batch, features) for a per-example Linear, got shape {tuple(x.shape)}")


class _GaussianWeights(nn.Module):
    """Wraps ``layer``; each example sees its own ``W ~ N(layer.weight, weight_std()^2)``.

    ``sampler``: ``"flipout"``, ``"weights"``, ``"local"`` or ``None`` (the context's; by default
    ``"flipout"`` for a linear layer, ``"weights"`` for a convolution, :mod:`stochdef.defenses.sampling`).
    """

    def __init__(
        self, layer: nn.Module, *, std: float, sampler: str | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.layer = _check_layer(layer)
        self.std = check_range("std", std, low=0.0)
        self.sampler = None if sampler is None else check_choice("sampler", sampler, SAMPLERS)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"std={self.std}"

    def weight_std(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        _check_input(layer, x)
        if self.std == 0.0:
            return layer(x)
        std = self.weight_std()
        if isinstance(layer, nn.Linear):
            return sampled_linear(x, layer.weight, std, layer.bias, sampler=self.sampler, generator=self.generator)
        return sampled_conv2d(
            x, layer.weight, std, layer.bias, sampler=self.sampler, generator=self.generator, **_conv_args(layer)
        )


class RandomNoisyWeights(_GaussianWeights):
    """RNW (Appendix B.1): ``W + eta``, ``eta ~ N(0, std^2)`` per weight, drawn per example.

    Example:
        >>> layer = RandomNoisyWeights(nn.Linear(3, 1), std=1.0)
        >>> layer(torch.zeros(2, 3)).shape
        torch.Size([2, 1])
    """

    def weight_std(self) -> torch.Tensor:
        w = self.layer.weight
        return w.new_full((), self.std).expand_as(w)


class RandomlyScaledWeights(_GaussianWeights):
    """RSW (Appendix B.2): ``eta * W``, ``eta ~ N(1, std^2)`` per weight (so ``N(W, std^2 W^2)``), per example."""

    def weight_std(self) -> torch.Tensor:
        return self.std * self.layer.weight.abs()


class StochasticWeightPruning(nn.Module):
    """SWP (Appendix B.4): SAP's rule on ``layer.weight`` (``round(fraction * numel)`` draws from
    ``|W| / sum|W|``, survivors scaled by ``1 / (1 - (1 - p)^r)``), a fresh mask for every example.

    Example:
        >>> layer = StochasticWeightPruning(nn.Linear(4, 2), fraction=0.5)
        >>> layer(torch.rand(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self, layer: nn.Module, *, fraction: float, method: Method = "auto", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.layer = _check_layer(layer)
        self.fraction = check_range("fraction", fraction, low=0.0, low_open=True)
        check_choice("method", method, METHODS)
        self.method: Method = method
        self.generator = generator

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"

    def masks(self, batch: int) -> torch.Tensor:
        """``batch`` independent SWP multipliers, shaped ``(batch, *weight.shape)`` (no gradient)."""
        weight = self.layer.weight
        w = weight.detach().abs().reshape(1, -1).expand(batch, -1)
        draws = sample_count(self.fraction, weight.numel())
        with torch.no_grad():
            scale = scale_factors(w, draws, method=self.method, generator=self.generator)
        return scale.view(batch, *weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        _check_input(layer, x)
        weight = layer.weight * self.masks(x.shape[0])
        bias = None if layer.bias is None else layer.bias.expand(x.shape[0], -1)
        if isinstance(layer, nn.Linear):
            return per_example_linear(x, weight, bias)
        return per_example_conv2d(x, weight, bias, **_conv_args(layer))


def wrap_layers(model: nn.Module, wrap: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.Linear`` / ``nn.Conv2d`` replaced by ``wrap(layer)``."""
    return replace_modules(model, (nn.Linear, nn.Conv2d), wrap, what="nn.Linear or nn.Conv2d layer")


def apply_rnw(model: nn.Module, *, std: float, generator: torch.Generator | None = None) -> nn.Module:
    """RNW: a copy of ``model`` whose every weight tensor gets ``N(0, std^2)`` noise, per example."""
    check_range("std", std, low=0.0)
    return wrap_layers(model, lambda layer: RandomNoisyWeights(layer, std=std, generator=generator))


def apply_rsw(model: nn.Module, *, std: float, generator: torch.Generator | None = None) -> nn.Module:
    """RSW: a copy of ``model`` whose every weight is multiplied by ``N(1, std^2)``, per example."""
    check_range("std", std, low=0.0)
    return wrap_layers(model, lambda layer: RandomlyScaledWeights(layer, std=std, generator=generator))


def apply_swp(
    model: nn.Module, *, fraction: float, method: Method = "auto", generator: torch.Generator | None = None
) -> nn.Module:
    """SWP: a copy of ``model`` with stochastic weight pruning on every weight tensor, per example."""
    check_range("fraction", fraction, low=0.0, low_open=True)
    return wrap_layers(
        model, lambda layer: StochasticWeightPruning(layer, fraction=fraction, method=method, generator=generator)
    )


def top_magnitude_mask(weight: torch.Tensor, *, keep: float) -> torch.Tensor:
    """DWP's mask: 1 on the ``round(keep * numel)`` (at least 1) largest ``|weight|`` entries, else 0.

    Example:
        >>> top_magnitude_mask(torch.tensor([0.1, -3.0, 2.0, 0.5]), keep=0.5)
        tensor([0., 1., 1., 0.])
    """
    check_range("keep", keep, low=0.0, high=1.0, low_open=True)
    count = max(1, math.floor(keep * weight.numel() + 0.5))
    flat = torch.zeros(weight.numel(), dtype=weight.dtype, device=weight.device)
    flat[weight.detach().abs().flatten().topk(count).indices] = 1.0
    return flat.view(weight.shape)


def apply_dwp(model: nn.Module, *, keep: float) -> nn.Module:
    """DWP (Appendix B.3): a copy of ``model`` keeping the top ``keep`` share of every weight tensor by
    magnitude and zeroing the rest (deterministic; no fine-tuning, unlike Han et al.)."""
    check_range("keep", keep, low=0.0, high=1.0, low_open=True)
    model = copy.deepcopy(model)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError(f"model has no nn.Linear or nn.Conv2d layer ({type(model).__name__})")
    with torch.no_grad():
        for layer in layers:
            layer.weight.mul_(top_magnitude_mask(layer.weight, keep=keep))
    return model
