"""The registry of attacks: discovered, unique, complete per library; what an evaluate cell asks of an attack
(its grid construction, key and record fields, cost) against the rules the evaluation applied before attacks
were objects (written out here as the reference)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from stochdef.evaluations.libraries import (
    APGDCE,
    DEFAULT_ATTACKS,
    FGSM,
    LIBRARIES,
    PGD,
    AutoAttackRand,
    Runner,
    Square,
    estimator,
    get,
    make,
    names,
)
from stochdef.evaluations.libraries.registry import discover

# the names before attacks were objects (libraries/spec.py's ATTACKS and EVAL_ATTACKS); new attacks come after
BEFORE = ("fgsm", "fgsm-minimal", "bim", "pgd", "deepfool", "localsearch", "pgd-rs", "apgd-ce", "apgd-dlr", "square",
          "autoattack-rand")  # fmt: skip
EVAL_BEFORE = ("fgsm", "pgd", "pgd-rs", "apgd-ce", "apgd-dlr", "square", "autoattack-rand")
RESTART_BEFORE = ("pgd-rs", "apgd-ce", "apgd-dlr", "square")
GRID: dict[str, Any] = {"eps": 0.1, "samples": 3, "bounds": (0.0, 1.0), "steps": 7, "restarts": 4, "queries": 11}


def test_names_are_unique_in_registry_order_and_each_class_knows_its_own() -> None:
    assert len(set(names())) == len(names())
    assert names()[: len(BEFORE)] == BEFORE
    assert all(get(name).name == name for name in names())
    assert DEFAULT_ATTACKS == ("fgsm", "pgd", "apgd-ce")
    with pytest.raises(ValueError, match="attack must be one of .*'fgsm'"):
        get("cw")


def test_every_attack_has_a_runner_or_a_reason_for_every_library() -> None:
    for name in names():
        runners = get(name).runners
        assert tuple(runners) == LIBRARIES, name
        assert all(isinstance(e, Runner) or (isinstance(e, str) and e.strip()) for e in runners.values()), name
        assert any(isinstance(e, Runner) for e in runners.values()), name  # some library runs it


def test_the_attacks_evaluate_may_run_are_those_marked_so() -> None:
    assert names(evaluate=True) == tuple(name for name in names() if get(name).in_evaluate)
    assert names(evaluate=True)[: len(EVAL_BEFORE)] == EVAL_BEFORE
    assert set(DEFAULT_ATTACKS) <= set(names(evaluate=True))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", names(evaluate=True))
def test_for_grid_passes_only_the_options_the_class_takes(name: str, norm: str) -> None:
    cls = get(name)
    attack = cls.for_grid(norm=norm, **GRID)
    if norm not in cls.norms:
        assert isinstance(attack, str) and attack.strip()
        return
    assert not isinstance(attack, str)
    settings = attack.settings()
    assert (settings["eps"], settings["samples"], settings["norm"]) == (0.1, 3, norm)
    assert (settings.get("steps") == 7) == cls.takes_steps
    assert (settings.get("restarts") == 4) == cls.takes_restarts
    assert (settings.get("queries") == 11) == cls.takes_queries


def test_fgsm_has_no_l2_cell_and_says_why() -> None:
    assert FGSM.for_grid(norm="l2", **GRID) == "FGSM is L-inf only (the sign step)"


def _spec_extras(attack: str, norm: str, restarts: int, queries: int) -> dict[str, Any]:
    """evaluate/run.py's ``spec_extras`` before attacks were objects."""
    extra: dict[str, Any] = {}
    if norm != "linf":
        extra["norm"] = norm
    if restarts != 1:
        extra["restarts"] = restarts
    if attack == "square":
        extra["queries"] = queries
    return extra


def _run_spec_fields(attack: str, norm: str, restarts: int, queries: int) -> dict[str, Any]:
    """evaluate/engine.py's ``run_spec_fields`` before attacks were objects."""
    fields: dict[str, Any] = {}
    if norm != "linf":
        fields["norm"] = norm
    if restarts != 1 or attack in RESTART_BEFORE:
        fields["restarts"] = restarts
    if attack == "square":
        fields["queries"] = queries
    return fields


@pytest.mark.parametrize("restarts", [1, 3])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", EVAL_BEFORE)
def test_key_and_record_fields_are_those_of_the_evaluation_before(name: str, norm: str, restarts: int) -> None:
    attack = get(name).for_grid(**{**GRID, "restarts": restarts, "norm": norm})
    if isinstance(attack, str):
        return
    kept = restarts if name in RESTART_BEFORE else 1  # the grid gave restarts to the restarting attacks only
    assert attack.key_fields() == _spec_extras(name, norm, kept, GRID["queries"])
    assert attack.record_fields() == _run_spec_fields(name, norm, kept, GRID["queries"])


def test_passes_count_gradients_draws_restarts_and_queries() -> None:
    # evaluate/schedule.py's attack_passes before: 3 passes per gradient per draw (FGSM 1 gradient, PGD steps)
    assert FGSM(eps=0.1, samples=8).passes(10) == 24.0
    assert PGD(eps=0.1, steps=10, samples=8).passes(10) == 240.0
    assert APGDCE(eps=0.1, steps=10, samples=8, restarts=2).passes(10) == 480.0
    assert Square(eps=0.1, queries=300, restarts=2, samples=4).passes(10) == 2400.0  # forwards only
    assert AutoAttackRand(eps=0.1).passes(10) == 2 * 3 * 10 * 20  # APGD-CE + APGD-DLR, 10 steps of 20 draws


def test_estimators_name_what_each_attack_differentiates() -> None:
    assert estimator("art", PGD(eps=0.1)) == "one draw per gradient (naive)"
    assert estimator("foolbox", PGD(eps=0.1, samples=4)) == "gradient of the mean logits (EoT module)"
    assert estimator("art", make("apgd-dlr", eps=0.1, samples=4)).startswith("gradient of the mean logits")
    assert estimator("torchattacks", Square(eps=0.1)) == "no gradient: scores of one draw"
    assert "eot_iter=20" in estimator("torchattacks", AutoAttackRand(eps=0.1))


def test_make_names_a_setting_the_attack_does_not_take() -> None:
    with pytest.raises(ValueError, match="queries is not a setting of pgd"):
        make("pgd", eps=0.1, queries=10)
    assert make("square", eps=0.1, queries=10) == Square(eps=0.1, queries=10)


ATTACK_MODULE = """
from dataclasses import dataclass
from stochdef.evaluations.libraries.base import Attack

@dataclass(frozen=True, kw_only=True)
class Made(Attack):
    name = "{name}"
    rank = 0
    runners = {{"inhouse": "none", "foolbox": "none", "art": "none", "torchattacks": "none", "autoattack": "none"}}
"""


def _package(root: Path, package: str, modules: dict[str, str]) -> None:
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    for module, name in modules.items():
        (root / package / f"{module}.py").write_text(ATTACK_MODULE.format(name=name))


def test_discovery_finds_every_module_and_a_duplicate_name_names_both_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "fine_attacks", {"one": "alpha", "two": "beta", "_helper": "gamma"})
    assert list(discover("fine_attacks")) == ["alpha", "beta"]  # modules starting with _ are skipped
    _package(tmp_path, "twice_attacks", {"one": "same", "two": "same"})
    with pytest.raises(ValueError, match=r"'same' is defined twice: twice_attacks\.one\.Made and twice_attacks\.two"):
        discover("twice_attacks")
    for module in [m for m in sys.modules if m.split(".")[0] in ("fine_attacks", "twice_attacks")]:
        monkeypatch.delitem(sys.modules, module)
