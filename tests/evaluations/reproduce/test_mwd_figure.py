"""The MWD Figure 2 / Table 1 data: lower bounds below upper bounds, attacks swappable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.defenses import Dataset, fit
from stochdef.defenses.mwd import gradient_mode, mwd_net, parameter_clamp, square_error_loss
from stochdef.evaluations.reproduce.mwd_figure import figure2, robust_accuracy, table1


@pytest.fixture(scope="module")
def models(digits: Dataset, plain_digits_mlp: nn.Module) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    net = mwd_net((64, 32, 10))
    with gradient_mode(net, "pseudo"):
        fit(net, digits.x_train, digits.y_train, epochs=4, batch_size=50, lr=5.0, optimizer="adadelta",
            loss=square_error_loss, after_step=parameter_clamp(net), progress=False)  # fmt: skip
    return {"mwd": net.eval(), "relu": plain_digits_mlp}


def test_figure2_lower_bound_stays_below_every_attack(models: dict[str, nn.Module]) -> None:
    result = figure2(models=models, dataset="digits", n=60, quick=True)
    assert result["eps"] == [0.1, 0.3, 0.5] and result["n"] == 60
    assert set(result["mwd"]) == {"clean", "certified", "I-FGSM", "PGD", "I-FGSM[psd]", "PGD[psd]", "upper"}
    assert set(result["relu"]) == {"clean", "certified", "I-FGSM", "PGD", "upper"}
    for label in ("mwd", "relu"):
        entry = result[label]
        curves = [v for k, v in entry.items() if k not in ("clean", "certified", "upper")]
        for i in range(3):
            assert entry["upper"][i] == min(c[i] for c in curves) <= entry["clean"]
            assert entry["certified"][i] <= entry["upper"][i]
    assert result["mwd"]["clean"] > 0.5


def test_attacks_are_parameters(models: dict[str, nn.Module], digits: Dataset) -> None:
    x, y = digits.x_test[:50], digits.y_test[:50]
    with torch.no_grad():
        clean = float((models["relu"](x).argmax(1) == y).float().mean())
    identity = {"none": lambda model, x, y, eps: x}
    assert robust_accuracy(models["relu"], x, y, 0.3, identity["none"]) == pytest.approx(clean)
    rows = table1(models={"relu": models["relu"]}, dataset="digits", n=50, attacks=identity)
    assert rows == {"relu": {"clean": pytest.approx(clean), "none": pytest.approx(clean)}}
