"""Interval bound propagation: sound on random points and box corners, tight at eps = 0, exact for one MWD
layer, and certified accuracy below the accuracy under every attack run."""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks
from torch import nn

from stochdef.adapters import to_torchattacks
from stochdef.defenses import Dataset, fit, mlp
from stochdef.defenses.intervals import certified, certified_accuracy, interval_bounds, propagate
from stochdef.defenses.mwd import MWDLayer, gradient_mode, mwd_net, parameter_clamp, square_error_loss
from stochdef.defenses.mwd_functional import mwd_interval
from stochdef.defenses.zoo.mwd import sigmoid_mlp

TOL = 1e-5  # float32 rounding of sums of up to 64 terms of size <= 10: far below 1e-5


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "mwd": mwd_net((16, 12, 8, 5), units=("and", "mixed", "nand")),
        "relu": mlp((16, 12, 8, 5)),
        "sigmoid": sigmoid_mlp((16, 12, 8, 5)),
    }


def _perturbations(x: torch.Tensor, eps: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points of each row's box: half uniform inside, half random corners (each coordinate at an end)."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    inside = torch.rand(n // 2, *x.shape, generator=gen)
    corner = torch.randint(0, 2, (n - n // 2, *x.shape), generator=gen).float()
    t = torch.cat([inside, corner])
    return lo + t * (hi - lo)


@pytest.mark.parametrize("kind", ["mwd", "relu", "sigmoid"])
@pytest.mark.parametrize("eps", [0.03, 0.1, 0.3])
def test_bounds_are_sound_on_random_points_and_corners(kind: str, eps: float) -> None:
    model = _models()[kind]
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 16, generator=gen)
    lower, upper = interval_bounds(model, x, eps)
    points = _perturbations(x, eps, 400, gen)
    with torch.no_grad():
        out = model(points.view(-1, 16)).view(400, 16, -1)
    assert bool((out >= lower - TOL).all() and (out <= upper + TOL).all())
    assert bool((lower <= upper).all())


@pytest.mark.parametrize("kind", ["mwd", "relu", "sigmoid"])
def test_bounds_are_tight_at_zero_eps(kind: str) -> None:
    model = _models()[kind]
    x = torch.rand(8, 16)
    lower, upper = interval_bounds(model, x, 0.0)
    with torch.no_grad():
        out = model(x)
    assert torch.equal(lower, out) and torch.equal(upper, out)


def test_one_mwd_layer_is_bounded_exactly() -> None:
    """For one layer the interval is the true range: a fine grid over a 2-input box reaches both ends."""
    gen = torch.Generator().manual_seed(0)
    layer = MWDLayer(2, 6, unit="mixed", u_bounds=(0.5, 3.0), generator=gen)
    x = torch.tensor([[0.4, 0.7]])
    lower, upper = interval_bounds(layer, x, 0.2)
    grid = torch.linspace(0, 1, 201)
    points = torch.cartesian_prod(0.2 + 0.4 * grid, 0.5 + 0.4 * grid)  # the box, with its corners and every w
    with torch.no_grad():
        out = layer(points)
    # |dU/dx_i| = 2 u |a| e^{-a^2} <= 2 u / sqrt(2e) with a = u (x_i - w_i), u <= 3; the optimum is within one
    # grid spacing of a grid point in each of the 2 coordinates: the grid's worst miss
    step = (0.4 / 200) * 2 * 2 * 3.0 / math.sqrt(2 * math.e)
    assert bool((out.amin(0) - lower[0] <= step).all() and (upper[0] - out.amax(0) <= step).all())
    assert bool((out.amin(0) >= lower[0] - TOL).all() and (out.amax(0) <= upper[0] + TOL).all())


def test_the_papers_printed_max_formula_would_be_unsound() -> None:
    """Section 4 prints l = max_i min(f(l_i), f(r_i)); but the unit is min_i f_i(x_i), so its ends take min_i."""
    u, w = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 0.0]])
    low, high = torch.tensor([[0.0, 0.9]]), torch.tensor([[0.1, 1.0]])

    def f(v: torch.Tensor) -> torch.Tensor:  # the per-input terms f_i(v_i) = exp(-(u_i (v_i - w_i))^2)
        return torch.exp(-((u * (v - w)) ** 2))

    printed = torch.minimum(f(low), f(high)).amax(-1).item()  # = e^{-0.01}
    reachable = math.exp(-1.0)  # the output at x = (0, 1): z = max(0, 1) = 1
    lower, upper = mwd_interval(low, high, u, w)
    assert printed > reachable  # the printed formula excludes a reachable output
    assert lower.item() == pytest.approx(reachable)
    assert upper.item() == pytest.approx(math.exp(-0.81))  # min_i m_i: input 2 never gets nearer than 0.9


