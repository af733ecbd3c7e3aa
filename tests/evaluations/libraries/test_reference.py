"""Croce & Hein's own AutoAttack (``pyautoattack``, the library ``autoattack``) through the adapters: AutoAttack-rand
and APGD-CE/DLR return valid examples that break an undefended model as torchattacks' port does, the other attacks
say why it has no counterpart, and a box other than [0, 1] is refused with the reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.evaluations.libraries import APGDCE, APGDDLR, AutoAttackRand, Square, run, unsupported
from stochdef.evaluations.libraries.base import NOT_AUTOATTACK
from stochdef.evaluations.libraries.reference import installed

pytestmark = pytest.mark.skipif(not installed(), reason="pyautoattack (the autoattack extra) is not installed")


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("attack", [APGDCE(eps=0.3, steps=10), APGDDLR(eps=0.3, steps=10), AutoAttackRand(eps=0.3)])
def test_the_reference_breaks_an_undefended_mlp_inside_the_ball(attack, digits, plain_digits_mlp: nn.Module) -> None:  # type: ignore[no-untyped-def]
    """eps 0.3 on 8x8 digits in [0, 1]: an undefended MLP (about 95% clean) keeps under 20% against either port
    (a margin: both leave about 0% here); every example lies in the box and the ball."""
    x, y = digits.x_test[:40], digits.y_test[:40]
    torch.manual_seed(0)
    x_adv = run("autoattack", attack, plain_digits_mlp, x, y, num_classes=10)
    assert x_adv.shape == x.shape and bool(((x_adv - x).abs() <= 0.3 + 1e-6).all())
    assert bool((x_adv >= 0).all() and (x_adv <= 1).all())
    assert _accuracy(plain_digits_mlp, x, y) > 0.8
    assert _accuracy(plain_digits_mlp, x_adv, y) < 0.2
    port = run("torchattacks", attack, plain_digits_mlp, x, y, num_classes=10)
    assert _accuracy(plain_digits_mlp, port, y) < 0.2


def test_the_other_attacks_and_another_box_say_why() -> None:
    assert unsupported("autoattack", Square(eps=0.1)) == NOT_AUTOATTACK
    assert "[0, 1]" in str(unsupported("autoattack", APGDCE(eps=0.1, bounds=(-1.0, 1.0))))
    assert "samples 1" in str(unsupported("autoattack", AutoAttackRand(eps=0.1, samples=4)))
