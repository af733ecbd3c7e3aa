"""Noise injection (Pinot et al., "Theoretical evidence for adversarial robustness through randomization",
NeurIPS 2019): add noise to the input or to any layer's output, in training and at inference alike.

The noise is parameterised by its standard deviation ``std``:

* ``gaussian``: ``N(0, std^2)``;
* ``laplace``: ``Laplace(0, b)`` with ``b = std / sqrt(2)``;
* ``uniform``: ``U(-a, a)`` with ``a = std * sqrt(3)``;
* ``exponential``: ``Exp(rate=1/std)`` minus its mean ``std`` (centred, so it shifts nothing on average).

Every element of every row gets its own draw, in ``train()`` and ``eval()`` alike (DESIGN.md, §C1 and §C2).

What the paper covers: its models add Gaussian or Laplace noise (both exponential family) to the image,
during training and inference (Section 5.1; models are trained with the noise they are evaluated with);
Theorem 1 allows any layer ``i``. Its Renyi-robustness bounds (:mod:`stochdef.defenses.renyi`) hold for
Gaussian and Laplace noise. Uniform and centred-exponential noise have a support that moves with the
signal, so two shifted copies have an infinite Renyi divergence: stochdef offers them as layers (the
paper's related work uses uniform noise) but the theorems give them no finite robustness level.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .validation import check_choice, check_range

__all__ = ["NoiseInjection", "inject_noise", "noise_layers", "sample_noise"]


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

    Every value is finite (Laplace and exponential use ``-log1p(-u)`` with ``u`` in ``[0, 1)``).

    Example:
        >>> z = sample_noise("laplace", 0.5, (20000,), like=torch.empty(0))
        >>> round(z.std().item(), 1)
        0.5
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    check_range("std", std, low=0.0)

    def rand() -> torch.Tensor:
        return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)

    if distribution == "gaussian":
        return std * torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)
    u = rand()
    if distribution == "uniform":
        return std * math.sqrt(3.0) * (2.0 * u - 1.0)
    exp1 = -torch.log1p(-u)  # Exp(1) by inverse CDF; finite because u < 1
    if distribution == "exponential":
        return std * (exp1 - 1.0)
    # Laplace(0, b) = b * S * E with S a fair random sign and E ~ Exp(1), independent.
    sign = rand() < 0.5
    return (std / math.sqrt(2.0)) * torch.where(sign, exp1, -exp1)


class NoiseInjection(nn.Module):
    """Add ``distribution`` noise of standard deviation ``std`` to its input, per element and per row.

    ``std=0`` is the identity (the no-noise baseline).

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


def noise_layers(model: nn.Module) -> list[tuple[str, NoiseInjection]]:
    """The :class:`NoiseInjection` layers of ``model`` with their names, in registration order.

    Example:
        >>> noise_layers(nn.Sequential(NoiseInjection(std=0.1), nn.Linear(2, 2)))
        [('0', NoiseInjection(distribution='gaussian', std=0.1))]
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, NoiseInjection)]


def inject_noise(model: nn.Module, *, at: int | str = "input", distribution: str = "gaussian", std: float) -> nn.Module:
    """A copy of ``model`` with a :class:`NoiseInjection` layer added at ``at``; ``model`` is unchanged.

    ``at`` is one of:

    * ``"input"`` (or ``0``): noise on the input (the paper's experiments);
    * an int ``i`` with ``model`` an ``nn.Sequential``: noise after its first ``i`` children (Theorem 1's
      ``N_{|i}(x) + X``), flattened into one ``nn.Sequential``;
    * a submodule name as in ``model.named_modules()`` (e.g. ``"stem"`` or ``"3"``): noise on that
      submodule's output, which becomes ``nn.Sequential(submodule, noise)``.

    Train the result with the noise on, as the paper does (the layer is random in both modes).

    Example:
        >>> from stochdef.defenses.models import mlp
        >>> net = inject_noise(mlp((4, 8, 3)), at=2, distribution="laplace", std=0.5)
        >>> [type(m).__name__ for m in net]
        ['Flatten', 'Linear', 'NoiseInjection', 'ReLU', 'Linear']
    """
    noise = NoiseInjection(distribution=distribution, std=std)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(at, bool) or not isinstance(at, (int, str)):
        raise TypeError(f"at must be 'input', an int or a submodule name, got {type(at).__name__} ({at!r})")
    model = copy.deepcopy(model)
    if at == "input" or at == 0:
        if isinstance(model, nn.Sequential):
            return nn.Sequential(noise, *model)
        return nn.Sequential(noise, model)
    if isinstance(at, int):
        if not isinstance(model, nn.Sequential):
            raise ValueError(f"at={at} (a child index) needs an nn.Sequential model, got {type(model).__name__}")
        if not 0 <= at <= len(model):
            raise ValueError(f"at must be in [0, {len(model)}] (the children of model), got {at}")
        children = list(model)
        return nn.Sequential(*children[:at], noise, *children[at:])
    modules = dict(model.named_modules())
    if at not in modules or at == "":
        raise ValueError(f"at must be 'input', a child index or a submodule name of model, got {at!r}")
    parent_name, _, child = at.rpartition(".")
    parent = modules[parent_name]
    setattr(parent, child, nn.Sequential(modules[at], noise))
    return model
