"""The headline table marks each worst case whose defense fired an indicator and names the indicators; a defense
without fired indicators is not marked; certificates stand beside the number (a store written by hand)."""

from __future__ import annotations

from pathlib import Path

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, IndicatorCell
from stochdef.evaluations.evaluate.grid.cells import CertificateCell
from stochdef.evaluations.evaluate.outputs.bands import MARK
from stochdef.evaluations.evaluate.outputs.worst_case import section
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.libraries import FGSM

JUDGED = {"acc_single": 0.5, "acc_single_ci": [0, 1], "acc_ensemble": 0.5, "acc_ensemble_ci": [0, 1]}


def _indicator(name: str, fired: bool) -> dict[str, object]:
    return {"name": name, "fired": fired, "source": "s", "value": 0.0, "threshold": 0.0, "detail": ""}


def test_marks_name_the_fired_indicators_and_certificates_stand_beside(tmp_path: Path) -> None:
    c = EvalConfig(defenses=("a", "b"), attacks=("fgsm",), libraries=("inhouse",), eps=(0.1,), samples=(1,), n=4)
    store = ResultsFile(tmp_path / "r.jsonl")
    for d, fired in (("a", True), ("b", False)):
        store.add({"key": CleanCell.of(c, d).key, "kind": "clean", "random": False, **JUDGED, "correct": "1111"})
        cell = AttackCell.of(c, d, "inhouse", FGSM(eps=0.1))
        store.add({"key": cell.key, "kind": "attack", "defense": d, "library": "inhouse", "attack": "fgsm",
                   "samples": 1, "eps": 0.1, **JUDGED, "correct": "1100"})  # fmt: skip
        indicators = [_indicator("zero_gradients", False), _indicator("silent_success", fired)]
        store.add({"key": IndicatorCell.of(c, d).key, "kind": "indicators", "indicators": indicators})
    store.add(
        {
            "key": CertificateCell.of(c, "a", 0.1).key,
            "kind": "certificate",
            "defense": "a",
            "eps": 0.1,
            "method": "interval bounds",
            "acc_certified": 0.25,
            "acc_certified_ci": [0, 1],
            "certified": "1000",
        }
    )
    store.add({"key": CertificateCell.of(c, "b", 0.1).key, "kind": "certificate", "defense": "b", "eps": 0.1,
               "skipped": "no certificate"})  # fmt: skip
    lines = section(store, c)
    assert "| a | **0.50** [0.15, 0.85] · certified 0.25 † |" in lines
    assert "| b | **0.50** [0.15, 0.85] |" in lines
    notes = [line for line in lines if line.startswith(f"- {MARK}")]
    assert notes == [f"- {MARK} a: 1 of 2 indicators fired (silent_success; at eps 0.1): the worst case may still "
                     "overstate its robustness."]  # fmt: skip
