"""Shared fixtures: devices, the 8x8 digits, and small trained models (deterministic and randomized)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.defenses import NoiseInjection, fit, load_dataset, mlp

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def digits():  # type: ignore[no-untyped-def]
    """scikit-learn's 8x8 digits with stochdef's fixed split."""
    return load_dataset("digits")


def _trained(model: nn.Module, data, epochs: int = 15) -> nn.Module:  # type: ignore[no-untyped-def]
    fit(model, data.x_train, data.y_train, epochs=epochs, batch_size=64, lr=3e-3, progress=False, seed=0)
    return model.eval()


@pytest.fixture(scope="session")
def plain_digits_mlp(digits) -> nn.Module:  # type: ignore[no-untyped-def]
    """A deterministic 64-32-10 MLP trained on the digits (about 95% held-out accuracy)."""
    torch.manual_seed(0)
    return _trained(mlp((64, 32, 10)), digits)


@pytest.fixture(scope="session")
def noisy_digits_mlp(digits) -> nn.Module:  # type: ignore[no-untyped-def]
    """A randomized MLP: Gaussian noise (std 0.2) on the input and after the hidden layer, per row."""
    torch.manual_seed(0)
    net = nn.Sequential(
        NoiseInjection(std=0.2),
        mlp((64, 32, 10), activation=lambda: nn.Sequential(nn.ReLU(), NoiseInjection(std=0.2))),
    )
    return _trained(net, digits)


LIBRARIES = ["foolbox", "art", "torchattacks"]


def _library_fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, library: str, eps: float, samples: int
) -> torch.Tensor:
    """FGSM from ``library`` through its stochdef adapter, checked to be a valid eps-perturbation in [0, 1]."""
    from stochdef.evaluations.libraries import FGSM, run

    adv = run(library, FGSM(eps=eps, samples=samples), model, x, y, num_classes=10)
    assert adv.shape == x.shape and bool(torch.isfinite(adv).all())
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert float((adv - x).abs().max()) <= eps + 1e-6
    return adv


@pytest.fixture
def library_fgsm():  # type: ignore[no-untyped-def]
    """``library_fgsm(model, x, y, library=, eps=, samples=)``: a library's FGSM through the adapters."""
    return _library_fgsm
