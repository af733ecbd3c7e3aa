"""Adv-BNN's Bayes layers: per-row independent draws with the analytic moments, the KL of eq. 6, the
conversion, adversarial training with a fresh draw per PGD step, the adapters, reproducibility, bad input.

Statistical tolerances: with n independent draws, a sample mean has standard error sigma / sqrt(n), a
sample variance (Gaussian data) sigma^2 * sqrt(2 / (n - 1)), a sample covariance of a bivariate Gaussian
sqrt((sigma_p^2 sigma_q^2 + c^2) / n), and a sample correlation of independent variables 1 / sqrt(n).
Every bound below is 6 of those standard errors (a false failure has probability ~1e-9 per check).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn
from torch.distributions import Normal, kl_divergence

from stochdef.adapters import EoT, is_random, to_torchattacks
from stochdef.defenses import fit, pgd_adversary, small_cnn, zoo
from stochdef.defenses.bayes import (
    BayesBatchNorm2d,
    BayesConv2d,
    BayesLinear,
    BayesModule,
    bayes_loss,
    gaussian_kl,
    kl,
    mean_weights,
    to_bayesian,
)
from stochdef.defenses.functional import gaussian_linear
from stochdef.evaluations.libraries import FGSM, run

N = 20_000  # draws per statistical check
Z = 6.0


def _randomize(layer: nn.Module, seed: int = 1) -> nn.Module:
    """Give every mean a random value and every log-std a random value in log([0.05, 0.3])."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("log_std"):
                p.copy_(torch.log(0.05 + 0.25 * torch.rand(p.shape, generator=g)))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return layer


def _std(p: torch.Tensor) -> torch.Tensor:
    return torch.exp(p.detach())


def _within_var(sample: torch.Tensor, var: torch.Tensor, n: int) -> bool:
    return bool(((sample - var).abs() <= Z * var * math.sqrt(2.0 / (n - 1))).all())


# ---- (a) replicated rows are independent draws with the analytic moments --------------------------------


