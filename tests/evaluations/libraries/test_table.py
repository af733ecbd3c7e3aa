"""How each library runs each attack: coverage, reasons, attack checks, bit-parity with in-house."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.evaluations.libraries import (
    ESTIMATORS,
    FGSM,
    LIBRARIES,
    PGD,
    Attack,
    DeepFool,
    FGSMMinimal,
    LocalSearch,
    Runner,
    get,
    make,
    names,
    run,
    run_inhouse,
    unsupported,
    wrap,
)

EPS, STEP, STEPS = 0.1, 0.01, 5
INHOUSE = ("fgsm", "fgsm-minimal", "bim", "pgd", "deepfool", "localsearch", "pgd-rs")  # the papers' attacks


def _attack(name: str, **kw: Any) -> Attack:
    return make(name, **({"eps": EPS} if get(name).takes_eps else {}), **kw)


def _moving(name: str, **kw: Any) -> Attack:
    """FGSM, or an iterative attack of ``STEPS`` steps of ``STEP``."""
    return FGSM(eps=EPS, **kw) if name == "fgsm" else make(name, eps=EPS, step=STEP, steps=STEPS, **kw)


@pytest.fixture(scope="module")
def tiny(digits) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """An untrained deterministic 64-16-10 MLP and 32 held-out digits."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    return model, digits.x_test[:32], digits.y_test[:32]


def test_every_attack_has_an_entry_for_every_library() -> None:
    assert {get(attack).name for attack in names()} == set(names())  # (was: the table's rows are the attacks)
    assert set(ESTIMATORS) == set(LIBRARIES)
    for attack in names():
        row = get(attack).runners
        assert set(row) == set(LIBRARIES), attack
        # every attack of the papers is written in-house; the stronger ones are the libraries' own
        assert isinstance(row["inhouse"], Runner) == (attack in INHOUSE)
        for library, entry in row.items():
            assert isinstance(entry, Runner) or (isinstance(entry, str) and entry.strip()), (attack, library)
            if isinstance(entry, Runner):
                assert all(reason.strip() for _, reason in entry.limits), (attack, library)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("attack", names())
def test_unsupported_agrees_with_the_table(attack: str, library: str) -> None:
    entry = get(attack).runners[library]
    reason = unsupported(library, _attack(attack, norm="l2" if attack == "deepfool" else "linf"))
    assert reason == (entry if isinstance(entry, str) else None)


@pytest.mark.parametrize(
    ("library", "attack", "words"),
    [
        ("foolbox", FGSM(eps=EPS, targeted=True), "targeted"),
        ("art", DeepFool(norm="linf"), "L2 only"),
        ("torchattacks", DeepFool(norm="linf"), "L2 only"),
        ("torchattacks", PGD(eps=EPS, bounds=(-1.0, 1.0)), "[0, 1]"),
        ("art", make("bim", eps=EPS, norm="l2"), "L-inf only"),
        ("art", FGSMMinimal(refine=True), "refinement"),
        ("foolbox", LocalSearch(), "none of the three"),
    ],
)
def test_attack_dependent_limits_give_their_reason(library: str, attack: Attack, words: str) -> None:
    reason = unsupported(library, attack)
    assert reason is not None and words in reason
    assert unsupported("inhouse", attack) is None
    with pytest.raises(ValueError, match="cannot run"):
        run(library, attack, nn.Linear(4, 2), torch.rand(2, 4), torch.tensor([0, 1]), num_classes=2)


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
        ({"attack": "deepfool", "eps": 0.1}, "eps"),  # no fixed radius
        ({"attack": "fgsm", "eps": 0.1, "steps": 3}, "steps"),  # not a setting of FGSM
    ],
)
def test_bad_attack_raises_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    settings = dict(kwargs)
    name = settings.pop("attack")
    with pytest.raises((ValueError, TypeError), match=argument):
        make(name, **settings)


def test_attack_is_frozen_and_keyword_only() -> None:
    attack = PGD(eps=EPS, steps=4)
    assert attack.step_size == pytest.approx(2.5 * EPS / 4)
    with pytest.raises(AttributeError):
        attack.eps = 0.2  # type: ignore[misc]
    with pytest.raises(TypeError):
        PGD(EPS)  # type: ignore[misc]
    with pytest.raises(ValueError, match="library"):
        unsupported("cleverhans", attack)


def test_native_wrappers_attack_one_draw_only(tiny) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = tiny
    with pytest.raises(ValueError, match="samples"):
        wrap("foolbox", FGSM(eps=EPS, samples=4), model, x, num_classes=10, native=True)


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("native", [True, False], ids=["native", "adapter"])
def test_bit_identical_with_inhouse_on_a_deterministic_model(tiny, library: str, attack: str, native: bool) -> None:  # type: ignore[no-untyped-def]
    model, x, y = tiny
    chosen = _moving(attack, samples=1)
    ours = run_inhouse(chosen, model, x, y).x_adv
    theirs = run(library, chosen, model, x, y, num_classes=10, native=native)
    assert theirs.dtype == x.dtype and theirs.device == x.device
    assert not torch.equal(ours, x)  # the attack moved the inputs
    assert torch.equal(theirs, ours)
    assert torch.equal(run("inhouse", chosen, model, x, y, num_classes=10), ours)


def test_zero_eps_returns_the_inputs(tiny) -> None:  # type: ignore[no-untyped-def]
    model, x, y = tiny
    x_adv = run("art", PGD(eps=0.0), model, x, y, num_classes=10)
    assert torch.equal(x_adv, x) and x_adv is not x


def test_importing_the_table_imports_no_attack_library() -> None:
    code = (
        "import sys, stochdef.evaluations.libraries\n"
        "print(sorted(m for m in ('foolbox', 'art', 'torchattacks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
