"""The samplers of Gaussian-weight linear layers (``stochdef.defenses.sampling``, DESIGN.md §C2): the per-weight
and local samplers and the context; Flipout's laws, which need draws across calls, are in ``test_flipout.py``.

Statistical checks use 6 standard errors of the estimate (a false failure ~1e-9 per check): a mean
``sd / sqrt(n)``, a variance ``sigma^2 sqrt(2 / (n - 1))``, a correlation ``1 / sqrt(n)``; a difference
of two independent estimates adds their squared standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from stochdef.adapters import EoT, eot_value_and_grad, expectation
from stochdef.defenses import (
    BayesLinear,
    RandomNoisyWeights,
    SDRLinear,
    current_sampler,
    fast_sampling,
    sampled_linear,
    use_sampler,
    weight_sampled_linear,
)

N = 20_000
Z = 6.0


def _sdr(out: int = 3, inp: int = 4, *, sampler: str | None = None, zero_mean: bool = False) -> SDRLinear:
    torch.manual_seed(1)
    layer = SDRLinear(inp, out, sampler=sampler)
    with torch.no_grad():
        layer.weight_std.copy_(torch.rand(out, inp) * 0.8 + 0.2)
        assert layer.bias_std is not None and layer.bias_mean is not None
        layer.bias_std.copy_(torch.rand(out) * 0.5 + 0.1)
        if zero_mean:
            layer.weight_mean.zero_()
            layer.bias_mean.zero_()
    return layer.eval()


def _bayes(out: int, inp: int, sampler: str | None = None) -> BayesLinear:
    torch.manual_seed(2)
    layer = BayesLinear(inp, out, prior_std=0.1, sampler=sampler)
    with torch.no_grad():
        layer.weight_log_std.copy_(torch.log(torch.rand(out, inp) * 0.8 + 0.2))
    return layer


def _draws(layer: nn.Module, x: torch.Tensor, n: int = N) -> torch.Tensor:
    """``n`` draws of ``layer(x)`` for one input row ``x``: ``(n, out)``."""
    with torch.no_grad():
        return layer(x.expand(n, -1))


@pytest.mark.parametrize("sampler", ["weights", "local"])
def test_output_law_is_the_exact_gaussian(sampler: str) -> None:
    """The samplers with independent rows: mean ``x M^T + b``, variance ``x^2 (S^2)^T + s_b^2``, independent units."""
    layer = _sdr(sampler=sampler)
    x = torch.tensor([[0.5, -1.0, 2.0, 0.25]])
    torch.manual_seed(0)
    out = _draws(layer, x)
    assert layer.bias_std is not None
    mean = (x @ layer.weight_mean.T + layer.bias_mean).detach()[0]
    var = ((x * x) @ (layer.weight_std**2).T + layer.bias_std**2).detach()[0]
    assert torch.all((out.mean(0) - mean).abs() <= Z * (var / N).sqrt())
    assert torch.all((out.var(0) - var).abs() <= Z * var * math.sqrt(2 / (N - 1)))
    corr = torch.corrcoef(out.T)
    off = corr[~torch.eye(3, dtype=torch.bool)]
    assert off.abs().max() <= Z / math.sqrt(N)


def test_two_samplers_agree_on_the_output_moments() -> None:
    """Two-sample check: the per-weight and local draws of the same layer have the same mean and variance."""
    x = torch.tensor([[1.0, 0.2, -0.7, 1.5]])
    torch.manual_seed(3)
    a, b = _draws(_sdr(sampler="weights"), x), _draws(_sdr(sampler="local"), x)
    se_mean = (a.var(0) / N + b.var(0) / N).sqrt()
    assert torch.all((a.mean(0) - b.mean(0)).abs() <= Z * se_mean)
    se_var = math.sqrt(2 / (N - 1)) * (a.var(0) ** 2 + b.var(0) ** 2).sqrt()
    assert torch.all((a.var(0) - b.var(0)).abs() <= Z * se_var)


def _input_gradients(net: nn.Module, x: torch.Tensor, n: int = N) -> torch.Tensor:
    """``n`` single-draw gradients of ``net(x).sum()`` with respect to ``x`` (one row each)."""
    xs = x.expand(n, -1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xs).sum(), xs)
    return grad


def _softplus_net(sampler: str) -> nn.Module:
    """4-8-8-2, softplus between: means x3 and sigma 0.6, so a unit's pre-activation noise moves its slope."""
    torch.manual_seed(4)
    layers = [SDRLinear(4, 8, sampler=sampler), SDRLinear(8, 8, sampler=sampler), SDRLinear(8, 2, sampler=sampler)]
    with torch.no_grad():
        for layer in layers:
            layer.weight_mean.mul_(3.0)
            layer.weight_std.fill_(0.6)
            layer.bias_std.fill_(0.1)  # type: ignore[union-attr]
    return nn.Sequential(layers[0], nn.Softplus(), layers[1], nn.Softplus(), layers[2]).eval()