def test_linear_rows_are_independent_draws(device: str) -> None:
    """The strict-independence sampler (Flipout's rows, uncorrelated only, are checked in test_sampling.py)."""
    layer = _randomize(BayesLinear(5, 3, prior_std=0.1, sampler="weights")).to(device).eval()
    x = torch.rand(5, device=device) + 0.5
    torch.manual_seed(0)
    with torch.no_grad():
        out = layer(x.expand(N, 5).contiguous())
    mean = F.linear(x, layer.weight_mean, layer.bias_mean).detach()
    var = (x * x) @ (_std(layer.weight_log_std) ** 2).T + _std(layer.bias_log_std) ** 2
    assert ((out.mean(0) - mean).abs() <= Z * var.sqrt() / math.sqrt(N)).all()
    assert _within_var(out.var(0), var, N)
    z = (out - mean) / var.sqrt()
    r = (z[0::2, 0] * z[1::2, 0]).mean()  # rows 2k and 2k+1: the same input, different draws
    assert abs(float(r)) <= Z / math.sqrt(N // 2)


@pytest.mark.parametrize("bias", [True, False])
def test_log_std_linear_is_gaussian_linear_in_log_std_form(bias: bool) -> None:
    layer = _randomize(BayesLinear(6, 4, bias=bias, prior_std=0.1, sampler="local"))
    x = torch.rand(5, 6)
    b, sb = (layer.bias_mean, torch.exp(layer.bias_log_std)) if bias else (None, None)
    torch.manual_seed(3)
    ours = layer(x)
    torch.manual_seed(3)  # the same normals
    ref = gaussian_linear(x, layer.weight_mean, torch.exp(layer.weight_log_std), b, sb)
    torch.testing.assert_close(ours, ref)


def test_linear_on_sequences_shares_one_weight_draw_per_row() -> None:
    """(B, T, in) inputs: positions of one row share its weights, so they covary as sum x_t x_u sigma^2."""
    layer = _randomize(BayesLinear(4, 2, prior_std=0.1, sampler="weights")).eval()
    x = torch.rand(2, 4) + 0.5
    torch.manual_seed(0)
    with torch.no_grad():
        out = layer(x.expand(N, 2, 4).contiguous())[:, :, 0]  # (N, T) for unit 0
    w2, b2 = _std(layer.weight_log_std[0]) ** 2, _std(layer.bias_log_std[0]) ** 2
    var = (x * x) @ w2 + b2
    cov = (x[0] * x[1] * w2).sum() + b2
    assert _within_var(out.var(0), var, N)
    sample_cov = torch.cov(out.T)[0, 1]
    assert abs(float(sample_cov - cov)) <= Z * math.sqrt(float(var[0] * var[1] + cov**2) / N)


def test_conv_positions_covary_and_rows_do_not(device: str) -> None:
    layer = _randomize(BayesConv2d(2, 2, 3, padding=1, prior_std=0.1)).to(device).eval()
    x = torch.rand(2, 5, 5, device=device) + 0.5
    torch.manual_seed(0)
    with torch.no_grad():
        out = layer(x.expand(N, 2, 5, 5).contiguous())  # (N, 2, 5, 5)
        mean = F.conv2d(x[None], layer.weight_mean, layer.bias_mean, padding=1)[0]
    w2, b2 = _std(layer.weight_log_std) ** 2, _std(layer.bias_log_std) ** 2
    var = F.conv2d((x * x)[None], w2, padding=1)[0] + b2[:, None, None]
    assert ((out.mean(0) - mean).abs() <= Z * var.sqrt() / math.sqrt(N)).all()
    assert _within_var(out.var(0), var, N)
    # Two positions of channel 0 share the example's kernel: Cov = sum_k patch_p[k] patch_q[k] sigma_k^2 + sigma_b^2.
    patches = F.unfold(x[None], 3, padding=1)[0]  # (C*9, 25)
    p, q = 1 * 5 + 1, 2 * 5 + 3
    cov = (patches[:, p] * patches[:, q] * w2[0].reshape(-1)).sum() + b2[0]
    flat = out[:, 0].reshape(N, 25)
    var_p, var_q = float(var[0].reshape(-1)[p]), float(var[0].reshape(-1)[q])
    sd = math.sqrt((var_p * var_q + float(cov) ** 2) / N)
    assert float(cov) > 10 * Z * sd  # clearly non-zero: local reparameterization would make it 0
    assert abs(float(torch.cov(flat[:, [p, q]].T)[0, 1] - cov)) <= Z * sd
    # Rows 2k and 2k+1 (the same input, different kernels) are uncorrelated at a position.
    centred = flat[:, p] - mean[0].reshape(-1)[p]
    row_cov = (centred[0::2] * centred[1::2]).mean()
    assert abs(float(row_cov)) <= Z * var_p / math.sqrt(N // 2)


def test_batchnorm_affine_is_drawn_per_row() -> None:
    bn = _randomize(BayesBatchNorm2d(2, prior_std=0.1)).eval()
    bn.running_mean.copy_(torch.tensor([0.3, -0.2]))
    bn.running_var.copy_(torch.tensor([2.0, 0.5]))
    x = torch.rand(2, 2, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        out = bn(x.expand(N, 2, 2, 2).contiguous())[:, 0].reshape(N, 4)
    x_hat = ((x[0] - 0.3) / math.sqrt(2.0 + bn.eps)).reshape(4)
    g2, b2 = float(_std(bn.weight_log_std[0]) ** 2), float(_std(bn.bias_log_std[0]) ** 2)
    var = x_hat**2 * g2 + b2
    assert _within_var(out.var(0), var, N)
    cov = float(x_hat[0] * x_hat[3] * g2 + b2)  # one scale and shift per row and channel
    sd = math.sqrt((float(var[0] * var[3]) + cov**2) / N)
    assert abs(float(torch.cov(out[:, [0, 3]].T)[0, 1]) - cov) <= Z * sd


# ---- (b) the KL of eq. 6 is torch.distributions' KL, summed ------------------------------------------------


def test_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    prior = 0.07
    bnn = to_bayesian(small_cnn(image_size=8, width=4), prior_std=prior)
    for layer in bnn.modules():
        _randomize(layer, seed=3) if isinstance(layer, (BayesLinear, BayesConv2d, BayesBatchNorm2d)) else None
    ref = torch.zeros((), dtype=torch.float64)
    for name, p in bnn.named_parameters():
        if name.endswith("_mean"):
            s = dict(bnn.named_parameters())[name.replace("_mean", "_log_std")]
            q = Normal(p.detach().double(), torch.exp(s.detach().double()))
            ref += kl_divergence(q, Normal(torch.zeros_like(q.loc), prior)).sum()
    torch.testing.assert_close(kl(bnn).double(), ref, rtol=1e-5, atol=0)
    m, s = torch.randn(50), torch.randn(50)
    torch.testing.assert_close(
        gaussian_kl(m, s, prior_std=0.3), kl_divergence(Normal(m, s.exp()), Normal(torch.zeros(50), 0.3))
    )


def test_bayes_loss_is_cross_entropy_plus_scaled_kl() -> None:
    bnn = to_bayesian(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), prior_std=0.05)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    torch.manual_seed(4)
    value = bayes_loss(alpha=0.5, train_size=200)(bnn, x, y)
    torch.manual_seed(4)  # the same draw
    expected = F.cross_entropy(bnn(x), y) + 0.5 / 200 * sum(layer.kl() for layer in bnn if hasattr(layer, "kl"))
    torch.testing.assert_close(value, expected)


# ---- (c) conversion keeps the mean-weight function ----------------------------------------------------------


def test_to_bayesian_mean_weights_reproduce_the_original() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, groups=2),
        nn.BatchNorm2d(4, affine=False),
        nn.Flatten(),
        nn.Linear(36, 10),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    bnn = to_bayesian(net, prior_std=0.05).eval()
    assert [type(m).__name__ for m in net] == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "BatchNorm2d",
        "Flatten",
        "Linear",
    ]
    assert [type(m).__name__ for m in bnn if "Bayes" in type(m).__name__] == [
        "BayesConv2d", "BayesBatchNorm2d", "BayesConv2d", "BayesLinear"
    ]  # fmt: skip
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad(), mean_weights(bnn):
        assert torch.equal(bnn(x), net(x))
    assert is_random(bnn, x)  # the switch is restored on exit


