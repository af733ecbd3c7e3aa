"""SDR layers (Khan et al., "Non-Determinism in Neural Networks for Adversarial Robustness"): every weight
and bias is ``w ~ N(mu, sigma^2)``, drawn afresh for every example, in ``train()`` and ``eval()`` alike.

:class:`SDRLinear` computes ``x w^T + b`` for one independent draw of ``(w, b)`` per batch row with
:func:`~stochdef.defenses.sampling.sampled_linear`: by default by Flipout (one noise matrix per call,
random signs per row: every row an exact draw of the paper's sampled network, rows uncorrelated, two
matrix products); ``sampler="weights"`` draws every weight independently per row (rows independent,
160-290x a plain layer); ``sampler="local"`` (or the context :func:`~stochdef.defenses.sampling.fast_sampling`,
which the EoT engine enters to average draws) uses local reparameterization, the same output law and
expected input gradient, a far less noisy single-draw gradient. Two training rules (``mode``):

* ``"decay"`` (SDR-Decay, the paper's Algorithm 2 after Frazier-Logue & Hanson): the optimizer updates
  ``mu`` from ``grad_mu L``; ``sigma`` is a buffer, not learned by backprop: the ``after_step`` hook
  :class:`SDRDecay` sets ``sigma <- sigma + beta * |grad_mu L|`` and, every ``tau``-th step,
  ``sigma <- zeta * sigma``. With ``w_b = mu + sigma * eps_b`` for row ``b``, ``grad_mu L = sum_b
  grad_{w_b} L``: the gradient of the batch-mean loss with respect to a weight shared by the batch,
  evaluated at the rows' own draws. That is the ``|grad_w L|`` used here (it equals the paper's
  ``grad_w L`` when one draw is shared by the batch; per-row gradients are never materialised).
* ``"learnable"`` (SDR-Learnable): ``mu`` and ``sigma`` are both parameters, learned through
  ``w = mu + sigma * eps``. :class:`VarianceThresholds` (Algorithm 3) clamps every ``sigma`` into
  ``[min_std, max_std]`` after each optimizer step; :class:`ThresholdSchedule` (an ``after_epoch`` hook)
  starts at ``[0.0, 1.0]`` and raises both bounds by 0.05 when held-out accuracy plateaus, at most once
  every 5 epochs. ``on="std"`` (the default, the zoo's ``sdr-learnable``) bounds the standard deviation
  ``sigma``; ``on="variance"`` bounds ``sigma^2`` as the paper words it (the zoo's
  ``sdr-learnable-variance``): ``sigma`` is clamped into ``[sqrt(min), sqrt(max)]``.
  The paper leaves "plateau" open; here (:func:`should_raise`): at least 5 epochs since the last raise
  (or the start), and the best single-draw held-out accuracy of the last 3 of them is no higher than
  the best of the epochs before them since that raise (``patience=3``, ``min_delta=0``).

``sigma`` starts at ``init_std`` (default ``0.5 * sqrt(2 / fan_in)``, the scale of Frazier-Logue &
Hanson's SDR initialisation without its random factor) for weights and biases alike. The zoo entries
``sdr-decay`` and ``sdr-learnable`` (trainers, hyper-parameters) are in :mod:`stochdef.defenses.zoo.sdr`.

Example:
    >>> layer = SDRLinear(4, 3, mode="learnable", init_std=0.1).eval()
    >>> x = torch.ones(2, 4)
    >>> bool((layer(x) != layer(x)).all())  # random in eval mode, every row its own draw
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
from torch import nn

from .models import mlp
from .sampling import SAMPLERS, sampled_linear
from .validation import check_choice, check_int, check_range

__all__ = [
    "SDRDecay",
    "SDRLinear",
    "ThresholdSchedule",
    "VarianceThresholds",
    "clamp_std",
    "sdr_decay_update",
    "sdr_layers",
    "sdr_mlp",
    "std_bounds",
    "std_range",
]


Mode = Literal["decay", "learnable"]
MODES: tuple[str, ...] = ("decay", "learnable")
THRESHOLD_ON: tuple[str, ...] = ("std", "variance")


# ---- the maths: pure functions ------------------------------------------------------------------------


def default_init_std(fan_in: int) -> float:
    """``0.5 * sqrt(2 / fan_in)``: the initial ``sigma`` of an SDR layer with ``fan_in`` inputs.

    Example:
        >>> default_init_std(8)
        0.25
    """
    return 0.5 * math.sqrt(2.0 / check_int("fan_in", fan_in))


def sdr_decay_update(std: torch.Tensor, grad: torch.Tensor, *, beta: float, zeta: float, decay: bool) -> torch.Tensor:
    """One SDR-Decay step for ``sigma``: ``sigma + beta * |grad|``, then times ``zeta`` when ``decay``.

    Example:
        >>> sdr_decay_update(torch.tensor([0.1]), torch.tensor([-2.0]), beta=0.5, zeta=0.5, decay=True)
        tensor([0.5500])
    """
    new = std + beta * grad.abs()
    return new * zeta if decay else new


def decay_due(step: int, tau: int) -> bool:
    """Whether optimizer step ``step`` (counted from 1) ends with the ``zeta`` decay: every ``tau``-th step."""
    return step % tau == 0


def clamp_std(std: torch.Tensor, *, min_std: float, max_std: float) -> torch.Tensor:
    """Algorithm 3 (variance threshold): ``sigma`` clamped elementwise into ``[min_std, max_std]``."""
    return std.clamp(min_std, max_std)


def std_bounds(low: float, high: float, *, on: str) -> tuple[float, float]:
    """The bounds on ``sigma`` of thresholds ``[low, high]`` on ``on`` (``"std"`` or ``"variance"``).

    Example:
        >>> std_bounds(0.01, 1.0, on="variance")
        (0.1, 1.0)
        >>> std_bounds(0.01, 1.0, on="std")
        (0.01, 1.0)
    """
    check_choice("on", on, THRESHOLD_ON)
    return (math.sqrt(low), math.sqrt(high)) if on == "variance" else (low, high)


def plateaued(accuracies: Sequence[float], *, patience: int, min_delta: float) -> bool:
    """True when the best of the last ``patience`` accuracies beats the best before them by at most ``min_delta``.

    Example:
        >>> plateaued([0.90, 0.95, 0.951, 0.950], patience=2, min_delta=0.005)
        True
        >>> plateaued([0.90, 0.93, 0.95, 0.96], patience=2, min_delta=0.005)
        False
    """
    if len(accuracies) <= patience:
        return False
    return max(accuracies[-patience:]) <= max(accuracies[:-patience]) + min_delta


def should_raise(accuracies_since_raise: Sequence[float], *, cooldown: int, patience: int, min_delta: float) -> bool:
    """The schedule's decision after an epoch: raise the thresholds now?

    ``accuracies_since_raise`` holds the held-out accuracy of every epoch since the last raise (or since
    the start). Raise when at least ``cooldown`` epochs have passed since then (the paper: at most once
    every 5 epochs) and those epochs have :func:`plateaued`. Accuracies from before the last raise are
    never compared: they were measured under other thresholds.

    Example:
        >>> should_raise([0.80, 0.95, 0.94, 0.95, 0.95], cooldown=5, patience=3, min_delta=0.0)
        True
        >>> should_raise([0.80, 0.95, 0.94, 0.95, 0.96], cooldown=5, patience=3, min_delta=0.0)
        False
        >>> should_raise([0.95, 0.95, 0.95, 0.95], cooldown=5, patience=3, min_delta=0.0)  # too soon
        False
    """
    return len(accuracies_since_raise) >= cooldown and plateaued(
        accuracies_since_raise, patience=patience, min_delta=min_delta
    )


# ---- the layer ----------------------------------------------------------------------------------------


class SDRLinear(nn.Module):
    """A linear layer with ``W ~ N(weight_mean, weight_std^2)``, ``b ~ N(bias_mean, bias_std^2)`` per example.

    ``mode="learnable"`` makes the stds parameters; ``mode="decay"`` makes them buffers for
    :class:`SDRDecay`. The means start as ``nn.Linear``'s weights do. ``sampler`` (``"flipout"``,
    ``"weights"``, ``"local"`` or ``None``: the context's, by default ``"flipout"``) is how a call draws
    (:mod:`stochdef.defenses.sampling`).

    Example:
        >>> layer = SDRLinear(3, 2, mode="decay")
        >>> [name for name, _ in layer.named_parameters()], [name for name, _ in layer.named_buffers()]
        (['weight_mean', 'bias_mean'], ['weight_std', 'bias_std'])
    """

    bias_mean: nn.Parameter | None
    weight_std: torch.Tensor
    bias_std: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        mode: Mode = "learnable",
        init_std: float | None = None,
        bias: bool = True,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.sampler = None if sampler is None else check_choice("sampler", sampler, SAMPLERS)
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.mode = check_choice("mode", mode, MODES)
        std = default_init_std(in_features) if init_std is None else check_range("init_std", init_std, low=0.0)
        self.init_std = std
        self.generator = generator
        ref = nn.Linear(in_features, out_features, bias=bias)  # nn.Linear's initialisation of the means
        self.weight_mean = nn.Parameter(ref.weight.detach().clone())
        self.bias_mean = nn.Parameter(ref.bias.detach().clone()) if bias else None
        self._add_std("weight_std", torch.full((out_features, in_features), std))
        self._add_std("bias_std", torch.full((out_features,), std) if bias else None)

    def _add_std(self, name: str, value: torch.Tensor | None) -> None:
        if self.mode == "learnable":
            self.register_parameter(name, None if value is None else nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode!r}, "
            f"bias={self.bias_mean is not None}, sampler={self.sampler!r}"
        )

    def mean_std_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(weight_mean, weight_std), (bias_mean, bias_std)]`` (the bias pair only when there is a bias)."""
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = [(self.weight_mean, self.weight_std)]
        if self.bias_mean is not None and self.bias_std is not None:
            pairs.append((self.bias_mean, self.bias_std))
        return pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features in its last dimension, got {tuple(x.shape)}")
        if x.dim() == 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        return sampled_linear(
            x,
            self.weight_mean,
            self.weight_std,
            self.bias_mean,
            self.bias_std,
            sampler=self.sampler,
            generator=self.generator,
        )


