"""Zoo entries of Adv-BNN (Liu et al., ICLR 2019): ``bnn``, ``adv-bnn`` and the ``madry`` baseline, on the small CNN.

The layers, the loss and the converter are in :mod:`stochdef.defenses.bayes`; this module holds the
trainers and their hyper-parameters. The ELBO's parameter gradient is taken under
:func:`~stochdef.defenses.sampling.fast_sampling` (the Bayes linear head by local reparameterization;
the conv layers draw per-example kernels): an unbiased estimate of the same expected loss's gradient,
with less variance. Adv-BNN's training adversary (Algorithm 1's PGD) runs under each layer's default
exact sampler (:func:`exact_draws`): it attacks single draws of the sampled network, whose input
gradients carry the weights' full noise, as an attacker of the model sees them (DESIGN.md, §C2).

Example:
    >>> [spec.name for spec in SPECS]
    ['bnn', 'adv-bnn', 'madry']
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..bayes import bayes_loss, to_bayesian
from ..data import Dataset
from ..models import small_cnn
from ..sampling import fast_sampling, use_sampler
from ..training import Adversary, History, cross_entropy_loss, pgd_adversary
from .spec import Spec, Trainer, TrainSettings, fit_settings

__all__ = ["ALPHA", "EPS", "INIT_STD", "PRIOR_STD", "SPECS", "STEPS", "exact_draws"]

PRIOR_STD = 0.05  # s0: the paper's CIFAR-10 value
INIT_STD = (
    0.01  # initial posterior std; the authors' code starts at s0, too noisy for this small CNN's 1568-input layer
)
ALPHA = 1.0 / 50  # the paper's alpha for its smaller data sets (STL-10, ImageNet-143); MNIST-5k has only 4,000 examples
EPS, STEPS = 0.2, 10  # L-inf radius and PGD steps of adversarial training (paper: 8/255 on CIFAR-10, 10 steps)
ADV_EPOCHS = 8


def _cnn(shape: tuple[int, ...], k: int) -> nn.Module:
    return small_cnn(in_channels=shape[0], image_size=shape[-1], num_classes=k)


def _bnn(shape: tuple[int, ...], k: int) -> nn.Module:
    return to_bayesian(_cnn(shape, k), prior_std=PRIOR_STD, init_log_std=math.log(INIT_STD))


def exact_draws(adversary: Adversary) -> Adversary:
    """``adversary`` run under each layer's default exact per-row sampler, whatever the caller's context.

    Example:
        >>> from stochdef.defenses.sampling import current_sampler
        >>> seen = []
        >>> attack = exact_draws(lambda model, x, y: seen.append(current_sampler()) or x)
        >>> with fast_sampling():
        ...     _ = attack(nn.Identity(), torch.zeros(1), torch.zeros(1))
        >>> seen
        [None]
    """

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with use_sampler(None):
            return adversary(model, x, y)

    return attack


def _trainer(*, bayes: bool, adversarial: bool, desc: str) -> Trainer:
    def train(model: nn.Module, data: Dataset, s: TrainSettings) -> History:
        rows: int | None = None
        epochs = ADV_EPOCHS if adversarial else 20
        steps = STEPS
        if s.quick:  # seconds: a slice of the data, one or two epochs, short attacks
            rows, epochs, steps = (512, 1, 2) if adversarial else (None, 2, steps)
        with fast_sampling():
            return fit_settings(
                model,
                data,
                s,
                desc=desc,
                rows=rows,
                epochs=epochs,
                lr=1e-3,
                loss=bayes_loss(alpha=ALPHA, train_size=len(data.x_train)) if bayes else cross_entropy_loss,
                adversary=exact_draws(pgd_adversary(eps=EPS, step=2.5 * EPS / steps, steps=steps))
                if adversarial
                else None,
            )

    return train


_PAPER = "Liu et al. (Adv-BNN), ICLR 2019"
SPECS: list[Spec] = [
    Spec(
        name="bnn",
        family="bayes",
        paper=f"{_PAPER}, baseline 'BNN'",
        description=f"Bayesian small CNN, ELBO (s0 {PRIOR_STD}, alpha {ALPHA}), no adversarial training",
        build=_bnn,
        train=_trainer(bayes=True, adversarial=False, desc="bnn"),
    ),
    Spec(
        name="adv-bnn",
        family="bayes",
        paper=f"{_PAPER}, Algorithm 1",
        description=f"Bayesian small CNN, ELBO on PGD-{STEPS} examples (eps {EPS}), a fresh draw per PGD step",
        build=_bnn,
        train=_trainer(bayes=True, adversarial=True, desc="adv-bnn"),
    ),
    Spec(
        name="madry",
        family="adv-training",
        paper=f"Madry et al. 2018; baseline 'Adv. Training' of {_PAPER}",
        description=f"deterministic small CNN, PGD-{STEPS} adversarial training (eps {EPS})",
        build=_cnn,
        train=_trainer(bayes=False, adversarial=True, desc="madry"),
    ),
]
