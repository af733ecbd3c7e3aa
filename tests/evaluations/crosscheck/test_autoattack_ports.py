"""The two AutoAttack-rand ports compared (:mod:`stochdef.evaluations.crosscheck.autoattack_ports`): the call it
takes for the reference's clean check is that check (every example its draw left comes back unperturbed), and
answering it changes nothing on a deterministic model, where the check's answer is the model's own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("pyautoattack")

from stochdef.evaluations.crosscheck.autoattack_ports import compare  # noqa: E402

N = 30


def test_on_a_deterministic_model_answering_the_clean_check_changes_nothing(
    digits, plain_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:N], digits.y_test[:N]
    row = compare(plain_digits_mlp, x, y, eps=0.1, seed=0, judge=1)
    with torch.no_grad():
        wrong = int((plain_digits_mlp(x).argmax(1) != y).sum())
    assert row["unattacked"] == row["unattacked_unperturbed"] == wrong and row["unattacked_robust"] == 0
    assert row["reference_every_example_attacked"] == row["reference"]


class Shaky(nn.Module):
    """Logits plus unit Gaussian noise per row: one draw misclassifies a third of the examples, a different third
    each time."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z + z.std() * torch.randn_like(z)


def test_on_a_random_model_the_examples_the_check_left_come_back_unperturbed(
    digits, plain_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:N], digits.y_test[:N]
    row = compare(Shaky(plain_digits_mlp), x, y, eps=0.1, seed=0, judge=8)
    assert row["unattacked"] >= 3 and row["perturbed"] >= 5  # neither side trivial
    assert row["unattacked_unperturbed"] == row["unattacked"]
    assert 0 <= row["unattacked_robust"] <= row["unattacked"]