def sdr_layers(model: nn.Module, *, mode: Mode | None = None) -> list[SDRLinear]:
    """The :class:`SDRLinear` layers of ``model`` (only those of ``mode`` when given)."""
    return [m for m in model.modules() if isinstance(m, SDRLinear) and (mode is None or m.mode == mode)]


def std_range(model: nn.Module) -> tuple[float, float]:
    """The smallest and largest ``sigma`` over every weight and bias of ``model``'s SDR layers."""
    stds = [std.detach().flatten() for layer in sdr_layers(model) for _, std in layer.mean_std_pairs()]
    if not stds:
        raise ValueError("model has no SDRLinear layers")
    flat = torch.cat(stds)
    return float(flat.min()), float(flat.max())


def sdr_mlp(
    sizes: Sequence[int] = (784, 100, 100, 100, 10), *, mode: Mode = "learnable", init_std: float | None = None
) -> nn.Sequential:
    """The paper's ReLU MLP (784-100-100-100-10 by default) with an :class:`SDRLinear` for every layer.

    Example:
        >>> sdr_mlp((64, 32, 10), mode="decay")(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """
    check_choice("mode", mode, MODES)
    if init_std is not None:
        check_range("init_std", init_std, low=0.0)
    return mlp(sizes, layer=partial(SDRLinear, mode=mode, init_std=init_std))


