"""MWD units: the forward formula, the pseudogradients, the gradient switch, parameter bounds, training,
and MWD nets through every adapter in both gradient modes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.defenses import Dataset, fit
from stochdef.defenses import mwd_functional as mf
from stochdef.defenses.mwd import (
    GradientMode,
    MWDLayer,
    Unit,
    clamp_parameters,
    gradient_mode,
    gradient_of,
    mwd_net,
    parameter_clamp,
    set_gradient,
    square_error_loss,
)
from stochdef.defenses.mwd_functional import LargeAttractorExp, SharedFeedbackMax, max_weighted_sq_distance, mwd_unit
from stochdef.evaluations.libraries import FGSM, run

EPS = 0.1


def _layer(u: list[list[float]], w: list[list[float]], unit: Unit = "and") -> MWDLayer:
    layer = MWDLayer(len(u[0]), len(u), unit=unit, u_bounds=(0.0, 10.0), input_range=(-5.0, 5.0))
    with torch.no_grad():
        layer.u.copy_(torch.tensor(u))
        layer.w.copy_(torch.tensor(w))
    return layer


# ---- forward ------------------------------------------------------------------------------------------


def test_forward_matches_hand_computed_units() -> None:
    u, w = [[2.0, 1.0], [1.0, 3.0]], [[0.0, 0.5], [1.0, 0.0]]
    x = torch.tensor([[0.5, 1.0]])
    # unit 0: max((2 * 0.5)^2, (1 * 0.5)^2) = 1; unit 1: max((1 * -0.5)^2, (3 * 1)^2) = 9
    expected = torch.tensor([[math.exp(-1.0), math.exp(-9.0)]])
    torch.testing.assert_close(_layer(u, w, "and")(x), expected)
    torch.testing.assert_close(_layer(u, w, "nand")(x), 1.0 - expected)


def test_forward_matches_brute_force_loop_for_mixed_layers() -> None:
    gen = torch.Generator().manual_seed(1)
    layer = MWDLayer(7, 5, unit="mixed", generator=gen).requires_grad_(False)
    x = torch.rand(4, 7, generator=gen)
    expected = torch.empty(4, 5)
    for b in range(4):
        for k in range(5):
            z = max(float(layer.u[k, i] * (x[b, i] - layer.w[k, i])) ** 2 for i in range(7))
            y = math.exp(-z)
            expected[b, k] = 1.0 - y if bool(layer.negated[k]) else y
    torch.testing.assert_close(layer(x), expected)


def test_mixed_unit_types_are_restored_from_a_checkpoint() -> None:
    a = MWDLayer(6, 40, unit="mixed", generator=torch.Generator().manual_seed(0))
    b = MWDLayer(6, 40, unit="mixed", generator=torch.Generator().manual_seed(1))
    assert 0 < int(a.negated.sum()) < 40 and not torch.equal(a.negated, b.negated)
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 6)
    assert torch.equal(b.negated, a.negated) and torch.equal(b(x), a(x))


def test_chunked_layer_matches_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = MWDLayer(9, 11, unit="mixed", generator=torch.Generator().manual_seed(0))
    x = torch.rand(6, 9)
    whole = layer(x)
    monkeypatch.setattr(mf, "MAX_CHUNK_ELEMENTS", 20)  # 1 unit per block
    torch.testing.assert_close(layer(x), whole, rtol=0, atol=0)


# ---- pseudogradients ---------------------------------------------------------------------------------


def test_large_attractor_exp_backward_is_the_stated_formula() -> None:
    z = torch.tensor([0.0, 0.5, 3.0, 20.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    for rho in (0.0, 0.25, 1.0):
        (grad,) = torch.autograd.grad((LargeAttractorExp.apply(z, rho) * g).sum(), z)
        expected = g * -(rho / torch.sqrt(1 + z) + (1 - rho) * torch.exp(-z))
        torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(LargeAttractorExp.apply(z, 1.0), torch.exp(-z))


def test_shared_feedback_max_backward_is_the_stated_formula() -> None:
    z = torch.tensor([[0.1, 2.0, 1.5], [3.0, -1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([2.0, -1.0], dtype=torch.float64)
    y = z.detach().amax(1, keepdim=True)
    onehot = F.one_hot(z.detach().argmax(1), 3).double()
    for rho in (0.0, 0.3, 1.0):
        (grad,) = torch.autograd.grad((SharedFeedbackMax.apply(z, rho) * g).sum(), z)
        torch.testing.assert_close(grad, g[:, None] * (rho * torch.exp(z.detach() - y) + (1 - rho) * onehot))


def test_unit_pseudogradient_is_the_chain_rule_of_the_stated_pseudoderivatives() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    u = (3 * torch.rand(1, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    w = torch.rand(1, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    gx, gu, gw = torch.autograd.grad(mwd_unit(x, u, w, rho=1.0).sum(), (x, u, w))
    d = (x - w).detach()
    zi = (u.detach() * d) ** 2
    z = zi.max()
    # dy/dz_i = (-1 / sqrt(1 + z)) * e^{z_i - z}; dz_i/dx_i = 2 u^2 d, dz_i/du_i = 2 u d^2, dz_i/dw_i = -2 u^2 d
    s = -1 / torch.sqrt(1 + z) * torch.exp(zi - z)
    torch.testing.assert_close(gx, s * 2 * u.detach() ** 2 * d)
    torch.testing.assert_close(gu, s * 2 * u.detach() * d**2)
    torch.testing.assert_close(gw, -s * 2 * u.detach() ** 2 * d)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_fused_distance_has_the_gradients_of_shared_feedback_max(rho: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mf, "MAX_CHUNK_ELEMENTS", 30)  # several blocks of units
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    u = (3 * torch.rand(5, 6, generator=gen, dtype=torch.float64)).requires_grad_()
    w = torch.rand(5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    fused = torch.autograd.grad((max_weighted_sq_distance(x, u, w, rho=rho) * g).sum(), (x, u, w))
    reference = torch.autograd.grad((SharedFeedbackMax.apply((u * (x[:, None] - w)) ** 2, rho) * g).sum(), (x, u, w))
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_true_gradient_mode_passes_gradcheck() -> None:
    gen = torch.Generator().manual_seed(0)  # continuous random values: no ties in the max
    layer = MWDLayer(6, 4, unit="mixed", generator=gen).double()
    x = torch.rand(3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert gradient_of(layer) == "true"

    def f(x: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return mwd_unit(x, u, w, layer.negated, rho=layer.rho)

    assert torch.autograd.gradcheck(f, (x, layer.u, layer.w))


def test_pseudo_and_true_gradients_differ_and_the_switch_restores() -> None:
    net = mwd_net((8, 6, 3), units=("mixed", "nand"), generator=torch.Generator().manual_seed(0))
    x = torch.rand(4, 1, 8).requires_grad_()

    def grad() -> torch.Tensor:
        return torch.autograd.grad(net(x).sum(), x)[0]

    true = grad()
    with gradient_mode(net, "pseudo"):
        assert gradient_of(net) == "pseudo"
        pseudo = grad()
        with gradient_mode(net, 0.5):
            half = grad()
    assert gradient_of(net) == "true" and torch.equal(grad(), true)
    assert (true != 0).sum() < (pseudo != 0).sum()  # the true max feeds back to one input per unit only
    # each pseudoderivative blends linearly in rho (tested above); their chain-rule product does not
    assert not torch.allclose(half, true) and not torch.allclose(half, pseudo)


# ---- training and parameter bounds -----------------------------------------------------------------


def test_parameter_bounds_hold_after_every_training_step(digits: Dataset) -> None:
    torch.manual_seed(0)
    net = mwd_net((64, 16, 10), u_bounds=(0.5, 1.0))
    clamp = parameter_clamp(net)
    outside = []

    def after_step(step: int) -> None:
        layers = [m for m in net.modules() if isinstance(m, MWDLayer)]
        outside.append(sum(int(((m.u < 0.5) | (m.u > 1.0)).sum() + ((m.w < 0) | (m.w > 1)).sum()) for m in layers))
        clamp(step)
        for m in layers:
            assert bool((m.u >= 0.5).all() and (m.u <= 1.0).all() and (m.w >= 0).all() and (m.w <= 1).all())

    with gradient_mode(net, "pseudo"):
        fit(net, digits.x_train[:400], digits.y_train[:400], epochs=2, batch_size=50, lr=50.0,
            optimizer="adadelta", loss=square_error_loss, after_step=after_step, progress=False)  # fmt: skip
    assert len(outside) == 16 and sum(outside) > 0  # the optimizer did push parameters out: the clamp mattered


def test_small_mwd_net_trains_on_the_digits(digits: Dataset) -> None:
    torch.manual_seed(0)
    net = mwd_net((64, 64, 10))
    with gradient_mode(net, "pseudo"):
        hist = fit(net, digits.x_train, digits.y_train, epochs=8, batch_size=50, lr=5.0, optimizer="adadelta",
                   loss=square_error_loss, after_step=parameter_clamp(net), x_val=digits.x_test,
                   y_val=digits.y_test, progress=False)  # fmt: skip
    assert hist.final_accuracy >= 0.85  # 10 classes: chance is 0.1


# ---- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"u_bounds": (1.0, 0.5)}, "u_bounds"),
        ({"u_bounds": (-0.1, 3.0)}, "u_bounds"),
        ({"input_range": (1.0, 1.0)}, "input_range"),
        ({"input_range": (1.0, 0.0)}, "input_range"),
        ({"unit": "or"}, "unit"),
        ({"rho": 1.5}, "rho"),
    ],
)
def test_bad_configuration_raises_naming_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        MWDLayer(3, 2, **kwargs)


def test_bad_gradient_switches_raise() -> None:
    with pytest.raises(ValueError, match="mode"):
        set_gradient(mwd_net((4, 2)), "fake")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MWD layers"):
        set_gradient(nn.Linear(3, 2), "pseudo")
    with pytest.raises(ValueError, match="shape"):
        MWDLayer(3, 2)(torch.rand(2, 4))
    clamp_parameters(nn.Linear(3, 2))  # a model without MWD layers has nothing to clamp


# ---- through the adapters, in both gradient modes ---------------------------------------------------


def _fgsm(library: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FGSM from ``library`` (through its adapter at one draw), or the in-house reference."""
    return run(library, FGSM(eps=EPS), net, x, y, num_classes=10)


@pytest.mark.parametrize("mode", ["true", "pseudo"])
@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_mwd_through_every_adapter_in_both_gradient_modes(
    mode: GradientMode, library: str, digits: Dataset, device: str
) -> None:
    net = mwd_net((64, 32, 10), units=("mixed", "nand"), generator=torch.Generator().manual_seed(0)).to(device)
    x, y = digits.x_test[:32].to(device), digits.y_test[:32].to(device)
    with gradient_mode(net, mode):
        expected = _fgsm("inhouse", net, x, y)
        adv = _fgsm(library, net, x, y)
    other: GradientMode = "pseudo" if mode == "true" else "true"
    with gradient_mode(net, other):
        assert not torch.equal(_fgsm("inhouse", net, x, y), expected)  # the mode decides the attack
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)
