"""Adv-BNN (Liu, Li, Wu, Hsieh, "Adv-BNN: Improved Adversarial Defense through Robust
Bayesian Neural Network", ICLR 2019).

Every weight is a random variable ``w = mu + exp(s) * eps``, ``eps ~ N(0, 1)``, with a fully factorized
Gaussian posterior and the prior ``N(0, s0^2)``. The layers draw new weights on every call, in ``train()``
and ``eval()`` alike, and **each row of a batch gets its own weights** (DESIGN.md, §C1 and §C2):
:class:`BayesLinear`, :class:`BayesConv2d`, :class:`BayesBatchNorm2d` (in :mod:`.bayes_layers`, which says
how each samples per row, vectorized).

Training minimizes eq. 10, ``CE + alpha / N * KL(q || p)`` (:func:`bayes_loss`), with the closed-form
KL of eq. 6 (:func:`gaussian_kl`, summed over a model by :func:`kl`). Adv-BNN adds their Algorithm 1:
each batch is replaced by a PGD attack that draws new weights at every step, then one update; that is
``training.fit(..., loss=bayes_loss(...), adversary=training.pgd_adversary(...))`` (the zoo's
``adv-bnn``, in :mod:`stochdef.defenses.zoo.bayes`). :func:`to_bayesian` converts any model's
``Linear``/``Conv2d``/``BatchNorm2d`` layers, the original weights becoming the posterior means;
:func:`mean_weights` runs a model with its mean weights.

Ensemble inference (the paper averages the softmax of n = 10-20 draws) is, at evaluation time,
``stochdef.adapters.EoT(model, samples=n, reduce="probs")``; its ``softmax`` is the ensemble's
probabilities.

Example:
    >>> from stochdef.defenses.models import small_cnn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> bnn = to_bayesian(small_cnn(image_size=8), prior_std=0.05).eval()
    >>> x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)  # two copies of one input
    >>> out = bnn(x)
    >>> bool((out[0] != out[1]).any())  # two rows, two independent weight draws, in eval mode too
    True
    >>> with mean_weights(bnn):
    ...     fixed = bnn(x)
    >>> torch.equal(fixed[0], fixed[1])
    True
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .bayes_layers import BayesBatchNorm2d, BayesConv2d, BayesLinear, BayesModule, gaussian_kl
from .training import LossFn
from .validation import check_int, check_range

__all__ = [
    "BayesBatchNorm2d",
    "BayesConv2d",
    "BayesLinear",
    "BayesModule",
    "bayes_loss",
    "bayes_modules",
    "gaussian_kl",
    "kl",
    "mean_weights",
    "to_bayesian",
]


def _convert(module: nn.Module, prior_std: float, init_log_std: float | None) -> BayesModule | None:
    """The Bayes version of ``module`` with its weights as means, or ``None`` if it is not converted."""
    kw: dict[str, Any] = {"prior_std": prior_std, "init_log_std": init_log_std}
    new: BayesModule
    if isinstance(module, nn.Linear) and type(module) is nn.Linear:
        w = module.weight
        new = BayesLinear(module.in_features, module.out_features, module.bias is not None, device=w.device,
                          dtype=w.dtype, **kw)  # fmt: skip
    elif isinstance(module, nn.Conv2d) and type(module) is nn.Conv2d:
        w, c = module.weight, module
        new = BayesConv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups,
                          c.bias is not None, c.padding_mode, device=w.device, dtype=w.dtype, **kw)  # fmt: skip
    elif isinstance(module, nn.BatchNorm2d) and type(module) is nn.BatchNorm2d and module.affine:
        w, b = module.weight, module
        new = BayesBatchNorm2d(b.num_features, b.eps, b.momentum, b.track_running_stats, device=w.device,
                               dtype=w.dtype, **kw)  # fmt: skip
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            source, target = getattr(b, name), getattr(new, name)
            if source is not None and target is not None:
                target.copy_(source)
    else:
        return None
    with torch.no_grad():
        new.weight_mean.copy_(module.weight)
        if new.bias_mean is not None and module.bias is not None:
            new.bias_mean.copy_(module.bias)
    return new.train(module.training)


def to_bayesian(model: nn.Module, *, prior_std: float, init_log_std: float | None = None) -> nn.Module:
    """A deep copy of ``model`` whose ``Linear``/``Conv2d``/affine ``BatchNorm2d`` layers are Bayes layers.

    The original weights become the posterior means; every log-std starts at ``init_log_std`` (default
    ``log(prior_std)``, as the Adv-BNN authors' code starts the posterior std at the prior's). Only
    layers of exactly those types are converted (subclasses such as attention's output projection,
    whose weight other code reads directly, are left alone). ``model`` itself is not modified.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> bnn = to_bayesian(net, prior_std=0.15)
        >>> type(bnn[1]).__name__, torch.equal(bnn[1].weight_mean, net[1].weight)
        ('BayesLinear', True)
    """
    check_range("prior_std", prior_std, low=0.0, low_open=True)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    top = _convert(model, prior_std, init_log_std)
    if top is not None:
        return top
    converted = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = _convert(child, prior_std, init_log_std)
            if new is not None:
                setattr(parent, name, new)
                converted += 1
    if converted == 0:
        raise ValueError("model has no nn.Linear, nn.Conv2d or affine nn.BatchNorm2d layer to convert")
    return model


def bayes_modules(model: nn.Module) -> list[BayesModule]:
    """The Bayes layers of ``model``, in ``model.modules()`` order."""
    return [m for m in model.modules() if isinstance(m, BayesModule)]


def kl(model: nn.Module) -> torch.Tensor:
    """``KL(q || p)`` summed over every Bayes layer of ``model`` (the regularizer ``g(mu, s)`` of eq. 9)."""
    layers = bayes_modules(model)
    if not layers:
        raise ValueError(f"model has no Bayes layers (got a {type(model).__name__}); convert it with to_bayesian")
    return torch.stack([layer.kl() for layer in layers]).sum()


@contextmanager
def mean_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model``'s Bayes layers with their mean weights inside the ``with`` block (diagnostics only)."""
    layers = bayes_modules(model)
    saved = [layer.stochastic for layer in layers]
    for layer in layers:
        layer.stochastic = False
    try:
        yield model
    finally:
        for layer, value in zip(layers, saved, strict=True):
            layer.stochastic = value


def bayes_loss(*, alpha: float = 1.0, train_size: int) -> LossFn:
    """Adv-BNN's loss, eq. 10: ``cross_entropy(model(x), y) + alpha / train_size * kl(model)``.

    ``alpha`` in ``(0, 1]`` weakens the KL term for small data sets (paper: 1.0 on CIFAR-10, 1/50 on
    STL-10 and ImageNet-143). Pass the result as ``training.fit(..., loss=...)``.

    Example:
        >>> bnn = to_bayesian(nn.Linear(4, 3), prior_std=0.1)
        >>> loss = bayes_loss(alpha=0.5, train_size=100)
        >>> bool(loss(bnn, torch.rand(8, 4), torch.zeros(8, dtype=torch.long)) > 0)
        True
    """
    scale = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True) / check_int("train_size", train_size)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y) + scale * kl(model)

    return loss
