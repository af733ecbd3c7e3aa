"""``--converge``: the strongest attack's steps double until the worst case settles; its cells are keyed by their
budget, join the headline worst case, and the report and the card say where it converged. ``auto`` converges only a
defense whose attack-failure indicators fired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from stochdef.evaluations.evaluate import EvalConfig, IndicatorCell, evaluate
from stochdef.evaluations.evaluate.converge import settled, to_converge
from stochdef.evaluations.evaluate.outputs.model_card import card
from stochdef.evaluations.evaluate.outputs.report import markdown
from stochdef.evaluations.evaluate.outputs.worst_case import summary
from stochdef.evaluations.evaluate.store.budgets import read, report_lines
from stochdef.evaluations.evaluate.store.results import ResultsFile


def test_converging_doubles_the_strongest_attack_and_its_cells_join_the_worst_case(
    tmp_path: Path, digits, plain_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:50], digits.y_test[:50]
    config = EvalConfig(
        dataset="digits", defenses=("plain",), attacks=("fgsm", "pgd"), libraries=("inhouse",), eps=(0.1,),
        samples=(1,), n=50, steps=1, judge_samples=1, indicators=False, transfer=False, source="t", converge="all",
    )  # fmt: skip
    done = evaluate(config, out=tmp_path, models={"plain": plain_digits_mlp}, x=x, y=y, progress=False)
    data = read(tmp_path)
    assert data is not None
    entry = data["defenses"]["plain"]
    assert entry["attack"] == "pgd/inhouse"  # FGSM takes no steps: never doubled
    steps = [p["steps"] for p in entry["curve"]]
    assert steps == [1, 2, 4, 8][: len(steps)] and len(steps) >= 2
    accuracy = [p["robust_accuracy"] for p in entry["curve"]]
    assert accuracy == sorted(accuracy, reverse=True)  # the AND over more cells never rises
    assert entry["converged"] == settled([(p["steps"], 1, p["robust_accuracy"], p["half_width"])
                                          for p in entry["curve"]])  # fmt: skip
    doubled = [r for r in done.store if r["kind"] == "attack" and r["steps"] > 1]
    assert sorted(r["steps"] for r in doubled) == steps[1:]
    worst = summary(done.store, done.config, "plain", 0.1)
    assert worst is not None and worst["robust_accuracy"] == pytest.approx(accuracy[-1])
    the_card = card(done.store, done.config, "plain", tmp_path)
    assert the_card["budget"]["verdict"].startswith("converged at" if entry["converged"] else "not converged")
    assert the_card["budget"]["verdict"] in "\n".join(report_lines(tmp_path))
    assert "pgd" in markdown(done.store, done.config)


def test_auto_converges_only_a_defense_whose_attack_failure_indicators_fired(tmp_path: Path) -> None:
    c = EvalConfig(defenses=("a", "b", "c"), converge="auto")
    store = ResultsFile(tmp_path / "r.jsonl")
    fired = {"a": "incomplete_optimization", "b": "transfer_failure", "c": "unstable_predictions[EoT 8]"}
    for d, name in fired.items():
        indicator = {"name": name, "fired": True, "source": "s", "value": 1.0, "threshold": 0.0, "detail": ""}
        store.add({"key": IndicatorCell.of(c, d).key, "kind": "indicators", "indicators": [indicator]})
    assert to_converge(store, c) == ["a"]
    assert to_converge(store, EvalConfig(defenses=("a", "b"), converge="off")) == []
    assert to_converge(store, EvalConfig(defenses=("a", "b"), converge="all")) == ["a", "b"]
    with pytest.raises(ValueError, match="converge"):
        EvalConfig(converge="yes")
    assert json.dumps(read(tmp_path)) == "null"  # nothing converged here: no budgets.json
