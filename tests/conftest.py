"""Shared fixtures: devices, the 8x8 digits, and small trained models (deterministic and randomized)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.defenses import NoiseInjection, fit, load_dataset, mlp

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


# The tests whose thresholds rest on floating-point results (a trained model's accuracy, sampled draws, an
# attack's outcome), which change with the CPU's kernels: AVX2 and AVX-512 round differently. They are marked
# `float_sensitive`, and `.ci/run` runs them once more under a second capability (`pytest -m float_sensitive`),
# so that a threshold tuned to one machine's output fails before it lands. A path marks every test of a file,
# "path::name" one test function (every parametrization); tests/test_ci.py checks that each entry exists.
FLOAT_SENSITIVE = (
    "tests/adapters/test_catalog_art.py::test_samples_above_1_runs_and_does_not_raise_accuracy",
    "tests/adapters/test_catalog_foolbox.py::test_samples_above_1_runs_and_does_not_raise_accuracy",
    "tests/adapters/test_catalog_torchattacks.py::test_samples_above_1_runs_and_does_not_raise_accuracy",
    "tests/adapters/test_eot.py",
    "tests/adapters/test_libraries.py",
    "tests/defenses/test_bayes.py",
    "tests/defenses/test_dropconnect.py",
    "tests/defenses/test_intervals.py",
    "tests/defenses/test_mwd.py",
    "tests/defenses/test_noise.py",
    "tests/defenses/test_renyi.py",
    "tests/defenses/test_rse.py",
    "tests/defenses/test_sampling.py",
    "tests/defenses/test_sap.py",
    "tests/defenses/test_sap_baselines.py",
    "tests/defenses/test_sdr.py",
    "tests/evaluations/attacks/test_attacks.py",
    "tests/evaluations/crosscheck/test_crosscheck.py",
    "tests/evaluations/evaluate/compute/test_diagnose.py",
    "tests/evaluations/evaluate/compute/test_indicators.py",
    "tests/evaluations/evaluate/test_own_model.py::test_a_retrained_checkpoint_changes_the_numbers",
    "tests/evaluations/libraries/test_strong.py",
    "tests/test_ci.py::test_readme_example_runs",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path, _, rest = item.nodeid.partition("::")
        if path in FLOAT_SENSITIVE or f"{path}::{rest.split('[')[0]}" in FLOAT_SENSITIVE:
            item.add_marker(pytest.mark.float_sensitive)
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
