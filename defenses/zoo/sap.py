"""Zoo entries for Stochastic Activation Pruning (Dhillon et al., ICLR 2018) and its dense baselines.

SAP is post hoc and has no parameters: a SAP spec's checkpoint holds the weights of its *dense* spec,
and its model is that network with SAP-100 after every ReLU (:func:`~stochdef.defenses.sap.apply_sap`).
Training a SAP spec trains nothing new: it loads (or trains and caches) the dense spec with the same seed
and copies its weights, then records SAP's single-draw held-out accuracy.

* MNIST-5k MLP 784-100-100-100-10: dense ``vanilla-mlp`` (:mod:`.plain`) -> ``sap-mlp``; ``adv-mlp``
  (Madry PGD adversarial training) -> ``adv-sap-mlp`` (the paper's ADV and ADV+SAP-100).
* The paper's CIFAR-10 ResNet-20 (89.8% dense) cannot be had here; a :class:`~stochdef.defenses.models.SmallResNet`
  on Fashion-MNIST stands in: ``dense-resnet`` -> ``sap-resnet``, ``adv-resnet`` -> ``adv-sap-resnet``.
  To train in minutes on a 2-core CPU it has one residual unit per stage (ResNet-20 has three), width 8
  (ResNet-20: 16), and trains on a fixed 12,000-image subset of the 60,000 training images.

Example:
    >>> [s.name for s in SPECS][:3]
    ['sap-mlp', 'adv-mlp', 'adv-sap-mlp']
"""

from __future__ import annotations

import logging
import math
from typing import TypedDict

import torch
from torch import nn

from .. import data as datasets
from ..models import SmallResNet, mlp
from ..sap import apply_sap
from ..training import History, accuracy, pgd_adversary
from . import plain
from .spec import Builder, Spec, Trainer, TrainSettings, fit_settings, flat
from .store import load_spec, train_spec

__all__ = ["MLP_PGD", "PAPER", "RESNET_PGD", "SAP_FRACTION", "SPECS"]

logger = logging.getLogger(__name__)

PAPER = "Dhillon et al., Stochastic Activation Pruning (ICLR 2018)"
SAP_FRACTION = 1.0  # SAP-100, the paper's choice (Section 4.1.1)
RESNET_UNITS, RESNET_WIDTH = 1, 8
RESNET_TRAIN_SUBSET = 12_000
# Adversarial training (the paper: 20% FGSM examples at lambda = 2/255 on CIFAR-10; here Madry PGD).


class PGDSettings(TypedDict):
    """The keyword arguments of :func:`~stochdef.defenses.training.pgd_adversary` for adversarial training."""

    eps: float
    step: float
    steps: int


MLP_PGD: PGDSettings = {"eps": 0.1, "step": 0.025, "steps": 10}
RESNET_PGD: PGDSettings = {"eps": 0.1, "step": 0.04, "steps": 3}


def _mlp(shape: tuple[int, ...], k: int) -> nn.Module:
    return mlp((flat(shape), 100, 100, 100, k))


def _resnet(shape: tuple[int, ...], k: int) -> nn.Module:
    return SmallResNet(in_channels=shape[0], num_classes=k, width=RESNET_WIDTH, units=RESNET_UNITS)


def _train_mlp(*, adversarial: bool) -> Trainer:
    def train(model: nn.Module, data: datasets.Dataset, s: TrainSettings) -> History:
        adversary = pgd_adversary(**MLP_PGD) if adversarial else None
        desc = "adv-mlp" if adversarial else "mlp"
        return fit_settings(model, data, s, desc=desc, epochs=2 if s.quick else 20, lr=1e-3, adversary=adversary)

    return train