# ---- the training hooks -------------------------------------------------------------------------------


class SDRDecay:
    """SDR-Decay's ``sigma`` rule as an ``after_step`` hook of :func:`~stochdef.defenses.training.fit`.

    After optimizer step ``step`` (from 1), for every weight and bias of every ``mode="decay"`` layer:
    ``sigma <- sigma + beta * |grad_mu L|``, then ``sigma <- zeta * sigma`` if ``step % tau == 0``.
    ``grad_mu L`` is the gradient the optimizer just used (of the batch-mean loss). ``tau`` counts
    optimizer steps over the whole run (Algorithm 2 counts batches within an epoch; the two agree when
    the number of batches per epoch is a multiple of ``tau``).

    Example:
        >>> net = sdr_mlp((4, 3), mode="decay", init_std=0.0)
        >>> net(torch.ones(1, 4)).sum().backward()
        >>> SDRDecay(net, beta=0.5, zeta=1.0, tau=1)(1)
        >>> net[1].weight_std
        tensor([[0.5000, 0.5000, 0.5000, 0.5000],
                [0.5000, 0.5000, 0.5000, 0.5000],
                [0.5000, 0.5000, 0.5000, 0.5000]])
    """

    def __init__(self, model: nn.Module, *, beta: float, zeta: float, tau: int) -> None:
        self.beta = check_range("beta", beta, low=0.0)
        self.zeta = check_range("zeta", zeta, low=0.0, high=1.0, low_open=True)
        self.tau = check_int("tau", tau)
        self.layers = sdr_layers(model, mode="decay")
        if not self.layers:
            raise ValueError("model must contain SDRLinear layers with mode='decay'")

    @torch.no_grad()
    def __call__(self, step: int) -> None:
        decay = decay_due(step, self.tau)
        for layer in self.layers:
            for mean, std in layer.mean_std_pairs():
                grad = mean.grad if mean.grad is not None else torch.zeros_like(mean)
                std.copy_(sdr_decay_update(std, grad, beta=self.beta, zeta=self.zeta, decay=decay))


