"""The in-house attacks against independent references: the libraries themselves (bit for bit), closed
forms on linear models, brute-force EoT averages, advertorch's LocalSearch, and clear errors."""

from __future__ import annotations

import math

import foolbox as fb
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import EoT
from stochdef.evaluations.attacks import deepfool, fgsm, fgsm_minimal, local_search, pgd
from stochdef.evaluations.attacks.deepfool import linearize
from stochdef.evaluations.crosscheck import references
from stochdef.evaluations.libraries import FGSM, LocalSearch, make, run, unsupported
from stochdef.evaluations.stats import intervals_overlap, median_interval, two_proportion_tolerance

EPS, STEP, STEPS = 0.1, 0.01, 10
LIBRARIES = ["foolbox", "art", "torchattacks"]


def _data(digits, device: str, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    return digits.x_test[:n].to(device), digits.y_test[:n].to(device)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ---- FGSM / PGD / BIM: bit-identical with each library -----------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize(
    ("attack", "targeted"), [("fgsm", False), ("fgsm", True), ("pgd", False), ("pgd", True), ("bim", False)]
)
def test_bit_identical_with_libraries(plain_digits_mlp, digits, device, library, attack, targeted) -> None:  # type: ignore[no-untyped-def]
    spec = (
        FGSM(eps=EPS, targeted=targeted)
        if attack == "fgsm"
        else make(attack, eps=EPS, step=STEP, steps=STEPS, targeted=targeted)
    )
    if unsupported(library, spec):
        pytest.skip(unsupported(library, spec))  # Foolbox 3's FGSM has no targeted mode
    model = plain_digits_mlp.to(device).eval()
    x, y = _data(digits, device)
    labels = (y + 1) % 10 if targeted else y
    if attack == "fgsm":
        ours = fgsm(model, x, labels, eps=EPS, targeted=targeted).x_adv
    else:
        ours = pgd(model, x, labels, eps=EPS, step=STEP, steps=STEPS, targeted=targeted).x_adv
    theirs = run(library, spec, model, x, labels, num_classes=10, native=True)
    if library == "torchattacks" and attack == "bim":
        # torchattacks' BIM rebuilds the projection with mask arithmetic: x0 + (x - x0) is not x in float32.
        assert float((ours - theirs).abs().max()) <= 1e-7
    else:
        assert torch.equal(ours, theirs)


def test_l2_pgd_bit_identical_with_foolbox(plain_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu")
    ours = pgd(plain_digits_mlp, x, y, eps=1.0, step=0.1, steps=STEPS, norm="l2").x_adv
    attack = fb.attacks.L2PGD(abs_stepsize=0.1, steps=STEPS, random_start=False)
    theirs = attack(fb.PyTorchModel(plain_digits_mlp, bounds=(0, 1)), x, y, epsilons=1.0)[1]
    assert torch.equal(ours, theirs)
    assert float((ours - x).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-5


# ---- DeepFool: the exact minimal perturbation of a linear model ---------------------------------------------


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_on_linear_model_matches_closed_form(norm: str, device: str) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5)).to(device).double()
    x = torch.rand(32, 1, 4, 4, device=device, dtype=torch.float64)
    y = model(x).argmax(1)
    w = model[1].weight
    # Class y's region is the polyhedron {f_y >= f_k}; the distance to its complement is the distance to the
    # nearest hyperplane f_k = f_y, measured in the dual norm of the attack's norm.
    dw = w[None] - w[y][:, None]  # (B, K, D)
    gap = (model(x).gather(1, y[:, None]) - model(x)).detach()  # f_y - f_k >= 0
    dual = dw.norm(dim=2) if norm == "l2" else dw.abs().sum(dim=2)
    exact = (gap / dual).masked_fill(gap == 0, float("inf")).min(dim=1).values.detach()
    result = deepfool(model, x, y, norm=norm, bounds=(-100.0, 100.0), overshoot=0.02)
    size = (result.x_adv - x).flatten(1).norm(dim=1, p=2 if norm == "l2" else float("inf"))
    assert bool(result.success.all())
    assert bool((result.steps == 1).all())  # an affine model is crossed in one step
    assert bool((size >= exact).all())
    # One step of (distance + 1e-4), scaled by 1 + overshoot: within the overshoot of the exact minimum.
    assert bool((size <= 1.02 * (exact + 1e-4) * (1 + 1e-9)).all())


def test_deepfool_matches_foolbox(plain_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu")
    keep = plain_digits_mlp(x).argmax(1) == y  # Foolbox's reference class is the clean prediction
    x, y = x[keep], y[keep]
    ours = deepfool(plain_digits_mlp, x, y)
    theirs = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)(
        fb.PyTorchModel(plain_digits_mlp, bounds=(0, 1)), x, y, epsilons=None
    )[0]
    # Same conventions, same arithmetic; Foolbox differentiates the whole batch at every step, stochdef only
    # the rows still moving, and a matmul over fewer rows may round differently: float32 rounding, no more.
    torch.testing.assert_close(ours.x_adv, theirs, rtol=0, atol=1e-6)
    assert torch.equal(ours.success, plain_digits_mlp(theirs).argmax(1) != y)


def test_fgsm_minimal_is_the_first_grid_step(plain_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu")
    coarse = fgsm_minimal(plain_digits_mlp, x, y, epsilons=100, max_eps=0.5, refine=False)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(plain_digits_mlp(xr), y, reduction="sum"), xr)
    grid = torch.linspace(0, 0.5, 101)[1:]
    with torch.no_grad():  # brute force: every grid point for every example
        points = torch.clamp(x[None] + grid.view(-1, 1, 1, 1, 1) * grad.sign(), 0, 1)
        wrong = plain_digits_mlp(points.flatten(0, 1)).argmax(1).view(100, len(x)) != y
    clean_wrong = plain_digits_mlp(x).argmax(1) != y
    expected = torch.where(wrong.any(0), grid[wrong.float().argmax(0)], torch.tensor(float("inf")))
    expected[clean_wrong] = 0.0
    torch.testing.assert_close(coarse.eps, expected)
    assert torch.equal(coarse.success, torch.isfinite(expected))
    fine = fgsm_minimal(plain_digits_mlp, x, y, epsilons=100, max_eps=0.5)
    assert bool((fine.eps <= coarse.eps).all()) and torch.equal(fine.success, coarse.success)
    assert bool((fine.eps[coarse.eps <= 0.1] < coarse.eps[coarse.eps <= 0.1]).any())  # the finer search helped


# ---- every attack lowers a trained model's accuracy ---------------------------------------------------------


ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, eps=0.2),
    "fgsm_minimal": lambda m, x, y: fgsm_minimal(m, x, y, epsilons=200),
    "pgd": lambda m, x, y: pgd(m, x, y, eps=0.2, step=0.02, steps=20, random_start=True, restarts=2),
    "pgd_l2": lambda m, x, y: pgd(m, x, y, eps=2.0, step=0.2, steps=20, norm="l2"),
    "deepfool": lambda m, x, y: deepfool(m, x, y),
    "deepfool_linf": lambda m, x, y: deepfool(m, x, y, norm="linf"),
    "local_search": lambda m, x, y: local_search(m, x, y, rounds=30),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_attack_lowers_accuracy(plain_digits_mlp, digits, device, name: str) -> None:  # type: ignore[no-untyped-def]
    model = plain_digits_mlp.to(device)
    x, y = _data(digits, device, 100)
    torch.manual_seed(0)
    result = ATTACKS[name](model, x, y)
    clean = _accuracy(model, x, y)
    assert clean > 0.85
    assert result.x_adv.device == x.device and result.x_adv.shape == x.shape
    assert bool(((result.x_adv >= 0) & (result.x_adv <= 1)).all())
    assert _accuracy(model, result.x_adv, y) <= clean - 0.5
    # success is what it says: the model misclassifies exactly the successful rows (deterministic model)
    assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)