def test_same_expected_input_gradient_through_a_nonlinear_net() -> None:
    """E[dL/dx] of the local trick equals the per-weight one through a 3-layer net (6 standard errors).

    The local trick's gradient flows through the noise's scale ``sqrt(x^2 S^2)``; without that term its
    expected gradient is off by 14.5 standard errors here (measured; the former 2-layer tanh check gave 1.66).
    """
    x = torch.tensor([[0.3, -0.5, 1.0, 0.8]])
    torch.manual_seed(5)
    a = _input_gradients(_softplus_net("weights"), x)
    b = _input_gradients(_softplus_net("local"), x)
    se = (a.var(0) / N + b.var(0) / N).sqrt()
    z = ((a.mean(0) - b.mean(0)) / se).abs().max()
    assert float(z) <= Z, f"expected gradients differ: z {z:.1f}"
    assert bool((b.var(0) < a.var(0)).all())  # the local trick's single-draw gradient is the less noisy one


@pytest.mark.parametrize("kind", ["sdr", "bayes", "rnw"])
def test_default_draw_has_the_per_weight_gradient_variance(kind: str) -> None:
    """One default (Flipout) draw of ``y = w . x`` with zero means: ``dy/dx_k = w_k``, so ``Var = sigma_k^2``."""
    torch.manual_seed(6)
    sigma = torch.tensor([0.3, 0.7, 1.2, 0.5])
    layer: nn.Module
    if kind == "sdr":
        sdr = _sdr(1, 4, zero_mean=True)
        with torch.no_grad():
            sdr.weight_std.copy_(sigma[None])
        layer, bias_var = sdr, float(sdr.bias_std**2)  # type: ignore[operator]
    elif kind == "bayes":
        bayes = _bayes(1, 4)
        with torch.no_grad():
            bayes.weight_mean.zero_()
            bayes.weight_log_std.copy_(sigma.log()[None])
        layer, bias_var = bayes, float(torch.exp(2 * bayes.bias_log_std))  # type: ignore[arg-type]
    else:
        base = nn.Linear(4, 1)
        with torch.no_grad():
            base.weight.zero_()
        layer, bias_var = RandomNoisyWeights(base, std=0.7), 0.0
        sigma = torch.full((4,), 0.7)
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    grads = torch.cat([_input_gradients(layer, x, 2) for _ in range(N // 8)])  # Flipout: one row per call...
    grads = grads[0::2]  # ...and one row of each call: the calls are independent
    n = len(grads)
    assert torch.all(grads.mean(0).abs() <= Z * sigma / math.sqrt(n))
    assert torch.all((grads.var(0) - sigma**2).abs() <= Z * sigma**2 * math.sqrt(2 / (n - 1)))
    with fast_sampling():  # the fast path: E[w | y], gradient sigma_k^2 x_k eps / sqrt(V), far less noisy
        local = _input_gradients(layer, x)
    total = float((sigma**2 * x[0] ** 2).sum()) + bias_var
    local_var = sigma**4 * x[0] ** 2 / total
    assert torch.all((local.var(0) - local_var).abs() <= Z * local_var * math.sqrt(2 / (N - 1)))


def test_chunked_draws_recompute_the_same_weights_in_backward() -> None:
    """With chunks (and checkpointing) the backward pass sees exactly the weights the forward drew."""
    torch.manual_seed(7)
    mean, std = torch.randn(1, 5), (torch.rand(1, 5) + 0.1).requires_grad_(True)
    x = torch.randn(64, 5, requires_grad=True)
    y = weight_sampled_linear(x, mean, std, max_elements=20)  # 4 rows per chunk, 16 chunks
    grad_x, grad_std = torch.autograd.grad(y.sum(), (x, std))
    weights = grad_x  # dy_b/dx_b = w_b
    torch.testing.assert_close(y[:, 0], (weights * x).sum(1).detach())
    # dy_b/dstd = eps_b * x_b and w_b = mean + std * eps_b: summed over rows, std * grad_std = sum_b (w_b - mean) x_b
    torch.testing.assert_close((std * grad_std).detach()[0], ((weights - mean) * x).sum(0).detach())


@pytest.mark.parametrize("max_elements", [10, 1 << 22])
def test_rows_are_independent_and_repeat_under_a_seed(max_elements: int) -> None:
    mean, std = torch.zeros(2, 3), torch.ones(2, 3)
    x = torch.ones(N // 4, 3)
    torch.manual_seed(8)
    out = weight_sampled_linear(x, mean, std, max_elements=max_elements)
    torch.manual_seed(8)
    again = weight_sampled_linear(x, mean, std, max_elements=max_elements)
    assert torch.equal(out, again)
    lag = torch.corrcoef(torch.stack([out[:-1, 0], out[1:, 0]]))[0, 1]
    assert abs(float(lag)) <= Z / math.sqrt(len(x) - 1)
    assert abs(float(out[:, 0].var()) - 3.0) <= Z * 3.0 * math.sqrt(2 / (len(x) - 1))


def test_own_generator_is_the_only_source() -> None:
    x = torch.ones(8, 3)
    draws = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(9)
        torch.manual_seed(len(draws))  # a different global state each time
        draws.append(sampled_linear(x, torch.zeros(2, 3), torch.ones(2, 3), generator=gen))
    assert torch.equal(draws[0], draws[1])


def test_positions_of_a_row_share_its_draw() -> None:
    """With extra dimensions a row's positions share a weight draw (under either sampler)."""
    x = torch.ones(4, 5, 3)
    with use_sampler("local"):
        out = sampled_linear(x, torch.zeros(2, 3), torch.ones(2, 3))
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert not torch.equal(out[0], out[1])


class _Probe(nn.Module):
    """Records the context's sampler at each call."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.seen: list[str | None] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(current_sampler())
        return self.fc(x)


@pytest.mark.parametrize(
    ("estimate", "samples", "expected"),
    [
        (lambda m, x, y, s: EoT(m, samples=s)(x), 1, None),
        (lambda m, x, y, s: EoT(m, samples=s)(x), 4, "local"),
        (lambda m, x, y, s: EoT(m, samples=s, reduce="probs")(x), 4, "local"),
        (lambda m, x, y, s: expectation(m, x, samples=s, max_batch=2), 1, None),
        (lambda m, x, y, s: eot_value_and_grad(m, x, y, samples=s), 1, None),
        (lambda m, x, y, s: eot_value_and_grad(m, x, y, samples=s), 8, "local"),
    ],
)
def test_eot_engine_takes_the_fast_path_only_to_average(
    estimate: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], object], samples: int, expected: str | None
) -> None:
    """``None``: no context, each layer its default single-draw sampler."""
    probe = _Probe()
    x, y = torch.rand(5, 3), torch.zeros(5, dtype=torch.long)
    estimate(probe, x, y, samples)
    assert probe.seen and set(probe.seen) == {expected}
    assert current_sampler() is None  # restored afterwards
    assert probe(x).shape == (5, 2) and probe.seen[-1] is None


def test_layer_setting_overrides_the_context() -> None:
    layer = _sdr(1, 4, sampler="weights", zero_mean=True)
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    with fast_sampling():
        grads = _input_gradients(layer, x, 2000)
    assert torch.all(
        (grads.var(0) - layer.weight_std[0] ** 2).abs() <= Z * layer.weight_std[0] ** 2 * math.sqrt(2 / 1999)
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: SDRLinear(3, 2, sampler="exact"),
        lambda: BayesLinear(3, 2, prior_std=0.1, sampler="exact"),
        lambda: RandomNoisyWeights(nn.Linear(3, 2), std=0.1, sampler="exact"),
        lambda: sampled_linear(torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3), sampler="exact"),
        lambda: use_sampler("exact").__enter__(),
    ],
)
def test_unknown_sampler_is_refused_by_name(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="sampler"):
        call()


def test_bad_max_elements_and_rank() -> None:
    with pytest.raises(ValueError, match="max_elements"):
        weight_sampled_linear(torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3), max_elements=0)
    with pytest.raises(ValueError, match="batch dimension"):
        weight_sampled_linear(torch.ones(3), torch.zeros(2, 3), torch.ones(2, 3))
