"""The cross-check's models: small ones trained within the run (seconds), deterministic and randomized.

Add a model by adding a :class:`ModelCase` to :data:`MODELS` (and its name to :data:`QUICK` / :data:`FULL`):
``build(input_shape, num_classes)`` returns an untrained module, trained here with a fixed seed. A
randomized case is attacked through the EoT adapters; defense families can register their zoo models the
same way.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from stochdef.defenses import Dataset, NoiseInjection, fit, load_dataset, mlp, small_cnn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCase:
    """A model of the cross-check: how to build and train it, and whether it is randomized."""

    name: str
    dataset: str
    randomized: bool
    description: str
    build: Callable[[tuple[int, ...], int], nn.Module]
    epochs: int = 15
    lr: float = 3e-3


def _noisy_mlp(hidden: tuple[int, ...], std: float) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(shape: tuple[int, ...], classes: int) -> nn.Module:
        sizes = (math.prod(shape), *hidden, classes)
        body = mlp(sizes, activation=lambda: nn.Sequential(nn.ReLU(), NoiseInjection(std=std)))
        return nn.Sequential(NoiseInjection(std=std), body)

    return build


def _mlp(hidden: tuple[int, ...]) -> Callable[[tuple[int, ...], int], nn.Module]:
    return lambda shape, classes: mlp((math.prod(shape), *hidden, classes))


MODELS: dict[str, ModelCase] = {
    case.name: case
    for case in (
        ModelCase("mlp-digits", "digits", False, "64-32-10 ReLU MLP on the 8x8 digits", _mlp((32,))),
        ModelCase(
            "noise-mlp-digits",
            "digits",
            True,
            "64-32-10 MLP, Gaussian noise (std 0.2) on the input and after the hidden ReLU, per row",
            _noisy_mlp((32,), 0.2),
        ),
        ModelCase(
            "cnn-digits",
            "digits",
            False,
            "small CNN (2 conv-BN-ReLU-pool blocks, width 8) on the 8x8 digits",
            lambda shape, classes: small_cnn(image_size=shape[-1], num_classes=classes, width=8),
            epochs=10,
        ),
        ModelCase("mlp-mnist5k", "mnist5k", False, "784-100-100-10 ReLU MLP on MNIST-5k", _mlp((100, 100)), epochs=8),
        ModelCase(
            "noise-mlp-mnist5k",
            "mnist5k",
            True,
            "784-100-100-10 MLP, Gaussian noise (std 0.2) on the input and after each hidden ReLU, per row",
            _noisy_mlp((100, 100), 0.2),
            epochs=8,
        ),
    )
}
QUICK: tuple[str, ...] = ("mlp-digits", "noise-mlp-digits")
FULL: tuple[str, ...] = ("mlp-digits", "cnn-digits", "mlp-mnist5k", "noise-mlp-digits", "noise-mlp-mnist5k")


@dataclass
class Trained:
    """A trained model of the cross-check with its data and held-out (ensemble) accuracy."""

    case: ModelCase
    model: nn.Module
    data: Dataset
    accuracy: float
    seconds: float


def ensemble_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, samples: int) -> float:
    """Accuracy of the prediction averaged over ``samples`` draws (the plain accuracy for a deterministic model)."""
    from stochdef.adapters import expectation

    with torch.no_grad():
        logits = expectation(model, x, samples=samples)
    return float((logits.argmax(1) == y).float().mean())


def train(name: str, *, device: str | torch.device, seed: int, quick: bool, progress: bool = False) -> Trained:
    """Build and train model ``name`` on its dataset (fewer epochs with ``quick``), in ``eval()`` mode."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    case = MODELS[name]
    data = load_dataset(case.dataset)
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = case.build(data.input_shape, data.num_classes)
    epochs = max(3, case.epochs // 2) if quick else case.epochs
    fit(
        model,
        data.x_train,
        data.y_train,
        epochs=epochs,
        batch_size=64,
        lr=case.lr,
        seed=seed,
        device=device,
        progress=progress,
        desc=name,
    )
    model = model.to(device).eval()
    x, y = data.x_test.to(device), data.y_test.to(device)
    accuracy = ensemble_accuracy(model, x, y, samples=16 if case.randomized else 1)
    seconds = time.perf_counter() - start
    logger.info("trained %s in %.1f s: held-out accuracy %.4f", name, seconds, accuracy)
    return Trained(case, model, data, accuracy, seconds)
