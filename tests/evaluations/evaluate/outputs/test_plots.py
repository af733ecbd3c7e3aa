"""The plots and the report read a finished store right: the worst case over attacks and libraries, deterministic
defenses named, indicator columns merged, the model's own confidence in calibration, no "-0.00"."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, IndicatorCell, TransferCell
from stochdef.evaluations.evaluate.compute.judge import Judge, output_kind
from stochdef.evaluations.evaluate.outputs import plots
from stochdef.evaluations.evaluate.outputs.report import markdown, transfer_section
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.stats import wilson_interval

C = EvalConfig(
    defenses=("plain", "noisy"),
    attacks=("fgsm", "pgd"),
    libraries=("inhouse", "art"),
    eps=(0.1, 0.2),
    samples=(1, 4, 16),
    n=50,
)
BINS = {"count": [0] * 9 + [50], "correct": [0.0] * 9 + [40.0], "confidence": [0.0] * 9 + [47.5], "output": "logits"}


def _acc(hits: int) -> dict[str, Any]:
    ci = list(wilson_interval(hits, C.n))
    return {"acc_ensemble": hits / C.n, "acc_ensemble_ci": ci, "acc_single": hits / C.n, "acc_single_ci": ci}


def _accuracy(defense: str, library: str, attack: str, eps: float, samples: int) -> int:
    """A made-up number of correct points, different for every cell."""
    return int(
        40 - 60 * eps - 3 * math.log2(samples) * (defense == "noisy") - 2 * (attack == "pgd") - (library == "art")
    )


@pytest.fixture
def store(tmp_path: Path) -> ResultsFile:
    s = ResultsFile(tmp_path / "results.jsonl")
    for d in C.defenses:
        s.add({"key": CleanCell.of(C, d).key, "kind": "clean", "defense": d, "random": d == "noisy", **_acc(45)})
        for attack in C.attacks:
            for eps in C.eps:
                for samples in C.samples:
                    for lib in C.libraries:
                        key = AttackCell.of(C, d, lib, C.attack(attack, eps, samples)).key  # type: ignore[arg-type]
                        if samples > 1 and d == "plain":
                            s.add({"key": key, "kind": "attack", "skipped": "deterministic defense"})
                        else:
                            hits = _accuracy(d, lib, attack, eps, samples)
                            s.add({"key": key, "kind": "attack", "calibration": BINS, **_acc(hits)})
        indicators = [
            {"name": "randomized", "source": "AutoAttack", "fired": d == "noisy", "value": 0.5, "threshold": 1e-4,
             "detail": "..."},
            {"name": f"unstable_predictions[EoT {16 if d == 'noisy' else 1}]", "source": "Pintor et al. 2022",
             "fired": False, "value": 0.0, "threshold": 0.0, "detail": "the attack succeeded on every point"},
        ]  # fmt: skip
        s.add({"key": IndicatorCell.of(C, d).key, "kind": "indicators", "defense": d, "indicators": indicators})
    # rho(noisy -> plain) slightly negative: plain is a little *more* accurate on noisy's examples than clean
    for a, b, acc in [("plain", "plain", 5), ("noisy", "noisy", 5), ("plain", "noisy", 20), ("noisy", "plain", 45)]:
        s.add(
            {
                "key": TransferCell.of(C, a, b).key,
                "kind": "transfer",
                **_acc(acc),
                **({"acc_ensemble": 0.903} if a == "noisy" and b == "plain" else {}),
            }
        )
    return s


def test_worst_case_is_the_lowest_over_attacks_and_libraries(store: ResultsFile) -> None:
    for d in C.defenses:
        for eps in C.eps:
            for samples in C.samples:
                record = plots.worst_case(store, C, d, eps, samples)
                if d == "plain" and samples > 1:
                    assert record is None  # every such cell was skipped
                    continue
                brute = min(_accuracy(d, lib, a, eps, samples) for lib in C.libraries for a in C.attacks)
                assert record is not None and record["acc_ensemble"] == brute / C.n


def test_samples_curve_and_deterministic_defenses(store: ResultsFile) -> None:
    assert plots.deterministic_defenses(store, C) == ["plain"]
    curve = plots.samples_curve(store, C, "noisy", "pgd", 0.1)
    assert [r["acc_ensemble"] for r in curve] == [
        min(_accuracy("noisy", lib, "pgd", 0.1, s) for lib in C.libraries) / C.n for s in sorted(C.samples)
    ]


def test_indicator_grid_merges_eot_columns_and_marks_not_applicable(store: ResultsFile) -> None:
    rows, names, state, text = plots.indicator_grid(store, C)
    assert rows == ["plain", "noisy"]
    assert names == ["randomized", "unstable_predictions[EoT]"]
    assert state[0, 0] == 0 and state[1, 0] == 1
    assert math.isnan(state[0, 1]) and text[1][1] == "n/a"


def test_every_plot_is_written_and_the_report_names_its_question(store: ResultsFile, tmp_path: Path) -> None:
    names = plots.all_plots(store, C, tmp_path)
    expected = ["accuracy_vs_eps.png", "accuracy_vs_samples.png", "indicators.png", "calibration.png"]
    assert names == [*expected, "transfer_matrix.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown(store, C, plots=names)
    assert "Does averaging more draws per gradient make the attack stronger?" in text


def test_transfer_table_prints_no_negative_zero(store: ResultsFile) -> None:
    table = "\n".join(transfer_section(store, C))
    # rho(noisy -> plain) = (0.90 - 0.903) / (0.90 - 0.10) = -0.004: printed unsigned
    assert "-0.00" not in table
    assert "| noisy | 0.00 | 1.00 |" in table


class _Scores(nn.Module):
    """Per-class scores in [0, 1] from a sigmoid, as an MWD or sigmoid-output net gives."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_calibration_uses_the_models_own_confidence() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    scores, logits = _Scores().eval(), nn.Linear(4, 3).eval()
    assert (output_kind(scores), output_kind(logits)) == ("scores", "logits")
    for model, reference in ((scores, scores(x)), (logits, logits(x).softmax(1))):
        bins = Judge(model, samples=1)(x, y)["calibration"]
        confidence, pred = reference.detach().max(1)
        assert bins["output"] == output_kind(model)
        assert sum(bins["count"]) == len(x)
        assert sum(bins["confidence"]) == pytest.approx(float(confidence.sum()), rel=1e-5)
        assert sum(bins["correct"]) == int((pred == y).sum())


def test_the_mwd_net_reports_scores() -> None:
    from stochdef.defenses import zoo

    assert output_kind(zoo.build("mwd-256")) == "scores"
    assert output_kind(zoo.build("sigmoid-256")) == "scores"
    assert output_kind(zoo.build("relu-256")) == "logits"
