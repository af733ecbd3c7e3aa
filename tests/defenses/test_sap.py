"""SAP (Dhillon et al., ICLR 2018) against closed forms, brute-force enumeration and the attack libraries.

Statistical tolerances are 6 standard errors of the estimate for the sample count used (a binomial
proportion: sqrt(q (1 - q) / N); a mean: sd / sqrt(N); a variance: var * sqrt(2 / N)), so a correct
implementation fails with probability < 1e-8 per check; every random check is seeded.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torchattacks
from torch import nn

from stochdef.adapters import EoT, is_random, to_torchattacks
from stochdef.defenses import zoo
from stochdef.defenses.sap import (
    StochasticActivationPruning,
    apply_sap,
    dense_view,
    keep_probability,
    prune,
    pruning_mask,
    sample_count,
)

METHODS = ["direct", "poisson"]


def _hit_set_law(p: list[float], r: int) -> dict[int, float]:
    """P(hit set = S) for r draws with replacement, by inclusion-exclusion over subsets T of S."""
    a = len(p)
    law = {}
    for code in range(2**a):
        members = [j for j in range(a) if code >> j & 1]
        law[code] = sum(
            (-1) ** (len(members) - size) * sum(p[j] for j in sub) ** r
            for size in range(len(members) + 1)
            for sub in itertools.combinations(members, size)
        )
    return law


def _codes(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long() * (2 ** torch.arange(mask.shape[1]))).sum(1)


def test_inclusion_exclusion_matches_enumerating_every_draw_sequence() -> None:
    p, r = [0.1, 0.2, 0.3, 0.4], 3
    brute = dict.fromkeys(range(16), 0.0)
    for seq in itertools.product(range(4), repeat=r):
        brute[sum(2**j for j in set(seq))] += math.prod(p[j] for j in seq)
    law = _hit_set_law(p, r)
    assert all(math.isclose(law[c], brute[c], abs_tol=1e-12) for c in brute)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("weights", "r"), [([1.0, 2.0, 3.0, 4.0], 3), ([0.0, 1.0, 5.0], 16), ([1.0, 1.0, 6.0], 40)])
def test_hit_set_has_the_exact_law_of_draws_with_replacement(method: str, weights: list[float], r: int) -> None:
    torch.manual_seed(0)
    n = 200_000
    w = torch.tensor(weights)
    law = _hit_set_law((w / w.sum()).tolist(), r)
    freq = torch.bincount(_codes(pruning_mask(w.expand(n, -1), r, method=method)), minlength=2 ** len(w)) / n
    for code, q in law.items():
        assert abs(freq[code].item() - q) <= 6 * math.sqrt(q * (1 - q) / n) + 1e-9, (code, q, freq[code].item())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("r", [1, 5, 12, 40, 100])
def test_keep_rate_of_each_unit_is_one_minus_one_minus_p_to_the_r(method: str, r: int) -> None:
    torch.manual_seed(1)
    n = 50_000
    w = torch.tensor([0.0, 0.01, 0.1, 0.5, 1.0, 1.0, 2.0, 3.0, 0.0, 5.0, 8.0, 0.3])
    q = keep_probability(w / w.sum(), r).double()
    rate = pruning_mask(w.expand(n, -1), r, method=method).double().mean(0)
    assert torch.all((rate - q).abs() <= 6 * torch.sqrt(q * (1 - q) / n) + 1e-9)
    assert rate[0] == 0 and rate[8] == 0  # p = 0 is never drawn


@pytest.mark.parametrize("method", METHODS)
def test_number_kept_has_the_occupancy_variance_not_independent_coins(method: str) -> None:
    """Uniform p, a = r = 100: Var(K) = a(a-1)(1-2/a)^r + a(1-1/a)^r - a^2(1-1/a)^(2r) ~ 9.7, while
    independent coins with the same keep rates would give a q (1 - q) ~ 23.2."""
    torch.manual_seed(2)
    a = r = 100
    n = 20_000
    k = pruning_mask(torch.ones(n, a), r, method=method).double().sum(1)
    e0, e1 = (1 - 1 / a) ** r, (1 - 2 / a) ** r
    mean, var = a * (1 - e0), a * (a - 1) * e1 + a * e0 - a * a * e0 * e0
    assert abs(k.mean().item() - mean) <= 6 * math.sqrt(var / n)
    assert abs(k.var().item() - var) <= 6 * var * math.sqrt(2 / n) * 1.5  # 1.5: K is not quite normal


def test_draws_are_with_replacement() -> None:
    torch.manual_seed(3)
    n = 40_000
    # Two equal units, r = 2: both kept with probability 1 - 2 (1/2)^2 = 1/2 (always, without replacement).
    both = pruning_mask(torch.ones(n, 2), 2).all(1).double().mean().item()
    assert abs(both - 0.5) <= 6 * math.sqrt(0.25 / n)
    # A unit holding all the mass is kept in every row, at scale 1.
    h = torch.tensor([[0.0, 3.0, 0.0]]).expand(1000, 3)
    assert torch.equal(prune(h, fraction=0.34), h)


@pytest.mark.parametrize(("fraction", "size", "r"), [(1.0, 100, 100), (0.25, 10, 3), (0.15, 10, 2), (3.0, 4, 12)])
def test_sample_count_is_rounded_fraction_of_the_map(fraction: float, size: int, r: int) -> None:
    assert sample_count(fraction, size) == r


def test_sample_count_sets_the_draws_of_the_layer() -> None:
    torch.manual_seed(4)
    n = 50_000
    h = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]]).expand(n, 10)
    kept = (prune(h, fraction=0.3) != 0).double().mean(0)  # r = 3 draws
    q = keep_probability(h[0] / h[0].sum(), 3).double()
    assert torch.all((kept - q).abs() <= 6 * torch.sqrt(q * (1 - q) / n))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fraction", [1.0, 0.3])
@pytest.mark.parametrize("conv", [False, True])
def test_expectation_is_kept_through_a_linear_head(method: str, fraction: float, conv: bool) -> None:
    """E[M_p(h)] = h: after the pruned layer the network is linear, so the mean output is the dense one."""
    torch.manual_seed(5)
    if conv:
        dense = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(108, 4))
        x = torch.rand(2, 1, 8, 8)
    else:
        dense = nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 4))
        x = torch.rand(2, 6)
    sap = apply_sap(dense, fraction=fraction, method=method).eval()
    n = 20_000
    with torch.no_grad():
        out = sap(x.repeat(n, *([1] * (x.dim() - 1)))).view(n, 2, 4)
        ref = dense(x)
    assert torch.all((out.mean(0) - ref).abs() <= 6 * out.std(0) / math.sqrt(n) + 1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_maps_pass_through_unchanged(method: str) -> None:
    h = torch.zeros(6, 3, 4, 4)
    h[1, 0, 0, 0], h[4] = 2.0, torch.rand(3, 4, 4)  # rows of zeros beside non-zero rows
    h.requires_grad_(True)
    out = prune(h, method=method)
    out.sum().backward()
    zero_rows = [0, 2, 3, 5]
    assert torch.equal(out[zero_rows], h[zero_rows])
    assert out[1, 0, 0, 0] == 2.0  # the only non-zero unit of its map: p = 1, kept at scale 1
    assert torch.isfinite(out).all() and torch.isfinite(h.grad).all()


def test_backward_treats_the_rescaled_mask_as_constant() -> None:
    """As the authors' operator: d out / d h = mask / keep-probability (nothing through p)."""
    h = torch.rand(5, 30).requires_grad_(True)
    torch.manual_seed(6)
    out = prune(h)
    (grad,) = torch.autograd.grad(out.sum(), h)
    assert torch.allclose(grad, out.detach() / h.detach())


