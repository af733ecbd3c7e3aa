"""SAP's baselines (Appendix B, Section 4.1.2): each one's defining statistic against a closed form.

Tolerances are 6 standard errors for the sample count (a mean: sd / sqrt(N); a variance: var *
sqrt(2 / N) for Gaussian draws; a proportion: sqrt(q (1 - q) / N)); every random check is seeded.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import is_random
from stochdef.defenses.sap import keep_probability, sample_count
from stochdef.defenses.sap_baselines import (
    InferenceDropout,
    RandomlyScaledActivations,
    RandomlyScaledWeights,
    RandomNoisyWeights,
    StochasticWeightPruning,
    apply_dropout,
    apply_dwp,
    apply_rna,
    apply_rnw,
    apply_rsa,
    apply_rsw,
    apply_swp,
    top_magnitude_mask,
)

N = 40_000


def _check_mean_var(draws: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Gaussian draws (rows) against their mean and variance, 6 standard errors each."""
    draws, mean, var = draws.double(), mean.double(), var.double()
    n = draws.shape[0]
    assert torch.all((draws.mean(0) - mean).abs() <= 6 * torch.sqrt(var / n) + 1e-6)
    assert torch.all((draws.var(0) - var).abs() <= 6 * var * math.sqrt(2 / n) + 1e-6)


@pytest.mark.parametrize("scaled", [False, True])
def test_rnw_rsw_linear_output_moments(scaled: bool) -> None:
    torch.manual_seed(0)
    layer, s = nn.Linear(5, 3), 0.3
    x = torch.rand(1, 5)
    kind = RandomlyScaledWeights if scaled else RandomNoisyWeights
    wrapped = kind(layer, std=s, sampler="weights")  # rows of one call independent (Flipout: test_sampling.py)
    with torch.no_grad():
        out = wrapped(x.expand(N, 5))
    weight_var = (s * layer.weight) ** 2 if scaled else torch.full_like(layer.weight, s * s)
    _check_mean_var(out, layer(x)[0].detach(), (x**2 @ weight_var.T)[0].detach())