def test_linear_rule_equals_positive_negative_weight_parts() -> None:
    layer = nn.Linear(7, 4)
    lo = torch.rand(3, 7)
    hi = lo + torch.rand(3, 7)
    lower, upper = propagate(layer, lo, hi)
    pos, neg = layer.weight.clamp_min(0), layer.weight.clamp_max(0)
    torch.testing.assert_close(lower, lo @ pos.T + hi @ neg.T + layer.bias)
    torch.testing.assert_close(upper, hi @ pos.T + lo @ neg.T + layer.bias)


@pytest.fixture(scope="module")
def digits_mwd(digits: Dataset) -> nn.Module:
    torch.manual_seed(0)
    net = mwd_net((64, 64, 10))
    with gradient_mode(net, "pseudo"):
        fit(net, digits.x_train, digits.y_train, epochs=8, batch_size=50, lr=5.0, optimizer="adadelta",
            loss=square_error_loss, after_step=parameter_clamp(net), progress=False)  # fmt: skip
    return net.eval()


@pytest.mark.parametrize("kind", ["mwd", "relu"])
def test_certified_accuracy_never_exceeds_accuracy_under_attack(
    kind: str, digits_mwd: nn.Module, plain_digits_mlp: nn.Module, digits: Dataset
) -> None:
    model = digits_mwd if kind == "mwd" else plain_digits_mlp
    x, y = digits.x_test, digits.y_test
    previous = None
    for eps in (0.0, 0.02, 0.05, 0.1):
        cert = certified(model, x, y, eps)
        attacks = [torchattacks.BIM(to_torchattacks(model, samples=1), eps=eps, alpha=eps / 4, steps=10)]
        attacks.append(torchattacks.PGD(to_torchattacks(model, samples=1), eps=eps, alpha=eps / 4, steps=10))
        adversarial = [a(x, y) if eps > 0 else x for a in attacks]
        with torch.no_grad():
            survived = [model(x_adv).argmax(1) == y for x_adv in adversarial]
        for alive in survived:
            assert not bool((cert & ~alive).any())  # a certified example is never broken
        assert certified_accuracy(model, x, y, eps) == pytest.approx(float(cert.float().mean()))
        if previous is not None:
            assert not bool((cert & ~previous).any())  # nested boxes: certificates only shrink with eps
        previous = cert
    assert float(certified(model, x, y, 0.02).float().mean()) > 0


def test_bad_input_raises_naming_the_argument() -> None:
    net = mwd_net((4, 2))
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="eps"):
        interval_bounds(net, x, -0.1)
    with pytest.raises(ValueError, match="input_range"):
        interval_bounds(net, x, 0.1, input_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="x must lie"):
        interval_bounds(net, x + 2.0, 0.1)
    with pytest.raises(ValueError, match="y must"):
        certified_accuracy(net, x, torch.tensor([0, 1, 5]), 0.1)
    with pytest.raises(TypeError, match="Softmax"):
        interval_bounds(nn.Sequential(nn.Linear(4, 2), nn.Softmax(dim=1)), x, 0.1)