def _train_resnet(*, adversarial: bool) -> Trainer:
    """Adam with a cosine learning-rate decay per epoch (the paper steps its SGD rate down) on a subset."""

    def train(model: nn.Module, data: datasets.Dataset, s: TrainSettings) -> History:
        n = 512 if s.quick else RESNET_TRAIN_SUBSET
        epochs = 1 if s.quick else (3 if adversarial else 8)
        base_lr = 2e-3
        opt = torch.optim.Adam(model.parameters(), lr=base_lr)

        def decay(epoch: int, _acc: float) -> None:
            for group in opt.param_groups:
                group["lr"] = base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch + 1) / epochs))

        history = fit_settings(
            model,
            data,
            s,
            desc="adv-resnet" if adversarial else "resnet",
            rows=n,
            validate=False,
            epochs=epochs,
            optimizer=opt,
            adversary=pgd_adversary(**RESNET_PGD) if adversarial else None,
            after_epoch=decay,
        )
        history.accuracy[-1] = accuracy(model, data.x_test, data.y_test)  # the full held-out set, once
        return history

    return train


def _train_sap(dense_spec: Spec) -> Trainer:
    """Copy the weights of ``dense_spec`` (trained with the same settings) into the SAP model."""
    dense_name = dense_spec.name

    def train(model: nn.Module, data: datasets.Dataset, s: TrainSettings) -> History:
        dense, meta = load_spec(dense_spec, dataset=data.name, device=s.device, settings=s)
        if meta.get("seed") != s.seed:
            dense, meta = train_spec(dense_spec, dataset=data.name, settings=s)
        model.load_state_dict(dense.state_dict())
        dense_acc = accuracy(dense, data.x_test, data.y_test)
        sap_acc = accuracy(model, data.x_test, data.y_test)
        logger.info("%s: dense %s accuracy %.4f, SAP-100 single draw %.4f", data.name, dense_name, dense_acc, sap_acc)
        final_loss = meta.get("final_loss")
        return History(loss=[float("nan") if final_loss is None else float(final_loss)], accuracy=[sap_acc])

    return train


def _sap(build: Builder) -> Builder:
    return lambda shape, k: apply_sap(build(shape, k), fraction=SAP_FRACTION)


ADV_MLP = Spec(
    name="adv-mlp",
    family="sap",
    paper=PAPER + ", ADV (Section 4.1.3)",
    description="MLP 784-100-100-100-10, PGD adversarial training (eps 0.1, 10 steps of 0.025)",
    build=_mlp,
    train=_train_mlp(adversarial=True),
)
DENSE_RESNET = Spec(
    name="dense-resnet",
    family="sap",
    paper=PAPER + ", the dense ResNet-20 (here a SmallResNet on Fashion-MNIST)",
    description=f"SmallResNet units={RESNET_UNITS} width={RESNET_WIDTH}, {RESNET_TRAIN_SUBSET} training images",
    build=_resnet,
    train=_train_resnet(adversarial=False),
)
ADV_RESNET = Spec(
    name="adv-resnet",
    family="sap",
    paper=PAPER + ", ADV (Section 4.1.3)",
    description="dense-resnet's network, PGD adversarial training (eps 0.1, 3 steps of 0.04)",
    build=_resnet,
    train=_train_resnet(adversarial=True),
)

SPECS: list[Spec] = [
    Spec(
        name="sap-mlp",
        family="sap",
        paper=PAPER,
        description="SAP-100 after every ReLU of vanilla-mlp (its weights, no fine-tuning)",
        build=_sap(_mlp),
        train=_train_sap(plain.VANILLA_MLP),
    ),
    ADV_MLP,
    Spec(
        name="adv-sap-mlp",
        family="sap",
        paper=PAPER + ", ADV+SAP-100",
        description="SAP-100 after every ReLU of adv-mlp (its weights, no fine-tuning)",
        build=_sap(_mlp),
        train=_train_sap(ADV_MLP),
    ),
    DENSE_RESNET,
    Spec(
        name="sap-resnet",
        family="sap",
        paper=PAPER + ", SAP-100 (Section 4.1.1)",
        description="SAP-100 after every ReLU of dense-resnet (its weights, no fine-tuning)",
        build=_sap(_resnet),
        train=_train_sap(DENSE_RESNET),
    ),
    ADV_RESNET,
    Spec(
        name="adv-sap-resnet",
        family="sap",
        paper=PAPER + ", ADV+SAP-100",
        description="SAP-100 after every ReLU of adv-resnet (its weights, no fine-tuning)",
        build=_sap(_resnet),
        train=_train_sap(ADV_RESNET),
    ),
]