# ---- (d) Algorithm 1: the PGD adversary draws new weights at every step ---------------------------------


def test_adversarial_training_draws_fresh_weights_at_every_pgd_step() -> None:
    torch.manual_seed(0)
    bnn = to_bayesian(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), prior_std=0.1)
    layer = bnn[1]
    calls: list[torch.Tensor] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
        (x,) = inputs
        with torch.no_grad():
            mean = F.linear(x, module.weight_mean, module.bias_mean)
            var = F.linear(x * x, _std(module.weight_log_std) ** 2) + _std(module.bias_log_std) ** 2
            calls.append(((out - mean) / var.sqrt()).flatten())  # this call's standardized noise

    layer.register_forward_hook(record)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    steps = 4
    fit(bnn, x, y, epochs=1, batch_size=32, loss=bayes_loss(train_size=32),
        adversary=pgd_adversary(eps=0.1, step=0.03, steps=steps), progress=False)  # fmt: skip
    assert len(calls) == steps + 1  # the PGD steps, then the update
    for i in range(len(calls)):
        for j in range(i):  # independent draws: standardized noises uncorrelated across calls
            r = float((calls[i] * calls[j]).mean())
            assert abs(r) <= Z / math.sqrt(calls[i].numel()), (i, j, r)


# ---- (e) random in eval mode, through the three libraries; an EoT attack works ----------------------------


@pytest.fixture(scope="module")
def trained_bnn(digits) -> nn.Module:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    bnn = to_bayesian(small_cnn(image_size=8, width=4), prior_std=0.05)
    fit(bnn, digits.x_train, digits.y_train, epochs=12, batch_size=64, lr=3e-3, progress=False,
        loss=bayes_loss(alpha=0.02, train_size=len(digits.x_train)))  # fmt: skip
    return bnn.eval()