def test_eot_pgd_lowers_randomized_accuracy(noisy_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu", 100)
    torch.manual_seed(0)
    x_adv = pgd(noisy_digits_mlp, x, y, eps=0.2, step=0.02, steps=20, samples=16).x_adv
    ensemble = EoT(noisy_digits_mlp, samples=64)
    with torch.no_grad():
        clean, attacked = (float((ensemble(v).argmax(1) == y).float().mean()) for v in (x, x_adv))
    assert attacked <= clean - 0.4


# ---- restarts keep the per-example best --------------------------------------------------------------------


def test_restarts_keep_per_example_best(plain_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu", 100)
    kw = {"eps": 0.06, "step": 0.01, "steps": 5, "random_start": True}
    torch.manual_seed(5)
    combined = pgd(plain_digits_mlp, x, y, restarts=4, **kw)
    torch.manual_seed(5)  # the same random starts, one run at a time (the model itself draws nothing)
    runs = [pgd(plain_digits_mlp, x, y, **kw).x_adv for _ in range(4)]
    stacked = torch.stack(runs)  # (R, B, ...)
    with torch.no_grad():
        logits = plain_digits_mlp(stacked.flatten(0, 1)).view(4, len(x), -1)
    losses = torch.stack([F.cross_entropy(lg, y, reduction="none") for lg in logits])
    wrong = logits.argmax(2) != y
    # brute force: among misclassifying runs the highest loss, else the highest loss overall
    key = losses.double() + wrong.double() * 1e6  # float64: the losses stay distinct after the offset
    best = stacked[key.argmax(0), torch.arange(len(x))]
    assert torch.equal(combined.x_adv, best)
    assert torch.equal(combined.success, wrong.any(0))
    assert int(wrong.any(0).sum()) > int(wrong[0].sum())  # the restarts did find more


# ---- EoT: samples > 1 equals a brute-force average over the same draws -------------------------------------


class RowNoise(nn.Module):
    """A "random" model whose draw for row r is the known vector ``noise[r]`` (rows are sample-major)."""

    def __init__(self, noise: torch.Tensor) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.register_buffer("noise", noise)
        self.head = nn.Sequential(nn.Linear(noise.shape[1], 12), nn.Tanh(), nn.Linear(12, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(x.flatten(1) + self.noise[: x.shape[0]]))

    def draw(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """Draw ``s`` of the batch: what a replicated call gives copy ``s``."""
        return self.head(torch.tanh(x.flatten(1) + self.noise[s * len(x) : (s + 1) * len(x)]))


def test_eot_samples_equal_brute_force_average() -> None:
    samples, batch = 6, 10
    torch.manual_seed(0)
    model = RowNoise(torch.randn(samples * batch, 8))
    x, y = torch.rand(batch, 1, 2, 4) * 0.8 + 0.1, torch.randint(0, 4, (batch,))
    grads, diffs, jac = [], [], []
    for s in range(samples):
        xr = x.clone().requires_grad_(True)
        out = model.draw(xr, s)
        (g,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xr, retain_graph=True)
        grads.append(g)
        diffs.append((out[:, 2] - out.gather(1, y[:, None]).squeeze(1)).detach())
        (j,) = torch.autograd.grad((out[:, 2] - out.gather(1, y[:, None]).squeeze(1)).sum(), xr)
        jac.append(j)
    mean_grad = torch.stack(grads).mean(0)
    expected = torch.clamp(x + 0.05 * mean_grad.sign(), 0, 1)
    assert torch.equal(fgsm(model, x, y, eps=0.05, samples=samples).x_adv, expected)
    classes = torch.full((batch, 1), 2)
    _, f, w = linearize(model, x, y, classes, samples=samples)
    torch.testing.assert_close(f[:, 0], torch.stack(diffs).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w[:, 0], torch.stack(jac).mean(0), rtol=1e-5, atol=1e-6)


# ---- LocalSearch -------------------------------------------------------------------------------------------


def test_local_search_counts_queries_and_only_queries(plain_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu", 40)
    calls = {"rows": 0}

    class Counting(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            calls["rows"] += len(v)
            with torch.no_grad():  # black box: no gradient can flow
                return plain_digits_mlp(v)

    torch.manual_seed(0)
    result = local_search(Counting(), x, y, rounds=20)
    # every row the model scored is counted once (prepare's one-row class-count probe aside)
    assert int(result.queries.sum()) == calls["rows"] - 1
    assert bool(result.success.any())
    changed = (result.x_adv != x).flatten(1)
    assert bool((changed[~result.success] == 0).all())  # failures come back unchanged


def _advertorch_rates(model, digits, select: str, rounds: int, n: int):  # type: ignore[no-untyped-def]
    cls, reason = references.import_advertorch()
    if cls is None:
        pytest.skip(reason)
    x, y = _data(digits, "cpu", n)
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    spec = LocalSearch(select=select, rounds=rounds)
    torch.manual_seed(0)
    ours = local_search(model, x, y, rounds=rounds, select=select)
    out = references.advertorch_local_search(spec, model, x, y)
    assert out is not None
    theirs = model(out[0]).argmax(1) != y
    return ours, theirs, out[1], len(x)


# Few rounds, so that each success rate is informative (150 rounds of "highest" broke every example, 8 of "lowest"
# one of 15), on 120 examples (60 for "lowest": it spends all its rounds on the examples it fails).
@pytest.mark.parametrize(("select", "rounds", "n"), [("highest", 2, 120), ("highest", 4, 120), ("lowest", 8, 60)])
def test_localsearch_success_close_to_advertorch(plain_digits_mlp, digits, select, rounds, n) -> None:  # type: ignore[no-untyped-def]
    ours, theirs, queries, n = _advertorch_rates(plain_digits_mlp, digits, select, rounds, n)
    s1, s2 = int(ours.success.sum()), int(theirs.sum())
    # two independent binomial rates with a common mean differ by < 4 standard errors but for ~6e-5
    assert abs(s1 - s2) / n <= two_proportion_tolerance(s1, n, s2, n, z=4.0)
    # on the same examples (McNemar): where one implementation breaks an example the other does not, either is
    # as likely to be the one under a common per-example success rate; 4 standard errors, ~6e-5 false failures
    only_ours, only_theirs = int((ours.success & ~theirs).sum()), int((~ours.success & theirs).sum())
    assert abs(only_ours - only_theirs) <= 4.0 * math.sqrt(only_ours + only_theirs)
    # the same algorithm spends the same queries (probes plus one check a round): distribution-free 99%
    # intervals of the two medians overlap (the in-house count also holds one query of the clean input)
    ours_median = median_interval((ours.queries - 1).tolist(), confidence=0.99)
    assert intervals_overlap(ours_median, median_interval(queries.tolist(), confidence=0.99))


# ---- bad input ---------------------------------------------------------------------------------------------


BAD = [
    ("eps", lambda m, x, y: fgsm(m, x, y, eps=-0.1)),
    ("eps", lambda m, x, y: pgd(m, x, y, eps=-1.0, step=0.1, steps=2)),
    ("steps", lambda m, x, y: pgd(m, x, y, eps=0.1, step=0.1, steps=0)),
    ("steps", lambda m, x, y: deepfool(m, x, y, steps=0)),
    ("norm", lambda m, x, y: pgd(m, x, y, eps=0.1, step=0.1, steps=2, norm="l3")),
    ("norm", lambda m, x, y: deepfool(m, x, y, norm="l1")),
    ("bounds", lambda m, x, y: fgsm(m, x, y, eps=0.1, bounds=(1.0, 0.0))),
    ("bounds", lambda m, x, y: local_search(m, x, y, bounds=(0.5, 0.5))),
    ("x", lambda m, x, y: pgd(m, x + 2.0, y, eps=0.1, step=0.1, steps=2)),
    ("x", lambda m, x, y: deepfool(m, x - 1.0, y)),
    ("y", lambda m, x, y: fgsm(m, x, y + 10, eps=0.1)),
    ("y", lambda m, x, y: local_search(m, x, y - 20)),
    ("samples", lambda m, x, y: fgsm(m, x, y, eps=0.1, samples=0)),
    ("restarts", lambda m, x, y: pgd(m, x, y, eps=0.1, step=0.1, steps=2, restarts=0)),
    ("candidates", lambda m, x, y: deepfool(m, x, y, candidates=1)),
    ("overshoot", lambda m, x, y: deepfool(m, x, y, overshoot=-0.1)),
    ("r", lambda m, x, y: local_search(m, x, y, r=2.5)),
    ("x", lambda m, x, y: local_search(m, x.flatten(1), y)),
    ("select", lambda m, x, y: local_search(m, x, y, select="median")),
    ("max_eps", lambda m, x, y: fgsm_minimal(m, x, y, max_eps=0.0)),
]


@pytest.mark.parametrize(("argument", "call"), BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_raises_naming_the_argument(plain_digits_mlp, digits, argument: str, call) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu", 4)
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        call(plain_digits_mlp, x, y)


def test_numpy_labels_and_non_modules_are_rejected(plain_digits_mlp, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(digits, "cpu", 4)
    with pytest.raises(TypeError, match="y"):
        fgsm(plain_digits_mlp, x, np.asarray(y), eps=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        pgd(lambda v: v, x, y, eps=0.1, step=0.1, steps=1)  # type: ignore[arg-type]
