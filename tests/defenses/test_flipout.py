"""The Flipout sampler (Wen et al., ICLR 2018) of every Gaussian-weight linear and convolution layer (DESIGN.md §C2).

A Flipout call shares one noise tensor ``E`` between its rows, so laws are estimated across calls: each
call contributes rows 0 and 1 of a batch of copies of one input. Tolerances are 6 standard errors for
the number of calls ``n`` (a false failure ~1e-9 per check): a mean ``sd / sqrt(n)``, a Gaussian
variance ``var * sqrt(2 / (n - 1))``, a correlation of uncorrelated variables ``1 / sqrt(n)`` (for the
product of two uncorrelated Flipout entries, which are not independent, its standard error is estimated
from the products themselves); a difference of two independent estimates adds their squared errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from stochdef.defenses import (
    BayesConv2d,
    BayesLinear,
    RandomlyScaledWeights,
    RandomNoisyWeights,
    SDRLinear,
    flipout_conv2d,
    flipout_linear,
    random_signs,
    sampled_linear,
    use_sampler,
)

Z = 6.0
CALLS = 4000
KINDS = ["sdr", "bayes", "rnw", "rsw", "bayes-conv", "rnw-conv"]
Layer = tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _layer(kind: str, sampler: str | None = "flipout") -> Layer:
    """``(layer, x, weight_mean, weight_std, bias_mean, bias_std)``, weights flattened to ``(out, in)``.

    A convolution takes an input the size of its kernel (no padding), so its one output position is a
    linear map of the flattened input with the flattened kernel as weights.
    """
    g = torch.Generator().manual_seed(KINDS.index(kind))
    layer: nn.Module
    if kind == "sdr":
        sdr = SDRLinear(4, 3, sampler=sampler)
        with torch.no_grad():
            sdr.weight_std.copy_(torch.rand(3, 4, generator=g) * 0.8 + 0.2)
            sdr.bias_std.copy_(torch.rand(3, generator=g) * 0.5 + 0.1)  # type: ignore[union-attr]
        layer, m, s, bm, bs = sdr, sdr.weight_mean, sdr.weight_std, sdr.bias_mean, sdr.bias_std
    elif kind in ("bayes", "bayes-conv"):
        bayes: BayesLinear | BayesConv2d
        bayes = (
            BayesLinear(4, 3, prior_std=0.1, sampler=sampler)
            if kind == "bayes"
            else BayesConv2d(2, 3, 2, prior_std=0.1, sampler=sampler)
        )
        with torch.no_grad():
            for p in (bayes.weight_log_std, bayes.bias_log_std):
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 0.8 + 0.2))  # type: ignore[union-attr]
        layer, m, s = bayes, bayes.weight_mean, bayes.weight_log_std.exp()
        bm, bs = bayes.bias_mean, bayes.bias_log_std.exp()  # type: ignore[union-attr]
    else:
        base = nn.Linear(4, 3) if kind in ("rnw", "rsw") else nn.Conv2d(2, 3, 2)
        wrap = RandomlyScaledWeights if kind == "rsw" else RandomNoisyWeights
        noisy = wrap(base, std=0.6, sampler=sampler)
        layer, m, s = noisy, base.weight, noisy.weight_std()
        bm, bs = base.bias, torch.zeros(3)
    assert bm is not None and bs is not None
    x = torch.tensor([[0.5, -1.0, 2.0, 0.25]]) if m.dim() == 2 else torch.tensor([[0.5, -1.0, 2.0, 0.25]] * 2)
    x = x.view(1, *m.shape[1:])
    flat = (m.reshape(3, -1), s.reshape(3, -1))
    return layer.eval(), x, flat[0].detach(), flat[1].detach(), bm.detach(), bs.detach()


def _draws(layer: nn.Module, x: torch.Tensor, calls: int = CALLS, rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per call, the outputs ``(calls, rows, out)`` and the rows' Jacobians ``dy_b/dx_b`` ``(calls, rows, out, in)``."""
    ys, jacobians = [], []
    for _ in range(calls):
        xs = x.expand(rows, *x.shape[1:]).clone().requires_grad_(True)
        y = layer(xs).reshape(rows, -1)
        units = y.shape[1]
        one_hot = torch.eye(units).unsqueeze(1).expand(units, rows, units)
        (jac,) = torch.autograd.grad(y, xs, one_hot, is_grads_batched=True)  # (out, rows, *x)
        ys.append(y.detach())
        jacobians.append(jac.reshape(units, rows, -1).transpose(0, 1))
    return torch.stack(ys), torch.stack(jacobians)


