"""RSE (Random Self-Ensemble): noise before every convolution, per row and element, random in eval mode.

Statistical tolerances: n independent draws give a sample variance within sigma^2 * sqrt(2 / (n - 1)) per
standard error and a sample correlation of independent variables within 1 / sqrt(n); bounds are 6 of those.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks
from torch import nn

from stochdef.adapters import EoT, is_random, to_torchattacks
from stochdef.defenses import NoiseInjection, fit, small_cnn, zoo
from stochdef.defenses.rse import to_rse
from stochdef.evaluations.libraries import FGSM, run

N = 20_000
Z = 6.0


def _identity_conv() -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return conv


def test_forward_is_the_hand_written_rse_network() -> None:
    """Same RNG stream, same numbers: noise of std init before conv 1, inner before conv 2, nowhere else."""
    torch.manual_seed(0)
    net = small_cnn(image_size=8, width=2).eval()
    rse = to_rse(net, init_std=0.3, inner_std=0.05).eval()
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    out = rse(x)
    torch.manual_seed(1)
    h = x + 0.3 * torch.randn_like(x)
    for i, layer in enumerate(net):
        if i == 4:  # the second convolution
            h = h + 0.05 * torch.randn_like(h)
        h = layer(h)
    assert torch.equal(out, h)
    assert [type(m).__name__ for m in net] == [type(m).__name__ for m in small_cnn(image_size=8, width=2)]


def test_rows_are_independent_draws_with_the_set_variances(device: str) -> None:
    """Two identity 1x1 convs: out = x + n_init + n_inner, Var = init^2 + inner^2, rows uncorrelated."""
    rse = to_rse(nn.Sequential(_identity_conv(), _identity_conv()), init_std=0.3, inner_std=0.2).to(device).eval()
    x = torch.rand(1, 1, 2, 2, device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        out = rse(x.expand(N, 1, 2, 2).contiguous()).reshape(N, 4)
    var = 0.3**2 + 0.2**2
    assert ((out.var(0) - var).abs() <= Z * var * math.sqrt(2.0 / (N - 1))).all()
    assert ((out.mean(0) - x.reshape(4)).abs() <= Z * math.sqrt(var / N)).all()
    z = (out - x.reshape(1, 4)) / math.sqrt(var)
    assert abs(float((z[0::2, 0] * z[1::2, 0]).mean())) <= Z / math.sqrt(N // 2)  # rows 2k, 2k+1
    assert abs(float((z[:, 0] * z[:, 1]).mean())) <= Z / math.sqrt(N)  # elements of one row


@pytest.fixture(scope="module")
def trained_rse(digits) -> nn.Module:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    rse = to_rse(small_cnn(image_size=8, width=4), init_std=0.2, inner_std=0.1)
    fit(rse, digits.x_train, digits.y_train, epochs=6, batch_size=64, lr=3e-3, progress=False)
    return rse.eval()


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_fgsm_through_each_library(trained_rse: nn.Module, digits, library: str) -> None:
    x, y = digits.x_test[:16], digits.y_test[:16]
    x_adv = run(library, FGSM(eps=0.1, samples=8), trained_rse, x, y, num_classes=10)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert (x_adv >= 0).all() and (x_adv <= 1).all()
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(x_adv, x)
    assert not trained_rse.training and is_random(trained_rse, x)


def test_eot_pgd_lowers_ensemble_accuracy(trained_rse: nn.Module, digits) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    ensemble = EoT(trained_rse, samples=16, reduce="probs")
    torch.manual_seed(0)
    with torch.no_grad():
        clean = float((ensemble(x).argmax(1) == y).float().mean())
    x_adv = torchattacks.PGD(to_torchattacks(trained_rse, samples=16), eps=0.2, alpha=0.04, steps=10)(x, y)
    with torch.no_grad():
        attacked = float((ensemble(x_adv).argmax(1) == y).float().mean())
    assert clean >= 0.8, clean
    assert attacked <= clean - 0.4, (clean, attacked)


def test_reproducible_under_manual_seed() -> None:
    rse = to_rse(small_cnn(image_size=8, width=2), init_std=0.2, inner_std=0.1).eval()
    x = torch.rand(3, 1, 8, 8)
    torch.manual_seed(2)
    first = rse(x)
    torch.manual_seed(2)
    assert torch.equal(rse(x), first)
    assert not torch.equal(rse(x), first)


def test_zoo_spec_builds_a_random_rse_cnn() -> None:
    model = zoo.get("rse").build((1, 8, 8), 10)
    assert [m.std for m in model.modules() if isinstance(m, NoiseInjection)] == [0.2, 0.1]
    assert is_random(model, torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: to_rse(small_cnn(image_size=8), init_std=-0.1, inner_std=0.1), "init_std"),
        (lambda: to_rse(small_cnn(image_size=8), init_std=0.1, inner_std=-1.0), "inner_std"),
        (lambda: to_rse(small_cnn(image_size=8), init_std=math.nan, inner_std=0.1), "init_std"),
        (lambda: to_rse(nn.Linear(3, 2), init_std=0.1, inner_std=0.1), "Conv2d"),
        (lambda: to_rse(small_cnn(image_size=8), init_std=0.1, inner_std=0.1, before=()), "before"),
    ],
)
def test_bad_input_raises_naming_the_argument(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()


def test_non_module_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="model"):
        to_rse("net", init_std=0.1, inner_std=0.1)  # type: ignore[arg-type]