@pytest.mark.parametrize("method", METHODS)
def test_reproducible_and_rows_independent(method: str) -> None:
    h = torch.rand(1, 200).expand(8, 200)
    torch.manual_seed(7)
    first = prune(h, method=method)
    torch.manual_seed(7)
    assert torch.equal(prune(h, method=method), first)
    assert not torch.equal(first[0], first[1])  # each row its own draw
    gen = StochasticActivationPruning(method=method, generator=torch.Generator().manual_seed(3))
    again = StochasticActivationPruning(method=method, generator=torch.Generator().manual_seed(3))
    assert torch.equal(gen(h), again(h))


@pytest.mark.parametrize("method", METHODS)
def test_runs_on_each_device(device: str, method: str) -> None:
    torch.manual_seed(10)
    dense = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)).to(device)
    sap = apply_sap(dense, method=method).eval()
    x = torch.rand(1, 1, 8, 8, device=device).expand(64, -1, -1, -1)
    out = sap(x)
    assert out.device.type == torch.device(device).type and torch.isfinite(out).all()
    assert is_random(sap, x) and not torch.equal(out[0], out[1])
    zero = prune(torch.zeros(3, 50, device=device), method=method)
    assert torch.equal(zero, torch.zeros_like(zero))


def test_apply_sap_puts_sap_after_every_relu_of_a_copy() -> None:
    from stochdef.defenses.models import SmallResNet

    dense = SmallResNet(units=2, width=4)
    sap = apply_sap(dense)
    relus = [m for m in sap.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], nn.ReLU)]
    assert len(relus) == sum(isinstance(m, nn.ReLU) for m in dense.modules()) == 1 + 2 * 6
    assert all(isinstance(m[1], StochasticActivationPruning) for m in relus)
    assert not any(isinstance(m, StochasticActivationPruning) for m in dense.modules())  # untouched
    assert sap.state_dict().keys() == dense.state_dict().keys()
    view = dense_view(sap)
    assert not any(isinstance(m, StochasticActivationPruning) for m in view.modules())
    assert all(a is b for a, b in zip(view.parameters(), sap.parameters(), strict=True))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(view.eval()(x), dense.eval()(x))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: StochasticActivationPruning(fraction=0.0), "fraction"),
        (lambda: StochasticActivationPruning(fraction=-1.0), "fraction"),
        (lambda: StochasticActivationPruning(fraction=float("nan")), "fraction"),
        (lambda: apply_sap(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), fraction=0), "fraction"),
        (lambda: StochasticActivationPruning(method="exact"), "method"),
        (lambda: prune(torch.rand(2, 3), fraction=-0.5), "fraction"),
        (lambda: prune(torch.rand(3)), "h must"),
        (lambda: pruning_mask(torch.rand(2, 3), 0), "draws"),
        (lambda: pruning_mask(-torch.rand(2, 3), 2), "weights"),
        (lambda: pruning_mask(torch.rand(3), 2), "weights"),
        (lambda: apply_sap(nn.Sequential(nn.Linear(2, 2), nn.Tanh())), "model has no ReLU"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_apply_sap_rejects_a_non_module() -> None:
    with pytest.raises(TypeError, match="model"):
        apply_sap(lambda x: x)  # type: ignore[arg-type]


# ---- the defense in use: eval mode, the three libraries, an EoT attack -------------------------


@pytest.fixture(scope="module")
def sap_digits(plain_digits_mlp: nn.Module) -> nn.Module:
    return apply_sap(plain_digits_mlp, fraction=1.0).eval()


def _still_random(model: nn.Module, x: torch.Tensor) -> bool:
    return is_random(model, x[:4]) and model.training is False


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_fgsm_from_each_library(sap_digits: nn.Module, digits, library: str, library_fgsm) -> None:
    torch.manual_seed(8)
    x, y, eps = digits.x_test[:16], digits.y_test[:16], 0.1
    adv = library_fgsm(sap_digits, x, y, library=library, eps=eps, samples=8)
    assert (adv - x).abs().max() >= eps - 1e-6  # it moved
    assert _still_random(sap_digits, x)


def test_an_eot_attack_lowers_accuracy(sap_digits: nn.Module, digits) -> None:
    torch.manual_seed(9)
    x, y = digits.x_test[:120], digits.y_test[:120]
    judge = EoT(sap_digits, samples=32, reduce="probs")
    with torch.no_grad():
        clean = (judge(x).argmax(1) == y).double().mean().item()
    attack = torchattacks.PGD(to_torchattacks(sap_digits, samples=16), eps=0.15, alpha=0.03, steps=10)
    adv = attack(x, y)
    with torch.no_grad():
        robust = (judge(adv).argmax(1) == y).double().mean().item()
    assert clean >= 0.8
    assert robust <= clean - 0.4


# ---- the zoo ---------------------------------------------------------------------------------------


def test_zoo_sap_specs_hold_the_dense_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCHDEF_CACHE", str(tmp_path))
    assert {"sap-mlp", "adv-sap-mlp", "dense-resnet", "sap-resnet", "adv-resnet", "adv-sap-resnet"} <= set(zoo.names())
    settings = zoo.TrainSettings(quick=True, progress=False)
    sap, meta = zoo.train("sap-mlp", dataset="digits", settings=settings, out_dir=tmp_path)
    dense, _ = zoo.load("vanilla-mlp", dataset="digits", settings=settings, train_if_missing=False)
    for (k, v), (k2, v2) in zip(sap.state_dict().items(), dense.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert any(isinstance(m, StochasticActivationPruning) for m in sap.modules())
    assert is_random(sap, torch.rand(4, 1, 8, 8)) and 0 <= meta["test_accuracy_single_draw"] <= 1


SHIPPED = [("sap-mlp", "mnist5k"), ("adv-sap-mlp", "mnist5k"), ("sap-resnet", "fashion-mnist")]


@pytest.mark.parametrize(("name", "dataset"), SHIPPED)
def test_shipped_sap_checkpoints_load_and_are_random(name: str, dataset: str) -> None:
    path = zoo.SHIPPED_DIR / zoo.checkpoint_name(name, dataset)
    if not path.exists():
        pytest.skip(f"{name} on {dataset} is not shipped")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = zoo.get(name).build((1, 28, 28), 10)  # both datasets are 28x28, 10 classes
    model.load_state_dict(blob["state_dict"])
    assert is_random(model, torch.rand(4, 1, 28, 28))
    assert blob["meta"]["command"].startswith(f"stochdef train {name} --dataset {dataset}")