def _uncorrelated(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |z| of ``E[a_i b_j] = 0`` over all pairs ``(i, j)``: ``a``, ``b`` standardized, ``(n, k)``."""
    products = a[:, :, None] * b[:, None, :]
    se = products.std(0) / math.sqrt(len(a))
    return float((products.mean(0) / se).abs().max())


Drawn = tuple[Layer, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module", params=KINDS)
def drawn(request: pytest.FixtureRequest) -> Drawn:
    """One kind's layer and its ``CALLS`` calls of two rows (shared by the two tests below)."""
    layer = _layer(request.param)
    torch.manual_seed(10)
    return (layer, *_draws(layer[0], layer[1]))


def test_one_row_has_the_per_weight_output_and_gradient_law(drawn: Drawn) -> None:
    """Row 0's output ``N(x M^T + m_b, x^2 (S^2)^T + s_b^2)`` with independent units, and its Jacobian
    ``dy/dx = W_b``: mean ``M``, variance ``S^2`` (``Var(dy/dx_k) = sigma_k^2``), entries uncorrelated."""
    (layer, x, m, s, bm, bs), ys, jac = drawn
    n, flat = len(ys), x.reshape(-1)
    mean, var = flat @ m.T + bm, (flat * flat) @ (s * s).T + bs * bs
    y = ys[:, 0]
    assert float(((y.mean(0) - mean) / (var / n).sqrt()).abs().max()) <= Z
    assert float(((y.var(0) - var) / (var * math.sqrt(2 / (n - 1)))).abs().max()) <= Z
    assert float(torch.corrcoef(y.T)[~torch.eye(3, dtype=torch.bool)].abs().max()) <= Z / math.sqrt(n)
    w = jac[:, 0].reshape(n, -1)
    sd = s.reshape(-1)
    z_mean = ((w.mean(0) - m.reshape(-1)) / (sd / math.sqrt(n))).abs().max()
    z_var = ((w.var(0) - sd**2) / (sd**2 * math.sqrt(2 / (n - 1)))).abs().max()
    assert float(z_mean) <= Z and float(z_var) <= Z, f"Jacobian law off: z_mean {z_mean:.1f}, z_var {z_var:.1f}"
    standard = (w - m.reshape(-1)) / sd
    within = torch.corrcoef(standard.T)[~torch.eye(w.shape[1], dtype=torch.bool)]
    assert float(within.abs().max()) <= Z / math.sqrt(n)


def test_rows_of_one_call_have_uncorrelated_weights_and_outputs(drawn: Drawn) -> None:
    """Every weight of row 0 is uncorrelated with every weight of row 1 (same call), and so are their outputs."""
    (layer, x, m, s, bm, bs), ys, jac = drawn
    n = len(ys)
    w0, w1 = ((jac[:, b].reshape(n, -1) - m.reshape(-1)) / s.reshape(-1) for b in (0, 1))
    z_weights = _uncorrelated(w0, w1)
    assert z_weights <= Z, f"rows' weights correlated: z {z_weights:.1f}"
    flat = x.reshape(-1)
    mean, sd = flat @ m.T + bm, ((flat * flat) @ (s * s).T + bs * bs).sqrt()
    z_outputs = _uncorrelated((ys[:, 0] - mean) / sd, (ys[:, 1] - mean) / sd)
    assert z_outputs <= Z, f"rows' outputs correlated: z {z_outputs:.1f}"


def _three_layer_net(sampler: str) -> nn.Module:
    torch.manual_seed(12)
    layers = [SDRLinear(4, 8, sampler=sampler), SDRLinear(8, 8, sampler=sampler), SDRLinear(8, 2, sampler=sampler)]
    with torch.no_grad():
        for layer in layers:
            layer.weight_mean.mul_(3.0)
            layer.weight_std.fill_(0.6)
            layer.bias_std.fill_(0.1)  # type: ignore[union-attr]
    return nn.Sequential(layers[0], nn.Tanh(), layers[1], nn.Tanh(), layers[2]).eval()


def _gradient_means(net: nn.Module, x: torch.Tensor, calls: int, rows: int) -> torch.Tensor:
    """Per call, the mean over its ``rows`` copies of ``x`` of the single-draw gradient of ``net(x).sum()``."""
    means = []
    for _ in range(calls):
        xs = x.expand(rows, -1).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(xs).sum(), xs)
        means.append(grad.mean(0))
    return torch.stack(means)


