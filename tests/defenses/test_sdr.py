"""SDR layers (Khan et al.): per-example Gaussian weights against their analytic distribution, the SDR-Decay
rule against hand-computed numbers, the thresholds and schedule, the adapters, reproducibility, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stochdef.adapters import ensemble_accuracy, is_random
from stochdef.defenses import accuracy, fit, load_dataset, zoo
from stochdef.defenses.sampling import fast_sampling, use_sampler
from stochdef.defenses.sdr import (
    SDRDecay,
    SDRLinear,
    ThresholdSchedule,
    VarianceThresholds,
    clamp_std,
    decay_due,
    sdr_decay_update,
    sdr_layers,
    sdr_mlp,
    should_raise,
    std_range,
)
from stochdef.defenses.zoo import TrainSettings
from stochdef.defenses.zoo.sdr import SPECS

MODES = ["decay", "learnable"]
N_DRAWS = 100_000
Z = 6.0  # bounds below are Z standard errors: a false failure has probability < 1e-8 per check


def _layer(mode: str, device: str, sampler: str | None = "weights") -> tuple[SDRLinear, torch.Tensor]:
    """A 5->3 layer; ``"weights"`` by default: rows of one call are then independent draws (Flipout's law of a
    row, rows uncorrelated only, is checked across calls in ``test_sampling.py``)."""
    torch.manual_seed(0)
    layer = SDRLinear(5, 3, mode=mode, sampler=sampler).to(device).eval()
    with torch.no_grad():
        layer.weight_std.copy_(torch.rand(3, 5) * 0.4 + 0.1)  # every weight its own sigma
        layer.bias_std.copy_(torch.tensor([0.05, 0.2, 0.5]))
    return layer, torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3], device=device)


# ---- (a) replicated rows are independent draws of N(mu.x + b, sum x_i^2 sigma_i^2 + sigma_b^2) ------------


@pytest.mark.parametrize("mode", MODES)
def test_replicated_rows_match_the_analytic_unit_distribution(mode: str, device: str) -> None:
    layer, x = _layer(mode, device)
    with torch.no_grad():
        out = layer(x.expand(N_DRAWS, -1))
        mean = layer.weight_mean @ x + layer.bias_mean
        var = (x * x) @ (layer.weight_std**2).T + layer.bias_std**2
    n = N_DRAWS
    # Sample mean: normal with sd sqrt(var / n).
    assert torch.all((out.mean(0) - mean).abs() <= Z * torch.sqrt(var / n))
    # Sample variance of n iid normals: (n-1) s^2 / var ~ chi2(n-1), so s^2 / var has sd sqrt(2 / (n-1)).
    assert torch.all((out.var(0) / var - 1).abs() <= Z * math.sqrt(2 / (n - 1)))
    # Distinct rows (even vs odd draws) and distinct units are uncorrelated: a sample correlation of m
    # independent pairs has sd ~ 1 / sqrt(m).
    z = (out - mean) / var.sqrt()
    pairs = n // 2
    row_corr = (z[0::2] * z[1::2]).mean(0)
    assert torch.all(row_corr.abs() <= Z / math.sqrt(pairs))
    unit_corr = (z[:, 0] * z[:, 1]).mean()
    assert abs(float(unit_corr)) <= Z / math.sqrt(n)


def test_eval_mode_does_not_change_the_distribution() -> None:
    layer, x = _layer("learnable", "cpu")
    torch.manual_seed(1)
    in_eval = layer.eval()(x.expand(1000, -1))
    torch.manual_seed(1)
    assert torch.equal(layer.train()(x.expand(1000, -1)), in_eval)


def test_grad_of_the_mean_is_the_sum_of_the_rows_weight_gradients() -> None:
    # For w_b = mu + sigma * eps_b, dL/dmu = sum_b dL/dw_b = sum_b delta_b x_b^T, with delta_b = dL/dout_b:
    # the |grad_w L| that SDR-Decay uses. Reference: that sum, from the layer's own outputs.
    torch.manual_seed(2)
    layer = SDRLinear(4, 3, mode="decay", init_std=0.3)
    x = torch.randn(6, 4)
    out = layer(x)
    (out**3).sum().backward()
    delta = 3 * out.detach() ** 2
    torch.testing.assert_close(layer.weight_mean.grad, delta.T @ x)
    torch.testing.assert_close(layer.bias_mean.grad, delta.sum(0))


# ---- (b) SDR-Decay: mu <- mu - alpha g; sigma <- sigma + beta |g|; every tau steps sigma <- zeta sigma ---


def test_sdr_decay_update_pure_function() -> None:
    std, grad = torch.tensor([0.1, 0.2]), torch.tensor([-1.0, 0.5])
    torch.testing.assert_close(sdr_decay_update(std, grad, beta=0.2, zeta=0.5, decay=False), torch.tensor([0.3, 0.3]))
    torch.testing.assert_close(sdr_decay_update(std, grad, beta=0.2, zeta=0.5, decay=True), torch.tensor([0.15, 0.15]))
    assert [decay_due(s, 3) for s in range(1, 7)] == [False, False, True, False, False, True]


def test_sdr_decay_training_matches_hand_computation() -> None:
    # One unit, 2 inputs, loss = sum of the outputs of x = [[1, -2], [3, 1]]: whatever the draws,
    # grad_mu_w = sum_b x_b = [4, -1] and grad_mu_b = 2. SGD alpha = 0.1, beta = 0.5, zeta = 0.8, tau = 2.
    layer = SDRLinear(2, 1, mode="decay", init_std=0.1)
    with torch.no_grad():
        layer.weight_mean.copy_(torch.tensor([[0.5, -0.5]]))
        layer.bias_mean.copy_(torch.tensor([0.2]))
    hook = SDRDecay(layer, beta=0.5, zeta=0.8, tau=2)
    seen: list[list[float]] = []

    def after_step(step: int) -> None:
        hook(step)
        seen.append([*layer.weight_mean.flatten().tolist(), *layer.bias_mean.tolist()])
        seen[-1] += [*layer.weight_std.flatten().tolist(), *layer.bias_std.tolist()]

    x, y = torch.tensor([[1.0, -2.0], [3.0, 1.0]]), torch.zeros(2, dtype=torch.long)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    fit(
        layer,
        x,
        y,
        epochs=2,
        batch_size=2,
        optimizer=opt,
        loss=lambda m, a, _: m(a).sum(),
        after_step=after_step,
        progress=False,
    )
    # step 1: mu_w = [0.5 - 0.4, -0.5 + 0.1], mu_b = 0.2 - 0.2; sigma = 0.1 + 0.5 * [4, 1, 2]; no decay.
    # step 2: mu_w = [-0.3, -0.3], mu_b = -0.2; sigma = 0.8 * ([2.1, 0.6, 1.1] + 0.5 * [4, 1, 2]).
    expected = [[0.1, -0.4, 0.0, 2.1, 0.6, 1.1], [-0.3, -0.3, -0.2, 3.28, 0.88, 1.68]]
    torch.testing.assert_close(torch.tensor(seen), torch.tensor(expected))
    assert [name for name, _ in layer.named_parameters()] == ["weight_mean", "bias_mean"]  # sigma: no backprop


# ---- (c) thresholds after every step; the schedule's decision ------------------------------------------


def test_thresholds_hold_after_every_step(digits) -> None:
    torch.manual_seed(0)
    model = sdr_mlp((64, 16, 10), init_std=0.2)  # starts outside [0.05, 0.08]
    thresholds = VarianceThresholds(model, min_std=0.05, max_std=0.08)
    ranges: list[tuple[float, float]] = []

    def after_step(step: int) -> None:
        thresholds(step)
        ranges.append(std_range(model))

    fit(
        model,
        digits.x_train[:512],
        digits.y_train[:512],
        epochs=3,
        batch_size=64,
        after_step=after_step,
        progress=False,
    )
    assert len(ranges) == 24
    assert all(low >= 0.05 and high <= 0.08 for low, high in ranges)
    stds = torch.cat([s.detach().flatten() for layer in sdr_layers(model) for _, s in layer.mean_std_pairs()])
    assert bool(((stds > 0.05) & (stds < 0.08)).any())  # sigma is learned, not just pinned to a bound
    clamped = clamp_std(torch.tensor([-1.0, 0.5, 2.0]), min_std=0.0, max_std=1.0)
    assert torch.equal(clamped, torch.tensor([0.0, 0.5, 1.0]))


@pytest.mark.parametrize(
    ("accuracies", "expected"),
    [
        ([0.80, 0.95, 0.94, 0.95, 0.95], True),  # 5 epochs, last 3 no better than the best before
        ([0.80, 0.95, 0.94, 0.95, 0.951], False),  # still improving
        ([0.95, 0.95, 0.95, 0.95], False),  # plateau, but not 5 epochs since the last raise
        ([0.8, 0.82, 0.85, 0.87, 0.85, 0.86, 0.87, 0.86], True),  # best of the last 3 (0.87) <= 0.87
        ([0.8, 0.82, 0.85, 0.87, 0.85, 0.86, 0.88, 0.86], False),
        ([0.95, 0.80, 0.85, 0.86, 0.90, 0.91], True),  # the best since the last raise counts, however early
    ],
)
def test_should_raise(accuracies: list[float], expected: bool) -> None:
    assert should_raise(accuracies, cooldown=5, patience=3, min_delta=0.0) is expected


def test_schedule_raises_by_005_on_plateau_at_most_every_5_epochs() -> None:
    model = sdr_mlp((4, 3), init_std=0.0)
    thresholds = VarianceThresholds(model, min_std=0.0, max_std=1.0)
    flat = ThresholdSchedule(thresholds, epochs=20)
    for epoch in range(20):
        flat(epoch, 0.9)  # a permanent plateau
    assert flat.raises == [4, 9, 14]  # the raise due after the last epoch (19) is skipped
    assert (round(thresholds.min_std, 6), round(thresholds.max_std, 6)) == (0.15, 1.15)
    assert std_range(model)[0] == pytest.approx(0.15)  # clamped at once
    rising = ThresholdSchedule(VarianceThresholds(sdr_mlp((4, 3)), min_std=0.0, max_std=1.0))
    for epoch in range(20):
        rising(epoch, 0.5 + 0.02 * epoch)
    assert rising.raises == []


# ---- (d) random after eval(); real FGSM of every library through the adapters -------------------------


@pytest.fixture(scope="module", params=MODES)
def trained_sdr(request: pytest.FixtureRequest, digits) -> nn.Module:
    torch.manual_seed(0)
    model = sdr_mlp((64, 32, 10), mode=request.param)
    hook = (
        SDRDecay(model, beta=0.5, zeta=0.9, tau=5)
        if request.param == "decay"
        else VarianceThresholds(model, min_std=0.05, max_std=1.0)
    )
    with fast_sampling():  # as the zoo trains SDR models
        fit(model, digits.x_train, digits.y_train, epochs=12, batch_size=64, lr=3e-3, after_step=hook, progress=False)
    return model.eval()


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_fgsm_through_adapters(trained_sdr: nn.Module, digits, library: str, library_fgsm) -> None:
    torch.manual_seed(5)
    x, y = digits.x_test[:100], digits.y_test[:100]
    model = trained_sdr.train()  # ART and torchattacks attack in eval(), Foolbox in the mode given (DESIGN.md, §C5)
    x_adv = library_fgsm(model, x, y, library=library, eps=0.15, samples=16)
    model.eval()  # the mode each library leaves is its own wrapper's (tests/adapters/test_policy.py)
    assert is_random(model, x[:4])
    clean, robust = ensemble_accuracy(model, x, y, samples=32), ensemble_accuracy(model, x_adv, y, samples=32)
    assert clean >= 0.8
    assert robust <= clean - 0.3, f"{library}: clean {clean:.2f}, under EoT-FGSM {robust:.2f}"


# ---- (e) reproducible under torch.manual_seed --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_reproducible_under_manual_seed(mode: str, device: str) -> None:
    layer, x = _layer(mode, device)
    xs = x.expand(8, -1)
    torch.manual_seed(11)
    first = layer(xs)
    torch.manual_seed(11)
    assert torch.equal(layer(xs), first)
    assert not torch.equal(layer(xs), first)
    gen = torch.Generator(device=device)
    own = SDRLinear(5, 3, mode=mode, generator=gen).to(device)
    gen.manual_seed(3)
    a = own(xs)
    gen.manual_seed(3)
    assert torch.equal(own(xs), a)


def test_zoo_specs_train_quick_and_reproducibly(digits) -> None:
    settings = TrainSettings(seed=1, quick=True, progress=False)
    small = digits.subset(train=512, test=128)
    for spec in SPECS:
        states = []
        for _ in range(2):
            torch.manual_seed(settings.seed)
            model = spec.build(digits.input_shape, digits.num_classes)
            initial = {k: v.clone() for k, v in model.state_dict().items()}
            history = spec.train(model, small, settings)
            states.append(model.state_dict())
        assert len(history.loss) == 2 and all(math.isfinite(v) for v in history.loss), spec.name
        assert not torch.equal(initial["1.weight_mean"], states[1]["1.weight_mean"]), spec.name
        assert not torch.equal(initial["1.weight_std"], states[1]["1.weight_std"]), spec.name
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), spec.name
        assert is_random(model, digits.x_test[:4])


@pytest.mark.parametrize("name", ["sdr-decay", "sdr-learnable"])
def test_shipped_checkpoint_is_random_and_as_accurate_as_recorded(name: str) -> None:
    model, meta = zoo.load(name, dataset="mnist5k", train_if_missing=False)
    data = load_dataset("mnist5k")
    assert is_random(model, data.x_test[:4])
    torch.manual_seed(0)
    with use_sampler("weights"):  # rows independent (Flipout's rows are uncorrelated only)
        acc = accuracy(model, data.x_test, data.y_test, batch_size=250)
    recorded, n = meta["test_accuracy_single_draw"], len(data.y_test)
    # A fresh draw per row: the n hits are independent Bernoullis, so the accuracy has sd <= sqrt(p(1-p)/n).
    assert abs(acc - recorded) <= Z * math.sqrt(recorded * (1 - recorded) / n)
    low, high = std_range(model)
    assert low >= 0.0 and (name == "sdr-decay" or (low >= 0.1 - 1e-6 and high <= 1.1))


# ---- (f) bad input names the argument -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda dec, learn: VarianceThresholds(learn, min_std=0.5, max_std=0.1), "min_std"),
        (lambda dec, learn: VarianceThresholds(learn, min_std=-0.1, max_std=1.0), "min_std"),
        (lambda dec, learn: VarianceThresholds(learn, min_std=0.0, max_std=-1.0), "max_std"),
        (lambda dec, learn: SDRDecay(dec, beta=0.1, zeta=0.0, tau=1), "zeta"),
        (lambda dec, learn: SDRDecay(dec, beta=0.1, zeta=1.5, tau=1), "zeta"),
        (lambda dec, learn: SDRDecay(dec, beta=0.1, zeta=0.9, tau=0), "tau"),
        (lambda dec, learn: SDRDecay(dec, beta=-0.1, zeta=0.9, tau=1), "beta"),
        (lambda dec, learn: SDRDecay(learn, beta=0.1, zeta=0.9, tau=1), "mode='decay'"),
        (lambda dec, learn: VarianceThresholds(dec), "mode='learnable'"),
        (lambda dec, learn: ThresholdSchedule(VarianceThresholds(learn), increment=0.0), "increment"),
        (lambda dec, learn: ThresholdSchedule(VarianceThresholds(learn), cooldown=3, patience=3), "patience"),
        (lambda dec, learn: ThresholdSchedule(VarianceThresholds(learn), min_delta=-0.1), "min_delta"),
        (lambda dec, learn: SDRLinear(4, 3, mode="gaussian"), "mode"),
        (lambda dec, learn: SDRLinear(0, 3), "in_features"),
        (lambda dec, learn: SDRLinear(4, 3, init_std=-1.0), "init_std"),
        (lambda dec, learn: sdr_mlp((4, 3), init_std=float("nan")), "init_std"),
        (lambda dec, learn: sdr_mlp((4, 3), mode="bayes"), "mode"),
        (lambda dec, learn: std_range(nn.Linear(2, 2)), "SDRLinear"),
        (lambda dec, learn: learn(torch.rand(2, 5)), "x must have 4 features"),
    ],
)
def test_bad_input_names_the_argument(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make(sdr_mlp((4, 3), mode="decay"), nn.Sequential(nn.Flatten(), SDRLinear(4, 3)))
