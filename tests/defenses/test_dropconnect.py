"""DropConnect (Wan et al. 2013; the SDR paper's baseline): per-example masks against a brute-force loop and
the analytic moments of a unit, the stochastic switch, the adapters, reproducibility, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import ensemble_accuracy, is_random
from stochdef.defenses import accuracy, fit, load_dataset, zoo
from stochdef.defenses.dropconnect import (
    DropConnectLinear,
    dropconnect_linear,
    dropconnect_mask,
    dropconnect_mlp,
    set_stochastic,
)
from stochdef.defenses.zoo import TrainSettings
from stochdef.defenses.zoo.dropconnect import SPECS

N_DRAWS = 100_000
Z = 6.0  # bounds below are Z standard errors: a false failure has probability < 1e-8 per check


# ---- (a) one unit's mean and variance under Bernoulli masks; rows independent -------------------------


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_replicated_rows_match_the_analytic_unit_moments(p: float, device: str) -> None:
    torch.manual_seed(0)
    layer = DropConnectLinear(20, 2, p=p).to(device).eval()
    x = torch.randn(20, device=device)
    with torch.no_grad():
        out = layer(x.expand(N_DRAWS, -1))
        # y = b + sum_i c_i m_i with c_i = W_i x_i / q, m_i ~ Bernoulli(q), q = 1 - p, independent:
        # cumulants add, kappa2(m) = q(1-q), kappa4(m) = q(1-q)(1 - 6q(1-q)).
        q = 1 - p
        c = layer.weight * x / q
        mean = layer.weight @ x + layer.bias
        var = (c**2).sum(1) * q * (1 - q)
        kappa4 = (c**4).sum(1) * q * (1 - q) * (1 - 6 * q * (1 - q))
    n = N_DRAWS
    assert torch.all((out.mean(0) - mean).abs() <= Z * torch.sqrt(var / n))
    # Normal approximation of the sample variance: Var(s^2) ~ (mu4 - var^2) / n = (kappa4 + 2 var^2) / n.
    assert torch.all((out.var(0) - var).abs() <= Z * torch.sqrt((kappa4 + 2 * var**2) / n))
    torch.testing.assert_close(var, p / q * ((layer.weight * x) ** 2).sum(1))  # the docstring's formula
    z = (out - mean) / var.sqrt()
    pairs = n // 2
    assert torch.all((z[0::2] * z[1::2]).mean(0).abs() <= Z / math.sqrt(pairs))  # distinct rows uncorrelated


def test_per_example_masks_match_a_loop(device: str) -> None:
    torch.manual_seed(1)
    weight, bias = torch.randn(4, 6, device=device), torch.randn(4, device=device)
    x = torch.randn(5, 6, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(7)
    out = dropconnect_linear(x, weight, bias, p=0.3, generator=gen)
    gen.manual_seed(7)
    masks = dropconnect_mask(5, weight, p=0.3, generator=gen)
    expected = torch.stack([(masks[b] * weight / 0.7) @ x[b] + bias for b in range(5)])
    torch.testing.assert_close(out, expected)
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 5  # every row its own mask
    keep = dropconnect_mask(200, torch.empty(50, 50), p=0.3).float().mean()
    assert abs(float(keep) - 0.7) <= Z * math.sqrt(0.7 * 0.3 / 500_000)


def test_switch_off_and_p_zero_are_the_plain_layer() -> None:
    torch.manual_seed(2)
    layer = DropConnectLinear(6, 3, p=0.2, stochastic=False)
    x = torch.randn(4, 6)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert torch.equal(dropconnect_linear(x, layer.weight, layer.bias, p=0.0), F.linear(x, layer.weight, layer.bias))
    net = set_stochastic(dropconnect_mlp((6, 5, 3)), False)
    assert torch.equal(net(x), net(x))
    assert is_random(set_stochastic(net, True), x)


def test_gradients_match_autograd_of_the_loop() -> None:
    torch.manual_seed(3)
    layer = DropConnectLinear(6, 4, p=0.25, generator=torch.Generator().manual_seed(5))
    x = torch.randn(3, 6, requires_grad=True)
    (layer(x) ** 2).sum().backward()
    masks = dropconnect_mask(3, layer.weight, p=0.25, generator=torch.Generator().manual_seed(5))
    w = layer.weight.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    sum((((masks[b] * w / 0.75) @ x2[b] + layer.bias.detach()) ** 2).sum() for b in range(3)).backward()
    torch.testing.assert_close(layer.weight.grad, w.grad)
    torch.testing.assert_close(x.grad, x2.grad)


# ---- (d) random after eval(); real FGSM of every library through the adapters -------------------------


@pytest.fixture(scope="module")
def trained_dropconnect(digits) -> nn.Module:
    torch.manual_seed(0)
    model = dropconnect_mlp((64, 32, 10), p=0.2)
    fit(model, digits.x_train, digits.y_train, epochs=12, batch_size=64, lr=3e-3, progress=False)
    return model.eval()


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_fgsm_through_adapters(trained_dropconnect: nn.Module, digits, library: str, library_fgsm) -> None:
    torch.manual_seed(5)
    x, y = digits.x_test[:100], digits.y_test[:100]
    model = trained_dropconnect.train()  # ART and torchattacks attack in eval(), Foolbox in the given mode
    x_adv = library_fgsm(model, x, y, library=library, eps=0.15, samples=16)
    model.eval()  # the mode each library leaves is its own wrapper's (tests/adapters/test_policy.py)
    assert is_random(model, x[:4])
    clean, robust = ensemble_accuracy(model, x, y, samples=32), ensemble_accuracy(model, x_adv, y, samples=32)
    assert clean >= 0.8
    assert robust <= clean - 0.3, f"{library}: clean {clean:.2f}, under EoT-FGSM {robust:.2f}"


# ---- (e) reproducible under torch.manual_seed --------------------------------------------------------


def test_reproducible_under_manual_seed(device: str) -> None:
    torch.manual_seed(0)
    net = dropconnect_mlp((6, 5, 3)).to(device)
    x = torch.rand(8, 6, device=device)
    torch.manual_seed(11)
    first = net(x)
    torch.manual_seed(11)
    assert torch.equal(net(x), first)
    assert not torch.equal(net(x), first)


def test_zoo_spec_trains_quick_and_reproducibly(digits) -> None:
    (spec,) = SPECS
    settings = TrainSettings(seed=1, quick=True, progress=False)
    small = digits.subset(train=512, test=128)
    states = []
    for _ in range(2):
        torch.manual_seed(settings.seed)
        model = spec.build(digits.input_shape, digits.num_classes)
        history = spec.train(model, small, settings)
        states.append(model.state_dict())
    assert len(history.loss) == 2 and history.loss[1] < history.loss[0]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert is_random(model, digits.x_test[:4])


def test_shipped_checkpoint_is_random_and_as_accurate_as_recorded() -> None:
    model, meta = zoo.load("dropconnect", dataset="mnist5k", train_if_missing=False)
    data = load_dataset("mnist5k")
    assert is_random(model, data.x_test[:4])
    torch.manual_seed(0)
    acc = accuracy(model, data.x_test, data.y_test, batch_size=250)
    recorded, n = meta["test_accuracy_single_draw"], len(data.y_test)
    # A fresh draw per row: the n hits are independent Bernoullis, so the accuracy has sd <= sqrt(p(1-p)/n).
    assert abs(acc - recorded) <= Z * math.sqrt(recorded * (1 - recorded) / n)
    plain = accuracy(set_stochastic(model, False), data.x_test, data.y_test)  # the mean network
    assert plain >= recorded - 0.05


# ---- (f) bad input names the argument -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: DropConnectLinear(4, 3, p=1.0), ValueError, "p must be in"),
        (lambda: DropConnectLinear(4, 3, p=-0.1), ValueError, "p must be in"),
        (lambda: dropconnect_mlp((4, 3), p=1.5), ValueError, "p must be in"),
        (lambda: DropConnectLinear(4, 3, p=float("nan")), ValueError, "p must be a number"),
        (lambda: DropConnectLinear(0, 3), ValueError, "in_features"),
        (lambda: DropConnectLinear(4, 3, stochastic=1), TypeError, "stochastic"),
        (lambda: DropConnectLinear(4, 3)(torch.rand(2, 5)), ValueError, "x must have 4 features"),
        (lambda: dropconnect_linear(torch.rand(2, 3, 4), torch.rand(3, 4), p=0.2), ValueError, "x must have shape"),
    ],
)
def test_bad_input_names_the_argument(make, error: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        make()
