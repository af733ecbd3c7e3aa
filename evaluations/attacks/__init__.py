"""stochdef.evaluations.attacks: the in-house reference attacks, written from the papers.

Plain functions with keyword-only configuration; torch tensors on any device (everything is created on
``x``'s device); batched and vectorized; any ``nn.Module`` classifier, including
:class:`~stochdef.adapters.EoT` modules; ``samples=`` for the exact EoT gradient (the mean of per-draw
loss gradients). Each returns an :class:`AttackResult` (adversarial batch + per-example success).

* :func:`fgsm`, :func:`fgsm_minimal` (Goodfellow et al. 2015; the minimal-eps search of Foolbox 2.x)
* :func:`pgd` (Madry et al. 2018; BIM / I-FGSM without random start), L-inf or L2
* :func:`deepfool` (Moosavi-Dezfooli et al. 2016), L2 or L-inf
* :func:`local_search` (Narodytska & Kasiviswanathan 2016), black-box, counts queries

Example:
    >>> import torch
    >>> from torch import nn
    >>> from stochdef.evaluations.attacks import pgd
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    >>> pgd(net, x, y, eps=0.1, step=0.01, steps=5).x_adv.shape
    torch.Size([8, 1, 4, 4])
"""

from __future__ import annotations

from ._common import AttackResult
from .deepfool import deepfool
from .fgsm import fgsm, fgsm_minimal
from .localsearch import local_search
from .pgd import pgd

__all__ = ["AttackResult", "deepfool", "fgsm", "fgsm_minimal", "local_search", "pgd"]
