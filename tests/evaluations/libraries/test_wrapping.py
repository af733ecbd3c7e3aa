"""``libraries.run`` attacks with the model's parameters frozen: the same adversarial examples as the library run on
the unfrozen model (the reference: the library's own call through the same adapter), no parameter gradient computed
or left behind, and the parameters' ``requires_grad`` restored, also when the attack fails."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from stochdef.evaluations.libraries import FGSM, PGD, Attack, run, wrap
from stochdef.evaluations.libraries.base import Runner
from stochdef.evaluations.libraries.wrapping import frozen


def _reference(library: str, attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    entry = attack.runners[library]
    assert isinstance(entry, Runner)
    out = entry.fn(attack, wrap(library, attack, model, x, num_classes=10), x, y)
    return torch.as_tensor(out).to(x.dtype).detach()


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
@pytest.mark.parametrize("attack", [FGSM(eps=0.1), PGD(eps=0.1, steps=4, samples=4)], ids=["fgsm", "eot-pgd"])
def test_same_examples_as_the_unfrozen_model_and_no_parameter_gradient(
    library: str, attack: Attack, noisy_digits_mlp: nn.Module, digits: Any
) -> None:
    x, y = digits.x_test[:30], digits.y_test[:30]
    for p in noisy_digits_mlp.parameters():
        p.grad = None
    torch.manual_seed(0)
    reference = _reference(library, attack, noisy_digits_mlp, x, y)
    touched = [p.grad is not None for p in noisy_digits_mlp.parameters()]
    for p in noisy_digits_mlp.parameters():
        p.grad = None
    torch.manual_seed(0)
    ours = run(library, attack, noisy_digits_mlp, x, y, num_classes=10)
    assert not torch.equal(ours, x)
    assert torch.equal(ours, reference)
    assert all(p.grad is None for p in noisy_digits_mlp.parameters())
    assert all(p.requires_grad for p in noisy_digits_mlp.parameters())
    if library == "foolbox":  # the reason for freezing: Foolbox's backward() reaches the parameters
        assert any(touched)


def test_frozen_restores_requires_grad_after_an_error() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    net[0].bias.requires_grad_(False)  # a parameter frozen by its owner stays frozen
    with pytest.raises(RuntimeError, match="boom"), frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
        raise RuntimeError("boom")
    assert [p.requires_grad for p in net.parameters()] == [True, False, True, True]