@pytest.mark.parametrize("scaled", [False, True])
def test_rnw_rsw_conv_output_moments_and_shared_kernel(scaled: bool) -> None:
    torch.manual_seed(1)
    layer, s = nn.Conv2d(2, 1, 3, padding=1), 0.2
    x = torch.rand(1, 2, 4, 4)
    wrapped = RandomlyScaledWeights(layer, std=s) if scaled else RandomNoisyWeights(layer, std=s)
    with torch.no_grad():
        out = wrapped(x.expand(N // 4, -1, -1, -1))
        ref = layer(x)[0]
    patches = F.unfold(x, 3, padding=1)[0]  # (2*9, 16): the input under each output position
    weight_var = (s * layer.weight.detach().flatten()) ** 2 if scaled else torch.full((18,), s * s)
    _check_mean_var(out.flatten(1), ref.flatten(), weight_var @ patches**2)
    # One kernel per example: two positions with the same patch get the same noise.
    twin = torch.zeros(1, 2, 4, 4)
    twin[..., 1, 1] = twin[..., 1, 3] = 1.0  # the patches at (0,1) and (0,3) are equal
    with torch.no_grad():
        y = wrapped(twin.expand(8, -1, -1, -1))
    assert torch.allclose(y[:, 0, 0, 1], y[:, 0, 0, 3]) and not torch.allclose(y[0], y[1])


def test_swp_keep_rates_and_unbiased_output() -> None:
    torch.manual_seed(2)
    layer = nn.Linear(4, 3)
    swp = StochasticWeightPruning(layer, fraction=0.5)
    masks = swp.masks(N)
    w = layer.weight.detach().abs().flatten()
    q = keep_probability(w / w.sum(), sample_count(0.5, 12)).double()
    rate = (masks.flatten(1) > 0).double().mean(0)
    assert torch.all((rate - q).abs() <= 6 * torch.sqrt(q * (1 - q) / N))
    kept = masks.flatten(1)[:, 0] > 0  # survivors are scaled by 1 / keep-probability
    assert torch.allclose(masks.flatten(1)[kept, 0], 1 / q[0].float().expand(int(kept.sum())))
    x = torch.rand(1, 4)
    with torch.no_grad():
        out = swp(x.expand(N, 4))
    ref = layer(x)[0].detach()
    assert torch.all((out.mean(0) - ref).abs() <= 6 * out.std(0) / math.sqrt(N))  # E[M(W)] = W


def test_swp_conv_matches_a_convolution_with_its_own_mask() -> None:
    torch.manual_seed(3)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    swp = StochasticWeightPruning(layer, fraction=1.0, generator=torch.Generator().manual_seed(5))
    x = torch.rand(4, 2, 7, 7)
    out = swp(x)
    masks = StochasticWeightPruning(layer, fraction=1.0, generator=torch.Generator().manual_seed(5)).masks(4)
    for b in range(4):  # brute force: one plain convolution per example
        ref = F.conv2d(x[b : b + 1], layer.weight * masks[b], layer.bias, stride=2, padding=1)
        assert torch.allclose(out[b : b + 1], ref, rtol=1e-5, atol=1e-6)


def test_dwp_keeps_exactly_the_top_share_by_magnitude() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    conv = nn.Conv2d(2, 3, 3)
    pruned, pruned_conv = apply_dwp(net, keep=0.3), apply_dwp(conv, keep=0.3)
    for dense, sparse in [(net[0], pruned[0]), (net[2], pruned[2]), (conv, pruned_conv)]:
        w, kept = dense.weight.detach().flatten(), sparse.weight.detach().flatten() != 0
        assert int(kept.sum()) == round(0.3 * w.numel())
        assert w.abs()[kept].min() >= w.abs()[~kept].max()  # brute force: a threshold splits them
        assert torch.equal(sparse.weight.flatten()[kept], w[kept])
        assert torch.equal(sparse.bias, dense.bias)
    assert torch.equal(
        top_magnitude_mask(torch.tensor([[1.0, -5.0], [0.2, 3.0]]), keep=0.5), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    )
    x = torch.rand(3, 10)
    assert torch.equal(pruned(x), pruned(x)) and not is_random(pruned, x)  # deterministic


def test_rna_rsa_moments() -> None:
    torch.manual_seed(5)
    h = torch.linspace(-1.0, 2.0, 6)
    rna = apply_rna(nn.ReLU(), std=0.4).eval()
    with torch.no_grad():
        out = rna(h.expand(N, 6))
    _check_mean_var(out, h.relu(), torch.full((6,), 0.16))
    rsa = RandomlyScaledActivations(std=0.5).eval()
    with torch.no_grad():
        out = rsa(h.expand(N, 6))
    _check_mean_var(out, h, (0.5 * h) ** 2)


def test_dropout_rate_and_scale_at_inference() -> None:
    torch.manual_seed(6)
    rate = 0.3
    drop = InferenceDropout(rate=rate).eval()
    h = torch.rand(1, 50) + 0.5
    out = drop(h.expand(N // 10, 50))
    zero = (out == 0).double().mean().item()
    assert abs(zero - rate) <= 6 * math.sqrt(rate * (1 - rate) / out.numel())
    assert torch.allclose(out[out != 0], (h.expand_as(out) / (1 - rate))[out != 0])
    assert torch.equal(InferenceDropout(rate=rate, stochastic=False)(h), h)
    net = apply_dropout(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), rate=0.5)
    assert is_random(net.train(), torch.rand(8, 4)) and is_random(net.eval(), torch.rand(8, 4))


# ---- every baseline: random in eval, reproducible, and usable through the three libraries --------

BASELINES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "rnw": lambda m: apply_rnw(m, std=0.05),
    "rsw": lambda m: apply_rsw(m, std=0.2),
    "swp": lambda m: apply_swp(m, fraction=1.0),
    "rna": lambda m: apply_rna(m, std=0.2),
    "rsa": lambda m: apply_rsa(m, std=0.2),
    "dropout": lambda m: apply_dropout(m, rate=0.2),
}


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_are_random_in_eval_per_row_and_reproducible(plain_digits_mlp: nn.Module, name: str) -> None:
    model = BASELINES[name](plain_digits_mlp).eval()
    x = torch.rand(1, 1, 8, 8).expand(6, -1, -1, -1)
    assert is_random(model, x)
    torch.manual_seed(7)
    out = model(x)
    torch.manual_seed(7)
    assert torch.equal(model(x), out)
    assert not torch.equal(out[0], out[1])  # rows are independent draws


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_run_on_each_device(device: str, name: str) -> None:
    torch.manual_seed(9)
    dense = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)).to(device)
    model = BASELINES[name](dense).eval()
    x = torch.rand(1, 1, 8, 8, device=device).expand(8, -1, -1, -1)
    out = model(x)
    assert out.device.type == torch.device(device).type and torch.isfinite(out).all() and is_random(model, x)


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_through_each_library(
    plain_digits_mlp: nn.Module, digits, name: str, library: str, library_fgsm
) -> None:
    torch.manual_seed(8)
    model = BASELINES[name](plain_digits_mlp).eval()
    x, y, eps = digits.x_test[:8], digits.y_test[:8], 0.1
    adv = library_fgsm(model, x, y, library=library, eps=eps, samples=4)
    assert (adv - x).abs().max() >= eps - 1e-6  # it moved
    assert is_random(model, x[:4]) and not model.training


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: apply_rnw(nn.Linear(2, 2), std=-0.1), ValueError, "std"),
        (lambda: apply_rsw(nn.Linear(2, 2), std=float("nan")), ValueError, "std"),
        (lambda: apply_rna(nn.ReLU(), std=-1.0), ValueError, "std"),
        (lambda: apply_rsa(nn.ReLU(), std=-1.0), ValueError, "std"),
        (lambda: apply_dropout(nn.ReLU(), rate=1.0), ValueError, "rate"),
        (lambda: apply_dropout(nn.ReLU(), rate=-0.1), ValueError, "rate"),
        (lambda: InferenceDropout(rate=0.1, stochastic=1), TypeError, "stochastic"),  # type: ignore[arg-type]
        (lambda: apply_dwp(nn.Linear(2, 2), keep=0.0), ValueError, "keep"),
        (lambda: apply_dwp(nn.Linear(2, 2), keep=1.5), ValueError, "keep"),
        (lambda: apply_swp(nn.Linear(2, 2), fraction=0.0), ValueError, "fraction"),
        (lambda: StochasticWeightPruning(nn.Linear(2, 2), fraction=1.0, method="x"), ValueError, "method"),  # type: ignore[arg-type]
        (lambda: RandomNoisyWeights(nn.ReLU(), std=0.1), TypeError, "layer"),
        (lambda: RandomNoisyWeights(nn.Conv2d(1, 1, 3, padding_mode="reflect"), std=0.1), ValueError, "padding_mode"),
        (lambda: RandomNoisyWeights(nn.Linear(2, 2), std=0.1)(torch.rand(3, 4, 2)), ValueError, "x must"),
        (lambda: apply_rnw(nn.Sequential(nn.ReLU()), std=0.1), ValueError, "model has no"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, exc: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=match):
        call()
