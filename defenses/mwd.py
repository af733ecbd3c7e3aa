"""MWD networks (Agrawal, de Alfaro & Helmbold, "A New Family of Neural Networks Provably Resistant to
Adversarial Attacks", 2019): layers of max-of-weighted-distance units, trained by pseudogradient.

MWD networks are *deterministic*. Their danger for an evaluation is not randomness but the gradient:
they are trained with a pseudogradient (:mod:`.mwd_functional`) and an attack may use either that or the
true gradient. The choice is a flag on the model, ``rho`` on every :class:`MWDLayer` (0: true gradient,
1: pseudogradient, in between: a blend), so any library that takes an ``nn.Module`` attacks the model
with whichever gradient was set, through the unchanged adapters:

    >>> net = mwd_net((4, 3, 2), generator=torch.Generator().manual_seed(0))
    >>> with gradient_mode(net, "pseudo"):  # an attack built and run here uses the pseudogradient ([psd])
    ...     gradient_of(net)
    'pseudo'
    >>> gradient_of(net)  # the default: the true gradient
    'true'

Parameters stay in their bounds (``u`` in ``u_bounds``, default [0.01, 3]; ``w`` in the input range,
default [0, 1]) when :func:`parameter_clamp` runs after every optimizer step (``fit(after_step=...)``).
Trainers and the zoo entries for MWD nets and their ReLU / sigmoid baselines are in :mod:`stochdef.defenses.zoo.mwd`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .mwd_functional import mwd_unit
from .validation import check_choice, check_int, check_interval, check_range

__all__ = [
    "MWDLayer",
    "clamp_parameters",
    "gradient_mode",
    "gradient_of",
    "mwd_layers",
    "mwd_net",
    "parameter_clamp",
    "set_gradient",
    "square_error",
    "square_error_loss",
]


Unit = Literal["and", "nand", "mixed"]
UNITS: tuple[str, ...] = ("and", "nand", "mixed")
GradientMode = Literal["true", "pseudo"]
PAPER_UNITS: tuple[Unit, ...] = ("and", "nand", "and", "nand")  # U, U^NEG, U, U^NEG (their Section 7)


def check_input_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    """Validate an input range ``(low, high)`` with ``low < high``."""
    low, high = (check_range(f"{name}[{i}]", v) for i, v in enumerate(value))
    if low >= high:
        raise ValueError(f"{name} must have low < high, got ({low}, {high})")
    return low, high


class MWDLayer(nn.Module):
    """A layer of MWD units ``U(u, w)(x) = exp(-max_i (u_i (x_i - w_i))^2)`` or negated ones ``1 - U``.

    ``unit``: ``"and"`` (all U), ``"nand"`` (all U^NEG) or ``"mixed"`` (each unit's type drawn at
    initialisation, stored in the ``negated`` buffer so a checkpoint restores it). ``u`` starts uniform
    in ``u_init`` and ``w`` uniform in ``input_range`` (as the authors' code); :meth:`clamp_` puts them
    back in ``u_bounds`` / ``input_range``. ``rho`` picks the gradient (0 true, 1 pseudo).

    Example:
        >>> layer = MWDLayer(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.u.fill_(2.0), layer.w.zero_()
        >>> layer(torch.tensor([[0.5, 0.25]])).detach()  # exp(-max(1, 0.25))
        tensor([[0.3679]])
    """

    negated: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        unit: Unit = "and",
        u_bounds: tuple[float, float] = (0.01, 3.0),
        input_range: tuple[float, float] = (0.0, 1.0),
        u_init: tuple[float, float] = (0.2, 0.7),
        rho: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.unit = check_choice("unit", unit, UNITS)
        self.u_bounds = check_interval("u_bounds", *u_bounds, minimum=0.0)
        self.input_range = check_input_range("input_range", input_range)
        u_low, u_high = check_interval("u_init", *u_init, minimum=0.0)
        self.rho = check_range("rho", rho, low=0.0, high=1.0)
        shape = (out_features, in_features)
        low, high = self.input_range
        self.u = nn.Parameter(torch.rand(shape, generator=generator) * (u_high - u_low) + u_low)
        self.w = nn.Parameter(torch.rand(shape, generator=generator) * (high - low) + low)
        if unit == "mixed":
            negated = torch.rand(out_features, generator=generator) < 0.5
        else:
            negated = torch.full((out_features,), unit == "nand")
        self.register_buffer("negated", negated)
        self.clamp_()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Put ``u`` back in ``u_bounds`` and ``w`` in ``input_range``."""
        self.u.clamp_(*self.u_bounds)
        self.w.clamp_(*self.input_range)

    def surrogate_gradients(self) -> dict[str, Callable[[], AbstractContextManager[Any]]]:
        """The pseudogradient as a declared surrogate (:mod:`.surrogate`): evaluations attack through it too."""
        return {"pseudo": lambda: gradient_mode(self, "pseudo")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (batch, {self.in_features}), got {tuple(x.shape)}")
        return mwd_unit(x, self.u, self.w, self.negated, rho=self.rho)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, unit={self.unit!r}, u_bounds={self.u_bounds}, "
            f"input_range={self.input_range}, rho={self.rho}"
        )


def mwd_net(
    sizes: Sequence[int] = (784, 512, 512, 512, 10),
    *,
    units: Sequence[Unit] | None = None,
    u_bounds: tuple[float, float] = (0.01, 3.0),
    input_range: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Flatten, then MWD layers ``sizes[0] -> sizes[1] -> ...``; the paper's net by default.

    ``units`` (one per layer) defaults to alternating U, U^NEG, ... (the paper's U, U^NEG, U, U^NEG).
    Every layer's ``w`` lives in ``input_range``: the first layer's inputs are pixels, the others' are
    unit outputs in [0, 1] (the authors' code bounds all layers' ``w`` to the same [0, 1]).

    Example:
        >>> mwd_net((64, 16, 10))(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)}")
    layers = len(sizes) - 1
    units = tuple(units) if units is not None else tuple(PAPER_UNITS[i % 2] for i in range(layers))
    if len(units) != layers:
        raise ValueError(f"units must name one unit type per layer ({layers}), got {list(units)}")
    return nn.Sequential(
        nn.Flatten(),
        *(
            MWDLayer(n_in, n_out, unit=unit, u_bounds=u_bounds, input_range=input_range, generator=generator)
            for n_in, n_out, unit in zip(sizes[:-1], sizes[1:], units, strict=True)
        ),
    )


def mwd_layers(model: nn.Module) -> list[MWDLayer]:
    """Every :class:`MWDLayer` inside ``model``."""
    return [m for m in model.modules() if isinstance(m, MWDLayer)]


def _rho_of(mode: GradientMode | float) -> float:
    if isinstance(mode, str):
        return {"true": 0.0, "pseudo": 1.0}[check_choice("mode", mode, ("true", "pseudo"))]
    return check_range("mode", mode, low=0.0, high=1.0)


def set_gradient(model: nn.Module, mode: GradientMode | float) -> None:
    """Make every MWD layer of ``model`` back-propagate the ``"true"`` gradient, the ``"pseudo"`` one,
    or a blend ``rho`` in [0, 1] (0 = true). Raises ``ValueError`` if ``model`` has no MWD layer."""
    rho = _rho_of(mode)
    layers = mwd_layers(model)
    if not layers:
        raise ValueError(f"model has no MWD layers to set the gradient of ({type(model).__name__})")
    for layer in layers:
        layer.rho = rho


def gradient_of(model: nn.Module) -> GradientMode | float:
    """``"true"``, ``"pseudo"``, or the common ``rho`` of the MWD layers of ``model``."""
    rhos = {layer.rho for layer in mwd_layers(model)}
    if len(rhos) != 1:
        raise ValueError(f"model's MWD layers do not share one gradient mode (rho values {sorted(rhos)})")
    rho = rhos.pop()
    return "true" if rho == 0.0 else "pseudo" if rho == 1.0 else rho


@contextlib.contextmanager
def gradient_mode(model: nn.Module, mode: GradientMode | float) -> Iterator[nn.Module]:
    """Within the block every MWD layer of ``model`` uses gradient ``mode``; each layer's own is restored."""
    layers = mwd_layers(model)
    saved = [layer.rho for layer in layers]
    set_gradient(model, mode)
    try:
        yield model
    finally:
        for layer, rho in zip(layers, saved, strict=True):
            layer.rho = rho


def clamp_parameters(model: nn.Module) -> None:
    """Put the parameters of every MWD layer of ``model`` back in their bounds."""
    for layer in mwd_layers(model):
        layer.clamp_()


def parameter_clamp(model: nn.Module) -> Callable[[int], None]:
    """An ``after_step`` hook for :func:`~stochdef.defenses.training.fit` that enforces the bounds."""
    return lambda step: clamp_parameters(model)


def square_error(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example square error to the one-hot target: ``sum_k (output_k - [k = y])^2``.

    The authors' ``square_distance_loss``: outputs in [0, 1] (MWD, sigmoid) against a 0/1 one-hot code.

    Example:
        >>> square_error(torch.tensor([[0.5, 0.5]]), torch.tensor([1]))
        tensor([0.5000])
    """
    target = F.one_hot(y, output.shape[-1]).to(output.dtype)
    return (output - target).square().sum(-1)


def square_error_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean :func:`square_error` of ``model(x)``: the training loss of MWD and sigmoid nets."""
    return square_error(model(x), y).mean()
