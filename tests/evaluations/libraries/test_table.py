"""The table of how each library runs each attack: coverage, reasons, spec checks, bit-parity with in-house."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.evaluations.libraries import (
    ATTACKS,
    EPS_ATTACKS,
    ESTIMATORS,
    LIBRARIES,
    TABLE,
    AttackSpec,
    Runner,
    run,
    run_inhouse,
    unsupported,
    wrap,
)

EPS, STEP, STEPS = 0.1, 0.01, 5


def _spec(attack: str, **kw: Any) -> AttackSpec:
    return AttackSpec(attack, EPS if attack in EPS_ATTACKS else None, **kw)


@pytest.fixture(scope="module")
def tiny(digits) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """An untrained deterministic 64-16-10 MLP and 32 held-out digits."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    return model, digits.x_test[:32], digits.y_test[:32]


def test_every_attack_has_an_entry_for_every_library() -> None:
    assert set(TABLE) == set(ATTACKS)
    assert set(ESTIMATORS) == set(LIBRARIES)
    for attack, row in TABLE.items():
        assert set(row) == set(LIBRARIES), attack
        # every attack of the papers is written in-house; the stronger ones are the libraries' own
        assert isinstance(row["inhouse"], Runner) == (
            attack not in ("apgd-ce", "apgd-dlr", "square", "autoattack-rand")
        )
        for library, entry in row.items():
            assert isinstance(entry, Runner) or (isinstance(entry, str) and entry.strip()), (attack, library)
            if isinstance(entry, Runner):
                assert all(reason.strip() for _, reason in entry.limits), (attack, library)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("attack", ATTACKS)
def test_unsupported_agrees_with_the_table(attack: str, library: str) -> None:
    entry = TABLE[attack][library]
    reason = unsupported(library, _spec(attack, norm="l2" if attack == "deepfool" else "linf"))
    assert reason == (entry if isinstance(entry, str) else None)


@pytest.mark.parametrize(
    ("library", "spec", "words"),
    [
        ("foolbox", AttackSpec("fgsm", EPS, targeted=True), "targeted"),
        ("art", AttackSpec("deepfool", norm="linf"), "L2 only"),
        ("torchattacks", AttackSpec("deepfool", norm="linf"), "L2 only"),
        ("torchattacks", AttackSpec("pgd", EPS, bounds=(-1.0, 1.0)), "[0, 1]"),
        ("art", AttackSpec("bim", EPS, norm="l2"), "L-inf only"),
        ("art", AttackSpec("fgsm-minimal", refine=True), "refinement"),
        ("foolbox", AttackSpec("localsearch"), "none of the three"),
    ],
)
def test_spec_dependent_limits_give_their_reason(library: str, spec: AttackSpec, words: str) -> None:
    reason = unsupported(library, spec)
    assert reason is not None and words in reason
    assert unsupported("inhouse", spec) is None
    with pytest.raises(ValueError, match="cannot run"):
        run(library, spec, nn.Linear(4, 2), torch.rand(2, 4), torch.tensor([0, 1]), num_classes=2)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"attack": "cw", "eps": 0.1}, "attack"),
        ({"attack": "pgd"}, "eps"),
        ({"attack": "pgd", "eps": -0.1}, "eps"),
        ({"attack": "pgd", "eps": 0.1, "norm": "l1"}, "norm"),
        ({"attack": "fgsm", "eps": 0.1, "norm": "l2"}, "norm"),
        ({"attack": "pgd", "eps": 0.1, "steps": 0}, "steps"),
        ({"attack": "pgd", "eps": 0.1, "step": -1.0}, "step"),
        ({"attack": "pgd", "eps": 0.1, "targeted": 1}, "targeted"),
        ({"attack": "deepfool", "targeted": True}, "targeted"),
        ({"attack": "pgd", "eps": 0.1, "samples": 0}, "samples"),
        ({"attack": "pgd", "eps": 0.1, "bounds": (1.0, 0.0)}, "bounds"),
        ({"attack": "deepfool", "overshoot": -0.5}, "overshoot"),
        ({"attack": "deepfool", "candidates": 1}, "candidates"),
        ({"attack": "fgsm-minimal", "epsilons": 0}, "epsilons"),
        ({"attack": "fgsm-minimal", "max_eps": 0.0}, "max_eps"),
        ({"attack": "localsearch", "rounds": 0}, "rounds"),
        ({"attack": "localsearch", "select": "middle"}, "select"),
    ],
)
def test_bad_spec_raises_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises((ValueError, TypeError), match=argument):
        AttackSpec(**kwargs)


def test_spec_is_frozen_and_keyword_only_after_eps() -> None:
    spec = AttackSpec("pgd", EPS, steps=4)
    assert spec.step_size == pytest.approx(2.5 * EPS / 4)
    with pytest.raises(AttributeError):
        spec.eps = 0.2  # type: ignore[misc]
    with pytest.raises(TypeError):
        AttackSpec("pgd", EPS, "l2")  # type: ignore[misc]
    with pytest.raises(ValueError, match="library"):
        unsupported("cleverhans", spec)


def test_native_wrappers_attack_one_draw_only(tiny) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = tiny
    with pytest.raises(ValueError, match="samples"):
        wrap("foolbox", AttackSpec("fgsm", EPS, samples=4), model, x, num_classes=10, native=True)


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("native", [True, False], ids=["native", "adapter"])
def test_bit_identical_with_inhouse_on_a_deterministic_model(tiny, library: str, attack: str, native: bool) -> None:  # type: ignore[no-untyped-def]
    model, x, y = tiny
    spec = AttackSpec(attack, EPS, step=STEP, steps=STEPS, samples=1)
    ours = run_inhouse(spec, model, x, y).x_adv
    theirs = run(library, spec, model, x, y, num_classes=10, native=native)
    assert theirs.dtype == x.dtype and theirs.device == x.device
    assert not torch.equal(ours, x)  # the attack moved the inputs
    assert torch.equal(theirs, ours)
    assert torch.equal(run("inhouse", spec, model, x, y, num_classes=10), ours)


def test_zero_eps_returns_the_inputs(tiny) -> None:  # type: ignore[no-untyped-def]
    model, x, y = tiny
    x_adv = run("art", AttackSpec("pgd", 0.0), model, x, y, num_classes=10)
    assert torch.equal(x_adv, x) and x_adv is not x


def test_importing_the_table_imports_no_attack_library() -> None:
    code = (
        "import sys, stochdef.evaluations.libraries\n"
        "print(sorted(m for m in ('foolbox', 'art', 'torchattacks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