class VarianceThresholds:
    """Algorithm 3 as an ``after_step`` hook: clamp every ``sigma`` of ``model``'s SDR-Learnable layers.

    The thresholds ``[min_std, max_std]`` bound ``sigma`` itself when ``on="std"`` (the default) and
    ``sigma^2`` when ``on="variance"`` (the paper's wording; the names keep ``_std`` for both).

    Example:
        >>> net = sdr_mlp((4, 3), init_std=2.0)
        >>> VarianceThresholds(net, min_std=0.0, max_std=1.0)(1)
        >>> float(net[1].weight_std.detach().max())
        1.0
        >>> VarianceThresholds(net, min_std=0.04, max_std=0.25, on="variance")(1)  # sigma into [0.2, 0.5]
        >>> float(net[1].weight_std.detach().max())
        0.5
    """

    def __init__(self, model: nn.Module, *, min_std: float = 0.0, max_std: float = 1.0, on: str = "std") -> None:
        self.min_std = check_range("min_std", min_std, low=0.0)
        self.max_std = check_range("max_std", max_std, low=0.0)
        self.on = check_choice("on", on, THRESHOLD_ON)
        if self.min_std > self.max_std:
            raise ValueError(f"min_std must be <= max_std, got min_std={min_std}, max_std={max_std}")
        self.layers = sdr_layers(model, mode="learnable")
        if not self.layers:
            raise ValueError("model must contain SDRLinear layers with mode='learnable'")

    @torch.no_grad()
    def __call__(self, step: int = 0) -> None:
        low, high = std_bounds(self.min_std, self.max_std, on=self.on)
        for layer in self.layers:
            for _, std in layer.mean_std_pairs():
                std.copy_(clamp_std(std, min_std=low, max_std=high))

    def raise_by(self, increment: float) -> None:
        """Raise both thresholds by ``increment`` and clamp at once."""
        self.min_std += increment
        self.max_std += increment
        self()


class ThresholdSchedule:
    """The paper's threshold schedule as an ``after_epoch`` hook (see :func:`should_raise`).

    After epoch ``epoch`` (from 0) with held-out accuracy ``accuracy``: if :func:`should_raise` says so,
    raise ``thresholds`` by ``increment`` (0.05). Never after the run's last epoch (``epochs - 1``, when
    ``epochs`` is given): no training would follow to recover the accuracy. ``raises`` lists the epochs
    that raised.

    Example:
        >>> thresholds = VarianceThresholds(sdr_mlp((4, 3)), min_std=0.0, max_std=1.0)
        >>> schedule = ThresholdSchedule(thresholds)
        >>> for epoch, acc in enumerate([0.8, 0.92, 0.92, 0.91, 0.92, 0.85]):
        ...     schedule(epoch, acc)
        >>> schedule.raises, round(thresholds.min_std, 2), round(thresholds.max_std, 2)
        ([4], 0.05, 1.05)
    """

    def __init__(
        self,
        thresholds: VarianceThresholds,
        *,
        increment: float = 0.05,
        cooldown: int = 5,
        patience: int = 3,
        min_delta: float = 0.0,
        epochs: int | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.increment = check_range("increment", increment, low=0.0, low_open=True)
        self.cooldown = check_int("cooldown", cooldown)
        self.patience = check_int("patience", patience)
        if self.patience >= self.cooldown:
            raise ValueError(f"patience must be < cooldown, got patience={patience}, cooldown={cooldown}")
        self.min_delta = check_range("min_delta", min_delta, low=0.0)
        self.epochs = None if epochs is None else check_int("epochs", epochs)
        self.since_raise: list[float] = []
        self.raises: list[int] = []

    def __call__(self, epoch: int, accuracy: float) -> None:
        self.since_raise.append(float(accuracy))
        if self.epochs is not None and epoch >= self.epochs - 1:
            return
        if should_raise(self.since_raise, cooldown=self.cooldown, patience=self.patience, min_delta=self.min_delta):
            self.thresholds.raise_by(self.increment)
            self.raises.append(epoch)
            self.since_raise = []
