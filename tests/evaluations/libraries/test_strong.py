"""The stronger attacks of the table: APGD-CE/DLR, Square, PGD with restarts, AutoAttack-rand; L2 and L-inf.

Statistical comparisons use ``stats.two_proportion_tolerance`` (z = 4, a false failure ~1e-4 per check at
worst, DESIGN.md "Testing"); the rest are exact properties of the adversarial batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from stochdef.adapters import EoT
from stochdef.evaluations.libraries import (
    APGDCE,
    DEFAULT_LIBRARIES,
    LIBRARIES,
    PGD,
    PGDRS,
    Attack,
    Runner,
    Square,
    estimator,
    get,
    make,
    restarted,
    run,
    unsupported,
)
from stochdef.evaluations.stats import two_proportion_tolerance

NEW = ("pgd-rs", "apgd-ce", "apgd-dlr", "square", "autoattack-rand")


def _offering(attack: str) -> list[str]:
    return [lib for lib in LIBRARIES if isinstance(get(attack).runners[lib], Runner)]


def _check_perturbation(adv: torch.Tensor, x: torch.Tensor, spec: Attack) -> None:
    assert adv.shape == x.shape and adv.dtype == x.dtype and bool(torch.isfinite(adv).all())
    assert float(adv.min()) >= spec.bounds[0] - 1e-6 and float(adv.max()) <= spec.bounds[1] + 1e-6
    delta = (adv - x).flatten(1)
    size = delta.abs().max(dim=1).values if spec.norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= spec.radius * (1 + 1e-4) + 1e-6


def _ensemble_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((EoT(model, samples=32, reduce="probs")(x).argmax(1) == y).sum())


def test_every_library_has_an_entry_or_a_reason_for_the_new_attacks() -> None:
    for attack in NEW:
        assert set(get(attack).runners) == set(LIBRARIES)
        assert _offering(attack), attack  # at least one library runs it
    assert _offering("square") == ["art", "torchattacks"]
    assert _offering("apgd-ce") == ["art", "torchattacks", "autoattack"] == _offering("apgd-dlr")
    assert _offering("autoattack-rand") == ["torchattacks", "autoattack"]  # the port and Croce & Hein's own
    assert _offering("pgd-rs") == list(DEFAULT_LIBRARIES)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", NEW)
def test_each_library_attack_stays_in_the_ball_and_fools_a_trained_model(
    attack: str, norm: str, plain_digits_mlp: nn.Module, digits: Any
) -> None:
    x, y = digits.x_test[:48], digits.y_test[:48]
    eps = 0.3 if norm == "linf" else 3.0
    restarts = 2 if attack in ("pgd-rs", "apgd-ce", "square") else 1
    spec = get(attack).for_grid(
        eps=eps, samples=1, norm=norm, bounds=(0.0, 1.0), steps=10, restarts=restarts, queries=300
    )  # fmt: skip
    assert isinstance(spec, Attack), spec
    ran = 0
    for library in _offering(attack):
        if unsupported(library, spec) is not None:
            continue
        torch.manual_seed(0)
        adv = run(library, spec, plain_digits_mlp, x, y, num_classes=10)
        _check_perturbation(adv, x, spec)
        clean, robust = _ensemble_correct(plain_digits_mlp, x, y), _ensemble_correct(plain_digits_mlp, adv, y)
        # a large radius on an undefended MLP: every one of these attacks breaks most examples
        assert robust < clean - two_proportion_tolerance(clean, len(x), robust, len(x)), (library, clean, robust)
        ran += 1
    assert ran >= 1


@pytest.mark.parametrize("library", ["art", "torchattacks"])
def test_square_runs_through_every_adapter_that_offers_it_on_a_randomized_model(
    library: str, noisy_digits_mlp: nn.Module, digits: Any
) -> None:
    x, y = digits.x_test[:48], digits.y_test[:48]
    spec = Square(eps=0.3, samples=4, queries=200)
    assert library in _offering("square")
    torch.manual_seed(1)
    adv = run(library, spec, noisy_digits_mlp, x, y, num_classes=10)
    _check_perturbation(adv, x, spec)
    assert "no gradient" in estimator(library, spec)
    clean, robust = _ensemble_correct(noisy_digits_mlp, x, y), _ensemble_correct(noisy_digits_mlp, adv, y)
    assert robust < clean - two_proportion_tolerance(clean, len(x), robust, len(x))


def test_apgd_with_eot_leaves_no_more_robust_examples_than_10_step_pgd(
    noisy_digits_mlp: nn.Module, digits: Any
) -> None:
    """On a noisy model, APGD-CE with EoT (8 draws) is at least as strong as the 10-step PGD, within noise."""
    x, y = digits.x_test[:200], digits.y_test[:200]
    eps = 0.1
    torch.manual_seed(2)
    pgd_adv = run("inhouse", PGD(eps=eps, steps=10), noisy_digits_mlp, x, y, num_classes=10)
    pgd_robust = _ensemble_correct(noisy_digits_mlp, pgd_adv, y)
    for library in _offering("apgd-ce"):
        torch.manual_seed(3)
        adv = run(library, APGDCE(eps=eps, steps=10, samples=8), noisy_digits_mlp, x, y, num_classes=10)
        robust = _ensemble_correct(noisy_digits_mlp, adv, y)
        assert robust <= pgd_robust + len(x) * two_proportion_tolerance(robust, len(x), pgd_robust, len(x)), library


def test_restarts_keep_the_first_success_per_example() -> None:
    """``restarted`` against a brute-force loop: attempt k breaks the examples of its own set only."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    x = torch.zeros(6, 3)
    y = torch.zeros(6, dtype=torch.long)
    breaks = [{0}, {1, 2}, {2, 5}]  # attempt k sets these examples to class 1
    calls: list[list[int]] = []

    class Oracle(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:  # class 1 where the first coordinate is > 0
            return torch.stack([-z[:, 0], z[:, 0]], dim=1)

    def attempt(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        k = len(calls)
        index = (xs[:, 1]).long().tolist() if k else list(range(len(xs)))
        calls.append(index)
        out = xs.clone()
        for row, i in enumerate(index):
            if i in breaks[k]:
                out[row, 0] = float(k + 1)
        return out

    x[:, 1] = torch.arange(6.0)  # example index, carried along
    out = restarted(PGDRS(eps=0.1, restarts=3), Oracle(), x, y, attempt)
    assert calls == [[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [3, 4, 5]]  # each restart only on the unbroken
    expected = {0: 1.0, 1: 2.0, 2: 2.0, 5: 3.0}  # the first attempt that broke each example
    assert out[:, 0].tolist() == [expected.get(i, 0.0) for i in range(6)]
    del net


def test_pgd_rs_starts_at_random_and_pgd_does_not(plain_digits_mlp: nn.Module, digits: Any) -> None:
    """With a negligible step PGD stays at x; pgd-rs lands at its random start, inside the ball (ART refuses 0)."""
    x, y = digits.x_test[:8], digits.y_test[:8]
    for library in ("inhouse", "foolbox", "art", "torchattacks"):
        plain = run(library, PGD(eps=0.1, step=1e-7, steps=1), plain_digits_mlp, x, y, num_classes=10)
        assert float((plain - x).abs().max()) <= 1e-6, library
        torch.manual_seed(0)
        spec = PGDRS(eps=0.1, step=1e-7, steps=1)
        rs = run(library, spec, plain_digits_mlp, x, y, num_classes=10)
        _check_perturbation(rs, x, spec)
        assert float((rs - x).abs().max()) > 0.05, library


def test_bad_specs_name_the_argument() -> None:
    with pytest.raises(TypeError, match="restarts"):
        PGD(eps=0.1, restarts=2)  # type: ignore[call-arg]  # PGD has no restarts (pgd-rs has)
    with pytest.raises(ValueError, match="restarts"):
        make("pgd", eps=0.1, restarts=2)
    with pytest.raises(ValueError, match="queries"):
        Square(eps=0.1, queries=0)
    with pytest.raises(ValueError, match="targeted"):
        APGDCE(eps=0.1, targeted=True)
    with pytest.raises(ValueError, match="eps must be given"):
        Square()
    assert "samples 1" in (unsupported("torchattacks", get("autoattack-rand")(eps=0.1, samples=4)) or "")
    assert "NaN" in (unsupported("art", Square(eps=1.0, norm="l2")) or "")