def test_expected_input_gradient_through_a_nonlinear_net_is_the_per_weight_one() -> None:
    """Three Flipout layers with tanh between: ``E[dL/dx]`` equals the per-weight sampler's.

    Each call's row mean is one unbiased estimate (rows of a call share ``|E|``, calls are independent),
    so its standard error comes from the spread of the call means.
    """
    x = torch.tensor([[0.3, -0.5, 1.0, 0.8]])
    torch.manual_seed(13)
    flip = _gradient_means(_three_layer_net("flipout"), x, calls=4000, rows=8)
    xs = x.expand(40_000, -1).clone().requires_grad_(True)
    (per_row,) = torch.autograd.grad(_three_layer_net("weights")(xs).sum(), xs)
    se = (flip.var(0) / len(flip) + per_row.var(0) / len(per_row)).sqrt()
    z = ((flip.mean(0) - per_row.mean(0)) / se).abs().max()
    assert float(z) <= Z, f"expected gradients differ: z {z:.1f}"


def test_std_gradient_follows_each_rows_weights() -> None:
    """``W_b = M + S * E * s_b r_b^T``: for ``L = sum y``, ``S * dL/dS = sum_b (W_b - M) x_b`` (per output unit)."""
    torch.manual_seed(17)
    mean, std = torch.randn(3, 5), (torch.rand(3, 5) + 0.1).requires_grad_(True)
    x = torch.randn(16, 5, requires_grad=True)
    y = flipout_linear(x, mean, std)
    units = y.shape[1]
    one_hot = torch.eye(units).unsqueeze(1).expand(units, len(x), units)
    (jac,) = torch.autograd.grad(y, x, one_hot, is_grads_batched=True, retain_graph=True)
    weights = jac.transpose(0, 1)  # (rows, out, in): row b's W_b
    torch.testing.assert_close(y.detach(), torch.einsum("boi,bi->bo", weights, x.detach()))
    (grad_std,) = torch.autograd.grad(y.sum(), std)
    torch.testing.assert_close(std.detach() * grad_std, ((weights - mean) * x.detach()[:, None, :]).sum(0))


def test_signs_are_fair_and_independent() -> None:
    torch.manual_seed(15)
    signs = random_signs((50_000, 3), like=torch.zeros(1, dtype=torch.float64))
    assert set(signs.unique().tolist()) == {-1.0, 1.0} and signs.dtype == torch.float64
    n = signs.numel()
    assert abs(float(signs.mean())) <= Z / math.sqrt(n)
    flat = signs.reshape(-1)
    for lag in (1, 7, 8, 9):  # within and across the 8 signs of one random byte
        assert abs(float((flat[lag:] * flat[:-lag]).mean())) <= Z / math.sqrt(n - lag)


def test_flipout_repeats_under_a_seed_and_its_own_generator() -> None:
    x, mean, std = torch.rand(5, 4), torch.zeros(3, 4), torch.ones(3, 4)
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # the global state must not matter
        outs.append(
            flipout_linear(x, mean, std, torch.zeros(3), torch.ones(3), generator=torch.Generator().manual_seed(5))
        )
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(3)
    first = sampled_linear(x, mean, std, sampler="flipout")
    torch.manual_seed(3)
    assert torch.equal(first, sampled_linear(x, mean, std))  # the default sampler of a linear layer


def test_positions_of_a_row_share_its_flipout_draw() -> None:
    out = flipout_linear(torch.ones(4, 5, 3), torch.zeros(2, 3), torch.ones(2, 3))
    assert torch.equal(out, out[:, :1].expand_as(out)) and not torch.equal(out[0].abs(), out[0].abs() * 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: flipout_linear(torch.ones(3), torch.zeros(2, 3), torch.ones(2, 3)),
        lambda: flipout_conv2d(torch.ones(2, 3, 3), torch.zeros(2, 2, 1, 1), torch.ones(2, 2, 1, 1)),
    ],
)
def test_bad_rank_is_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="x must"):
        call()


def test_context_selects_flipout_for_convolutions() -> None:
    """Under ``use_sampler("flipout")`` a zero-mean 1x1 kernel gives every row ``+-S E``: one ``|E|`` per call."""
    layer = BayesConv2d(1, 1, 1, prior_std=0.5, bias=False).eval()
    with torch.no_grad():
        layer.weight_mean.zero_()
    x = torch.ones(64, 1, 1, 1)
    with torch.no_grad():
        with use_sampler("flipout"):
            flip = layer(x)
        default = layer(x)  # a kernel per row
    assert flip.abs().unique().numel() == 1 and default.abs().unique().numel() == 64
