"""Pinot et al.'s bounds on models: Monte-Carlo label distributions against exact ones, Theorems 2 and 3."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from stochdef.defenses.models import mlp
from stochdef.defenses.noise import NoiseInjection, inject_noise
from stochdef.defenses.renyi import entropy, gaussian_epsilon
from stochdef.evaluations.reproduce.pinot import certified_radius, guaranteed_accuracy, label_distribution, sweep

XS = torch.tensor([[-1.0], [-0.3], [0.0], [0.5], [1.5]])
DRAWS = 20_000


def threshold_model(std: float = 1.0) -> nn.Sequential:
    """Label 0 iff x + z > 0 with z ~ N(0, std^2): P(label 0 | x) = Phi(x / std), known exactly."""
    head = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    return nn.Sequential(NoiseInjection(std=std), nn.Flatten(), head)


def test_label_distribution_and_entropy_match_the_exact_ones(device: str) -> None:
    torch.manual_seed(0)
    model = threshold_model().to(device)
    got = label_distribution(model, XS.to(device), draws=DRAWS, max_batch=4096).double().cpu()
    p = torch.tensor(stats.norm.cdf(XS[:, 0].numpy()), dtype=torch.float64)
    # frequencies: binomial standard error sqrt(p (1 - p) / N)
    assert bool(((got[:, 0] - p).abs() <= 6 * (p * (1 - p) / DRAWS).sqrt()).all())
    # plug-in entropy: delta-method standard error |log((1-p)/p)| sqrt(p(1-p)/N), plus its O(1/N) bias
    # (at most chi2_1 / (2N) when the first-order term vanishes; 6 sigma of chi2_1 is below 40).
    exact_h = entropy(torch.stack([p, 1 - p], dim=1))
    sd = ((1 - p) / p).log().abs() * (p * (1 - p) / DRAWS).sqrt()
    assert bool(((entropy(got) - exact_h).abs() <= 6 * sd + 20 / DRAWS).all())


def test_guaranteed_accuracy_on_a_known_label_distribution() -> None:
    torch.manual_seed(1)
    y = torch.tensor([1, 1, 0, 0, 0])
    curve = guaranteed_accuracy(threshold_model(), XS, y, radii=[0.0, 0.1, 0.5, 2.0], draws=DRAWS)
    p = torch.tensor(stats.norm.cdf(XS[:, 0].numpy()), dtype=torch.float64)
    exact_acc = float(torch.where(y == 0, p, 1 - p).mean())
    exact_mean_exp = float(torch.exp(-entropy(torch.stack([p, 1 - p], dim=1))).mean())
    assert curve.accuracy == pytest.approx(exact_acc, abs=6 * 0.5 / math.sqrt(DRAWS * len(XS)))
    assert curve.mean_exp_neg_entropy == pytest.approx(exact_mean_exp, abs=0.01)
    # input noise, d = 1, std 1, KL: epsilon = r^2 / 2
    assert curve.epsilon.tolist() == pytest.approx([0.0, 0.005, 0.125, 2.0])
    expected = (curve.accuracy - (1 - torch.exp(-curve.epsilon) * curve.mean_exp_neg_entropy)).clamp(min=0)
    assert torch.allclose(curve.guaranteed, expected)
    assert bool((curve.guaranteed.diff() <= 0).all())


def test_no_noise_gives_no_guarantee_beyond_the_clean_risk(plain_digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    model = inject_noise(plain_digits_mlp, std=0.0)
    x, y = digits.x_test[:100], digits.y_test[:100]
    curve = guaranteed_accuracy(model, x, y, radii=[0.0, 1e-3, 0.5], draws=3)
    clean = float((plain_digits_mlp(x).argmax(1) == y).float().mean())
    assert curve.mean_exp_neg_entropy == 1.0 and curve.accuracy == pytest.approx(clean)
    assert curve.guaranteed.tolist() == pytest.approx([clean, 0.0, 0.0])


def test_noise_after_a_hidden_layer_uses_its_sensitivity(digits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = inject_noise(mlp((64, 16, 10)), at=2, distribution="gaussian", std=0.4)
    x, y = digits.x_test[:20], digits.y_test[:20]
    curve = guaranteed_accuracy(model, x, y, radii=[0.3], norm="linf", lambda_=2.0, draws=50)
    # l-inf -> l2 through W: min(the l2 norm of the rows' l1 norms, sqrt(64) * sigma_max(W))
    with torch.no_grad():
        spectral = float(torch.linalg.matrix_norm(model[1].weight.double(), 2))
        rows = float(model[1].weight.double().abs().sum(1).norm())
    delta = 0.3 * min(rows, 8 * spectral)
    assert float(curve.epsilon[0]) == pytest.approx(gaussian_epsilon(delta, std=0.4, lambda_=2.0))


def test_same_seed_same_estimates(noisy_digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:30], digits.y_test[:30]
    runs = []
    for _ in range(2):
        torch.manual_seed(4)
        runs.append(guaranteed_accuracy(noisy_digits_mlp, x, y, radii=[0.0, 0.1], draws=300))
    assert runs[0].accuracy == runs[1].accuracy and torch.equal(runs[0].guaranteed, runs[1].guaranteed)


def test_certified_radius_of_a_confident_input() -> None:
    torch.manual_seed(0)
    # x = 8 sigma from the threshold: every draw says label 0, so E[y] = (1, 0) and (Theorem 3)
    # u* = (1 - delta) / delta, eps* = log u* - log(1/delta) / (lambda - 1), radius = sqrt(2 sigma^2 eps* / lambda).
    labels, radius = certified_radius(threshold_model(std=0.5), torch.tensor([[4.0], [0.0]]), lambda_=5.0, delta=0.01)
    eps_star = math.log(99.0) - math.log(100.0) / 4
    assert labels[0].item() == 0
    assert radius[0].item() == pytest.approx(math.sqrt(2 * 0.25 * eps_star / 5.0))
    assert radius[1].item() == 0.0  # a coin flip is certified nowhere


def test_quick_sweep_returns_the_tradeoff_data() -> None:
    rows = sweep(
        dataset="digits",
        distributions=("laplace",),
        stds=(0.3,),
        radii=(0.0, 0.5),
        attack_eps=(0.03, 0.1),
        quick=True,
        progress=False,
    )
    assert [(r["distribution"], r["std"]) for r in rows] == [("none", 0.0), ("laplace", 0.3)]
    baseline, noisy = rows
    assert baseline["curves"]["l2"]["guaranteed"][1] == 0.0  # no noise: nothing guaranteed at radius > 0
    for row in rows:
        assert row["attack"]["eps"] == [0.03, 0.1] and len(row["attack_accuracy"]) == 2
        assert all(0.0 <= a <= 1.0 for a in row["attack_accuracy"]) and 0.0 <= row["accuracy"] <= 1.0
        for curve in row["curves"].values():
            assert curve["guaranteed"][0] <= row["accuracy"]
    assert noisy["curves"]["l1"]["epsilon"][1] == pytest.approx(math.sqrt(2) * 0.5 / 0.3)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m, x, y: guaranteed_accuracy(m, x, y, radii=[-0.1], draws=2), "radii"),
        (lambda m, x, y: guaranteed_accuracy(m, x, y, radii=[0.1], norm="l0", draws=2), "norm"),
        (lambda m, x, y: guaranteed_accuracy(m, x, y, radii=[0.1], draws=0), "draws"),
        (lambda m, x, y: guaranteed_accuracy(m, x, y, radii=[0.1], distribution="laplace", draws=2), "distribution"),
        (lambda m, x, y: guaranteed_accuracy(m, x, y, radii=[0.1], std=0.3, draws=2), "std"),
        (lambda m, x, y: guaranteed_accuracy(m[2:], x, y, radii=[0.1], draws=2), "NoiseInjection"),
        (lambda m, x, y: certified_radius(m, x, lambda_=1.0, delta=0.1, draws=2), "lambda_"),
        (lambda m, x, y: certified_radius(m, x, lambda_=2.0, delta=1.0, draws=2), "delta"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:  # type: ignore[no-untyped-def]
    model, x, y = threshold_model(), XS, torch.zeros(len(XS), dtype=torch.long)
    with pytest.raises(ValueError, match=argument):
        call(model, x, y)
