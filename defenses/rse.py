"""Random Self-Ensemble (RSE; Liu, Cheng, Zhang, Hsieh, "Towards Robust Neural Networks via Random
Self-ensemble", ECCV 2018, arXiv:1712.00673), a baseline of Adv-BNN (Liu et al., ICLR 2019).

RSE adds Gaussian noise to the input of every convolution, in training and at inference: an "init"
standard deviation before the first convolution (the image) and an "inner" one before the others.
:func:`to_rse` inserts :class:`~stochdef.defenses.noise.NoiseInjection` layers into a copy of any model;
each element of each row gets its own draw, in ``eval()`` too. RSE predicts with an ensemble (the mean
softmax over draws): at evaluation time that is ``stochdef.adapters.EoT(model, samples=n, reduce="probs")``.

Noise levels: the RSE paper and its code study CIFAR-10 and STL-10 (init/inner 0.2/0.1 and 0.4/0.1 in the
released logs); the Adv-BNN authors' code runs its RSE baseline on Fashion-MNIST (their ``Tiny`` net,
inputs in [0, 1]) with init 0.2 and inner 0.1. stochdef's zoo (:mod:`stochdef.defenses.zoo.rse`) uses those
values for MNIST-like data.

Example:
    >>> import torch
    >>> from stochdef.defenses.models import small_cnn
    >>> net = to_rse(small_cnn(image_size=8), init_std=0.2, inner_std=0.1).eval()
    >>> [m.std for m in net.modules() if isinstance(m, NoiseInjection)]
    [0.2, 0.1]
    >>> x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)
    >>> out = net(x)
    >>> bool((out[0] != out[1]).any())  # two copies of one input, two independent draws
    True
"""

from __future__ import annotations

import copy

from torch import nn

from .noise import NoiseInjection
from .validation import check_range

__all__ = ["to_rse"]


def to_rse(
    model: nn.Module,
    *,
    init_std: float,
    inner_std: float,
    before: tuple[type[nn.Module], ...] = (nn.Conv2d,),
) -> nn.Module:
    """A deep copy of ``model`` with Gaussian noise added to the input of every ``before`` layer.

    The first such layer in ``model.modules()`` order gets noise of std ``init_std``, every other one
    ``inner_std``. Each layer ``L`` becomes ``nn.Sequential(NoiseInjection(std=...), L)``, so its
    parameters move to ``<name>.1.*`` in the state dict. ``model`` itself is not modified.
    """
    check_range("init_std", init_std, low=0.0)
    check_range("inner_std", inner_std, low=0.0)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not before or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in before):
        raise ValueError(f"before must be a non-empty tuple of nn.Module types, got {before!r}")
    model = copy.deepcopy(model)
    targets = [(parent, name) for parent in model.modules() for name, child in parent.named_children()]
    targets = [(p, n) for p, n in targets if isinstance(getattr(p, n), before)]
    if not targets:
        raise ValueError(f"model has no layer of type {[t.__name__ for t in before]} to put noise before")
    for i, (parent, name) in enumerate(targets):
        std = init_std if i == 0 else inner_std
        setattr(parent, name, nn.Sequential(NoiseInjection(distribution="gaussian", std=std), getattr(parent, name)))
    return model
