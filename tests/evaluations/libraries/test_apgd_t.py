"""Targeted APGD (apgd-t, Croce & Hein 2020): torchattacks' APGDT bit for bit through the adapter at one draw,
and an EoT attack on a randomized model that breaks examples (an attack that returned its input would fail).

The statistical check uses ``stats.two_proportion_tolerance`` (z = 4: a false failure about once in 16,000
runs at worst, DESIGN.md "Testing").
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchattacks
from torch import nn

from stochdef.adapters import EoT
from stochdef.evaluations.libraries import LIBRARIES, get, names, run, unsupported
from stochdef.evaluations.libraries.attacks.apgd_t import APGDT
from stochdef.evaluations.stats import two_proportion_tolerance


def _ensemble_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    torch.manual_seed(123)  # the same draws judge the clean and the attacked inputs
    with torch.no_grad():
        return int((EoT(model, samples=32, reduce="probs")(x).argmax(1) == y).sum())


def test_registered_for_evaluate_with_a_reason_for_each_other_library() -> None:
    assert get("apgd-t") is APGDT and "apgd-t" in names(evaluate=True)
    attack = APGDT(eps=0.1, steps=10, restarts=2, samples=4)
    assert [lib for lib in LIBRARIES if unsupported(lib, attack) is None] == ["torchattacks"]
    assert "ART" in (unsupported("art", attack) or "") and "Foolbox" in (unsupported("foolbox", attack) or "")
    assert attack.passes(10) == 3 * 10 * 9 * 2 * 4  # 3 passes per gradient, 9 targets, 2 restarts, 4 draws
    assert attack.passes(5) == 3 * 10 * 4 * 2 * 4  # every other class of a 5-way classifier
    assert attack.record_fields() == {"restarts": 2} and attack.key_fields() == {"restarts": 2}
    with pytest.raises(ValueError, match="targeted"):
        APGDT(eps=0.1, targeted=True)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_bit_identical_with_torchattacks_apgdt_on_the_bare_model(
    norm: str, eps: float, plain_digits_mlp: nn.Module, digits: Any
) -> None:
    x, y = digits.x_test[:40], digits.y_test[:40]
    torch.manual_seed(0)
    ours = run("torchattacks", APGDT(eps=eps, norm=norm, steps=8), plain_digits_mlp, x, y, num_classes=10)
    torch.manual_seed(0)
    seed = int(torch.randint(0, 2**31 - 1, ()).item())  # the seed the runner draws (library_seed)
    reference = torchattacks.APGDT(
        plain_digits_mlp, norm="L2" if norm == "l2" else "Linf", eps=eps, steps=8, n_restarts=1, seed=seed,
        n_classes=10,
    )(x, y)  # fmt: skip
    assert not torch.equal(ours, x)  # it moved the inputs
    assert torch.equal(ours, reference)


def test_eot_apgd_t_breaks_examples_of_a_randomized_model(noisy_digits_mlp: nn.Module, digits: Any) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    attack = APGDT(eps=0.15, steps=10, samples=8)
    torch.manual_seed(1)
    adv = run("torchattacks", attack, noisy_digits_mlp, x, y, num_classes=10)
    assert adv.shape == x.shape and float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert float((adv - x).abs().max()) <= 0.15 + 1e-6
    clean, robust = _ensemble_correct(noisy_digits_mlp, x, y), _ensemble_correct(noisy_digits_mlp, adv, y)
    assert robust < clean - len(x) * two_proportion_tolerance(clean, len(x), robust, len(x)), (clean, robust)


def test_needs_four_classes() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="at least 4 classes"):
        run("torchattacks", APGDT(eps=0.1), net, torch.rand(2, 4), torch.tensor([0, 1]), num_classes=3)
