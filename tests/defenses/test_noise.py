"""Noise injection (Pinot et al. 2019): the sampled distributions, placement, zoo training, adapters, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from stochdef.adapters import is_random
from stochdef.defenses import zoo
from stochdef.defenses.models import SmallResNet, mlp
from stochdef.defenses.noise import DISTRIBUTIONS, NoiseInjection, inject_noise, noise_layers, sample_noise
from stochdef.evaluations.libraries import FGSM, run

STD = 0.7
# Exact laws for std = STD, and the kurtosis E[(X-mu)^4]/sigma^4 that sets the spread of the sample std.
EXACT = {
    "gaussian": (stats.norm(scale=STD), 3.0),
    "laplace": (stats.laplace(scale=STD / math.sqrt(2)), 6.0),
    "uniform": (stats.uniform(loc=-STD * math.sqrt(3), scale=2 * STD * math.sqrt(3)), 1.8),
    "exponential": (stats.expon(loc=-STD, scale=STD), 9.0),
}
N = 200_000


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_layer_matches_its_distribution(distribution: str, device: str) -> None:
    torch.manual_seed(0)
    layer = NoiseInjection(distribution=distribution, std=STD).eval()
    x = torch.full((N // 100, 100), 3.0, device=device)
    out = layer(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    z = (out - 3.0).double().flatten().cpu()
    assert bool(torch.isfinite(z).all())
    # mean: standard error STD / sqrt(N); sample std: standard error STD * sqrt((kurtosis - 1) / (4 N)).
    _, kurtosis = EXACT[distribution]
    assert abs(float(z.mean())) < 6 * STD / math.sqrt(N)
    assert abs(float(z.std()) - STD) < 6 * STD * math.sqrt((kurtosis - 1) / (4 * N))
    # Kolmogorov-Smirnov against the exact CDF (seeded; a correct sampler gives p ~ U(0, 1)).
    assert stats.kstest(z.numpy(), EXACT[distribution][0].cdf).pvalue > 1e-4


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_rows_and_elements_are_independent(distribution: str) -> None:
    torch.manual_seed(1)
    out = NoiseInjection(distribution=distribution, std=1.0)(torch.zeros(N, 2))
    # Sample correlations of independent pairs have standard error 1 / sqrt(n).
    across_rows = np.corrcoef(out[:-1, 0].numpy(), out[1:, 0].numpy())[0, 1]
    across_elements = np.corrcoef(out[:, 0].numpy(), out[:, 1].numpy())[0, 1]
    assert abs(across_rows) < 6 / math.sqrt(N) and abs(across_elements) < 6 / math.sqrt(N)


def test_laplace_and_exponential_are_finite_at_the_edge_of_rand(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.rand can return exactly 0; inverse-CDF samplers must not turn it into an infinity.
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.zeros(shape, dtype=kw.get("dtype")))
    for distribution in ("laplace", "exponential"):
        z = sample_noise(distribution, 1.0, (4,), like=torch.empty(0))
        assert bool(torch.isfinite(z).all())


def test_zero_std_is_the_identity_and_noise_stays_on_in_eval() -> None:
    x = torch.rand(5, 3)
    assert torch.equal(NoiseInjection(std=0.0)(x), x)
    for distribution in DISTRIBUTIONS:
        layer = NoiseInjection(distribution=distribution, std=0.1).eval()
        assert not torch.equal(layer(x), layer(x))


def test_inject_noise_at_a_layer_adds_the_noise_there() -> None:
    torch.manual_seed(0)
    base = mlp((4, 6, 3))  # Flatten, Linear, ReLU, Linear
    noisy = inject_noise(base, at=2, distribution="laplace", std=0.3)
    assert [type(m) for m in noisy] == [nn.Flatten, nn.Linear, NoiseInjection, nn.ReLU, nn.Linear]
    assert not noise_layers(base)  # the original is untouched
    x = torch.rand(7, 4)
    torch.manual_seed(5)
    out = noisy(x)
    torch.manual_seed(5)
    h = base[1](x)
    reference = base[3](base[2](h + sample_noise("laplace", 0.3, tuple(h.shape), like=h)))
    assert torch.equal(out, reference)
    assert torch.equal(inject_noise(base, at="input", std=0.0)(x), base(x))


def test_inject_noise_by_name_and_on_the_input_of_any_module() -> None:
    torch.manual_seed(0)
    net = SmallResNet(units=1, width=4)
    named = inject_noise(net, at="stem", distribution="uniform", std=0.2).eval()
    assert isinstance(named.stem[1], NoiseInjection)
    wrapped = inject_noise(net, distribution="exponential", std=0.2).eval()
    assert isinstance(wrapped[0], NoiseInjection) and isinstance(wrapped[1], SmallResNet)
    x = torch.rand(3, 1, 12, 12)
    for model in (named, wrapped):
        assert model(x).shape == (3, 10) and is_random(model, x)


def test_same_seed_same_draws() -> None:
    model = inject_noise(mlp((4, 5, 3)), at=2, distribution="laplace", std=0.5)
    x = torch.rand(6, 4)
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(3)
    assert torch.equal(model(x), a)
    assert not torch.equal(model(x), a)
    gen_a, gen_b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    layer_a = NoiseInjection(distribution="uniform", std=1.0, generator=gen_a)
    layer_b = NoiseInjection(distribution="uniform", std=1.0, generator=gen_b)
    assert torch.equal(layer_a(x), layer_b(x))


def test_zoo_noise_models_train_with_their_noise(digits, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STOCHDEF_CACHE", str(tmp_path))
    for name, dist in (("noise-gaussian", "gaussian"), ("noise-laplace", "laplace")):
        assert name in zoo.names()
        model, meta = zoo.train(name, dataset="digits", settings=zoo.TrainSettings(quick=True, progress=False))
        assert meta["test_accuracy_single_draw"] > 0.3  # chance is 0.1 on ten classes, 360 test digits
        loaded, _ = zoo.load(name, dataset="digits", train_if_missing=False, settings=zoo.TrainSettings(quick=True))
        ((_, layer),) = noise_layers(loaded)
        assert (layer.distribution, layer.std) == (dist, 0.25)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        assert is_random(loaded, digits.x_test[:8])


@pytest.mark.parametrize("name", ["noise-gaussian", "noise-laplace"])
def test_shipped_checkpoints_load_and_stay_random(name: str) -> None:
    model, meta = zoo.load(name, dataset="mnist5k", train_if_missing=False)
    assert meta["path"].startswith(str(zoo.SHIPPED_DIR)) and meta["command"].startswith(f"stochdef train {name}")
    x = torch.rand(4, 1, 28, 28)
    assert is_random(model, x)


# ---- the three attack libraries, through the stochdef adapters ---------------------------------------------

EPS = 0.1


def _fgsm(library: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return run(library, FGSM(eps=EPS, samples=8), model, x, y, num_classes=10)


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_library_fgsm_on_each_noise(digits, distribution: str, library: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = inject_noise(mlp((64, 16, 10)), distribution=distribution, std=0.2).eval()
    x, y = digits.x_test[:16], digits.y_test[:16]
    x_adv = _fgsm(library, model, x, y)
    assert x_adv.shape == x.shape and bool(torch.isfinite(x_adv).all())
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float((x_adv - x).abs().max()) > EPS / 2  # it moved
    assert is_random(model, x)


def test_eot_pgd_lowers_a_trained_noisy_models_accuracy(noisy_digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    from stochdef.evaluations.reproduce.pinot import eot_pgd_accuracy, label_distribution

    x, y = digits.x_test[:120], digits.y_test[:120]
    torch.manual_seed(0)
    clean = float(label_distribution(noisy_digits_mlp, x, draws=200).gather(1, y[:, None]).mean())
    attacked = eot_pgd_accuracy(noisy_digits_mlp, x, y, eps=0.15, steps=10, samples=16, judge_draws=200)
    # Each accuracy averages 120 x 200 draws; its Monte-Carlo error is below 0.01, far under the margin.
    assert clean > 0.8 and attacked < clean - 0.3


# ---- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: NoiseInjection(std=-0.1), "std"),
        (lambda: NoiseInjection(distribution="cauchy", std=0.1), "distribution"),
        (lambda: sample_noise("gaussian", -1.0, (2,), like=torch.empty(0)), "std"),
        (lambda: inject_noise(mlp((4, 3)), at=9, std=0.1), "at"),
        (lambda: inject_noise(mlp((4, 3)), at="nowhere", std=0.1), "at"),
        (lambda: inject_noise(SmallResNet(units=1), at=2, std=0.1), "at"),
        (lambda: inject_noise(mlp((4, 3)), std=-1.0), "std"),
        (lambda: inject_noise(mlp((4, 3)), distribution="normal", std=1.0), "distribution"),
    ],
)
def test_bad_input_names_the_argument(make, argument: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=argument):
        make()


def test_at_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="at"):
        inject_noise(mlp((4, 3)), at=1.5, std=0.1)  # type: ignore[arg-type]