def _fgsm(library: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    return run(library, FGSM(eps=eps, samples=8), model, x, y, num_classes=10)


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_fgsm_through_each_library(trained_bnn: nn.Module, digits, library: str) -> None:
    x, y = digits.x_test[:16], digits.y_test[:16]
    x_adv = _fgsm(library, trained_bnn, x, y, eps=0.1)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert (x_adv >= 0).all() and (x_adv <= 1).all()
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(x_adv, x)
    assert not trained_bnn.training and is_random(trained_bnn, x)


def test_eot_pgd_lowers_ensemble_accuracy(trained_bnn: nn.Module, digits) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    ensemble = EoT(trained_bnn, samples=16, reduce="probs")
    torch.manual_seed(0)
    with torch.no_grad():
        clean = float((ensemble(x).argmax(1) == y).float().mean())
    x_adv = torchattacks.PGD(to_torchattacks(trained_bnn, samples=16), eps=0.2, alpha=0.04, steps=10)(x, y)
    with torch.no_grad():
        attacked = float((ensemble(x_adv).argmax(1) == y).float().mean())
    assert clean >= 0.8, clean
    assert attacked <= clean - 0.4, (clean, attacked)


@pytest.mark.parametrize("name", ["adv-bnn", "madry"])  # bnn: the same trainer without the adversary
def test_zoo_specs_train_quickly_and_stay_random_if_bayesian(digits, name: str) -> None:
    spec = zoo.get(name)
    torch.manual_seed(0)
    model = spec.build((1, 8, 8), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = spec.train(model, digits, zoo.TrainSettings(quick=True, progress=False))
    assert all(math.isfinite(v) for v in history.loss) and 0.0 <= history.final_accuracy <= 1.0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert is_random(model, digits.x_test[:4]) == (name != "madry")
    if name != "madry":
        assert all(m.prior_std == 0.05 for m in model.modules() if isinstance(m, BayesModule))


# ---- (f) reproducible under torch.manual_seed --------------------------------------------------------------


def test_reproducible_under_manual_seed() -> None:
    def run() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(5)
        bnn = to_bayesian(small_cnn(image_size=8, width=2), prior_std=0.05)
        x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
        fit(bnn, x, y, epochs=1, batch_size=8, loss=bayes_loss(train_size=16), seed=3,
            adversary=pgd_adversary(eps=0.1, step=0.05, steps=2), progress=False)  # fmt: skip
        return bnn.eval()(x), bnn.state_dict()

    (out_a, state_a), (out_b, state_b) = run(), run()
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    gen = [torch.Generator().manual_seed(9) for _ in range(2)]
    layers = [BayesConv2d(1, 2, 3, prior_std=0.1, generator=g) for g in gen]
    layers[1].load_state_dict(layers[0].state_dict())
    x = torch.rand(3, 1, 5, 5)
    assert torch.equal(layers[0](x), layers[1](x))


# ---- (g) bad input names the argument ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: BayesLinear(3, 2, prior_std=0.0), "prior_std"),
        (lambda: BayesConv2d(1, 2, 3, prior_std=-0.1), "prior_std"),
        (lambda: BayesBatchNorm2d(2, prior_std=0.0), "prior_std"),
        (lambda: to_bayesian(nn.Linear(2, 2), prior_std=0.0), "prior_std"),
        (lambda: BayesLinear(3, 2, prior_std=0.1, init_log_std=math.inf), "init_log_std"),
        (lambda: BayesLinear(3, 2, prior_std=0.1, init_log_std=math.nan), "init_log_std"),
        (lambda: bayes_loss(alpha=0.0, train_size=10), "alpha"),
        (lambda: bayes_loss(alpha=1.5, train_size=10), "alpha"),
        (lambda: bayes_loss(alpha=-1.0, train_size=10), "alpha"),
        (lambda: bayes_loss(alpha=0.5, train_size=0), "train_size"),
        (lambda: BayesBatchNorm2d(2, prior_std=0.1)(torch.rand(3, 2)), "x"),
        (lambda: kl(nn.Linear(2, 2)), "Bayes layers"),
        (lambda: to_bayesian(nn.ReLU(), prior_std=0.1), "to convert"),
    ],
)
def test_bad_input_raises_naming_the_argument(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()


def test_non_module_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="model"):
        to_bayesian("net", prior_std=0.1)  # type: ignore[arg-type]
