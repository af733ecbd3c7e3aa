"""One training loop for every defense; families plug in their own loss, hooks and adversary.

A family's trainer calls :func:`fit` with what makes it special: the SDR-Decay update and the
variance thresholds are ``after_step`` hooks, the threshold schedule an ``after_epoch`` hook, Adv-BNN's
KL term a ``loss``, adversarial training an ``adversary``, MWD's parameter clamps another hook.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .validation import check_choice, check_int, check_range

__all__ = ["History", "accuracy", "cross_entropy_loss", "fit", "make_optimizer", "pgd_adversary"]


logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Adversary = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerName = Literal["adam", "sgd", "adadelta"]
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "adadelta")


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model(x)`` against ``y``: the default training loss."""
    return F.cross_entropy(model(x), y)


@dataclass
class History:
    """Per-epoch training loss and held-out (single-draw) accuracy."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1] if self.accuracy else math.nan


def make_optimizer(
    name: OptimizerName, params: list[nn.Parameter], *, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Adam, SGD (momentum 0.9) or AdaDelta over ``params``."""
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Fraction of ``x`` classified as ``y`` by one forward pass (one draw for a random model)."""
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    correct = 0
    for i in range(0, len(x), batch_size):
        pred = model(x[i : i + batch_size].to(device)).argmax(dim=1)
        correct += int((pred == y[i : i + batch_size].to(device)).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: OptimizerName | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    loss: LossFn = cross_entropy_loss,
    adversary: Adversary | None = None,
    after_step: Callable[[int], None] | None = None,
    after_epoch: Callable[[int, float], None] | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train ``model`` on ``(x, y)`` by minibatch descent and return its :class:`History`.

    Each step: (optional) ``x_batch = adversary(model, x_batch, y_batch)``; ``loss(model, x_batch,
    y_batch).backward()``; ``optimizer.step()``; ``after_step(global_step)``. After each epoch the
    single-draw accuracy on ``(x_val, y_val)`` is recorded and ``after_epoch(epoch, accuracy)`` runs.
    ``seed`` fixes the shuffling and the model's own draws.

    Example:
        >>> from stochdef.defenses.models import mlp
        >>> x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,))
        >>> hist = fit(mlp((16, 8, 3)), x, y, epochs=2, batch_size=16, progress=False)
        >>> len(hist.loss)
        2
    """
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_range("lr", lr, low=0.0, low_open=True)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    torch.manual_seed(seed)
    model.to(device)
    opt = (
        optimizer
        if isinstance(optimizer, torch.optim.Optimizer)
        else make_optimizer(
            optimizer, [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
    )
    shuffle = torch.Generator().manual_seed(seed)
    history = History()
    step = 0
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=shuffle)
        total, count = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if adversary is not None:
                xb = adversary(model, xb, yb).detach()
                model.train()
            opt.zero_grad(set_to_none=True)
            value = loss(model, xb, yb)
            if not torch.isfinite(value):
                raise FloatingPointError(f"training loss became {value.item()} at epoch {epoch}, step {step}")
            value.backward()
            opt.step()
            step += 1
            if after_step is not None:
                after_step(step)
            total += float(value.detach()) * len(idx)
            count += len(idx)
        history.loss.append(total / count)
        acc = accuracy(model, x_val, y_val) if x_val is not None and y_val is not None else math.nan
        history.accuracy.append(acc)
        bar.set_postfix(loss=f"{history.loss[-1]:.4f}", acc=f"{acc:.4f}")
        logger.info("%s epoch %d: loss %.4f, held-out accuracy %.4f", desc, epoch + 1, history.loss[-1], acc)
        if after_epoch is not None:
            after_epoch(epoch, acc)
    return history


def pgd_adversary(*, eps: float, step: float, steps: int, bounds: tuple[float, float] = (0.0, 1.0)) -> Adversary:
    """Madry et al.'s L-inf PGD with a random start, for adversarial training.

    Every step runs a fresh forward pass, so a random model draws new randomness at each step (Adv-BNN's
    Algorithm 1). The model is attacked in ``eval()`` mode (batch-norm statistics frozen).

    Example:
        >>> from stochdef.defenses.models import mlp
        >>> attack = pgd_adversary(eps=0.1, step=0.05, steps=3)
        >>> x = torch.rand(4, 1, 4, 4)
        >>> x_adv = attack(mlp((16, 3)), x, torch.tensor([0, 1, 2, 0]))
        >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """
    check_range("eps", eps, low=0.0)
    check_range("step", step, low=0.0)
    check_int("steps", steps)
    low, high = bounds

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.eval()
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(low, high)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(low, high)
        return x_adv.detach()

    return attack
