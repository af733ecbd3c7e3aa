"""``stochdef reproduce``: every target runs at reduced size, writes its report, and its numbers are consistent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stochdef.evaluations import reproduce
from stochdef.evaluations.reproduce import Reproduction
from stochdef.evaluations.reproduce import sdr as sdr_reproduction


@pytest.fixture(scope="module", params=sorted(reproduce.TARGETS))
def quick(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Reproduction, Path]:
    out = tmp_path_factory.mktemp(request.param)
    return reproduce.run(request.param, quick=True, out=out), out


def test_quick_run_is_a_labelled_smoke_test_without_the_paper(quick: tuple[Reproduction, Path]) -> None:
    result, out = quick
    report = (out / "report.md").read_text()
    assert result.smoke and reproduce.SMOKE_LABEL in report and result.reading in report
    for table in result.tables:  # nothing of the paper's is set beside a smoke test's numbers
        assert not table.title.lower().startswith("paper"), table.title
        assert not any(reproduce.is_paper_column(c) for c in table.columns), table.columns
    data = json.loads((out / "results.json").read_text())
    assert data["target"] == result.target and data["smoke"] is True and "paper" not in data["data"]
    for plot in result.plots:
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
        assert f"({plot})" in report


def test_tables_are_well_formed(quick: tuple[Reproduction, Path]) -> None:
    result, _ = quick
    for table in result.tables:
        assert table.rows, table.title
        assert all(len(row) == len(table.columns) for row in table.rows), table.title
        accuracy = [i for i, c in enumerate(table.columns) if "median" not in c and "sd" not in c][1:]
        for row in table.rows:
            for i in accuracy:
                v = row[i]
                if isinstance(v, float) and not math.isnan(v):
                    assert -1.0 <= v <= 100.0, (table.title, table.columns[i], v)


def _deterministic_eot_equals_naive(result: Reproduction) -> None:
    if result.target == "sdr":  # vanilla-mlp is deterministic: averaging draws cannot change the attack
        for attack in ("FGSM", "DeepFool", "LocalSearch"):
            m = result.data["measured"][attack]
            assert m["naive"][0] == m["eot"][0]
            # deterministic: a point some test found misclassified stays so, so the two counting rules agree
            assert m["failed_naive"][0] == m["naive"][0] and m["failed_eot"][0] == m["eot"][0]
    elif result.target == "sap":
        curves = result.data["mnist5k"]["curves"]
        fgsm_mc = next(k for k in curves if k.startswith("dense, fgsm (") and not k.endswith("(1)"))
        assert curves["dense, fgsm (1)"] == curves[fgsm_mc]
    elif result.target == "advbnn":
        c = result.data["curves"]["vanilla-cnn"]
        assert c["protocol"] == c["eot"]
        assert result.data["rho"]["vanilla-cnn"]["vanilla-cnn"] == pytest.approx(1.0)


def test_consistency(quick: tuple[Reproduction, Path]) -> None:
    """Invariants each reproduction must satisfy whatever the model quality."""
    result, _ = quick
    _deterministic_eot_equals_naive(result)
    if result.target == "sdr":  # the per-example sizes behind the plot are those the medians were taken of
        models = sdr_reproduction.MODELS
        for attack in ("FGSM", "DeepFool"):
            for label in ("naive", "eot"):
                for i, name in enumerate(models):
                    sizes = sorted(result.data["sizes"][attack][f"{name}, {label}"])
                    median = result.data["measured"][attack][f"size_{label}"][i]
                    if not sizes:
                        assert math.isnan(median)
                        continue
                    assert sizes[(len(sizes) - 1) // 2] == pytest.approx(median, abs=1e-5)  # torch's lower median
        assert "perturbation_norms.png" in result.plots
    if result.target == "mwd":  # a certificate is a lower bound: no attack may beat it
        fig = result.data["figure2"]
        for certified, upper in zip(fig["mwd"]["certified"], fig["mwd"]["upper"], strict=True):
            assert certified <= upper
        assert all(c <= fig["mwd"]["clean"] for c in fig["mwd"]["certified"])
    if result.target == "noise":  # Theorem 2's guarantee: below the accuracy, non-increasing in the radius
        for row in result.data["sweep"]:
            guaranteed = row["curves"]["l2"]["guaranteed"]
            assert all(g <= row["accuracy"] + 1e-12 for g in guaranteed)
            assert all(b <= a + 1e-12 for a, b in zip(guaranteed, guaranteed[1:], strict=False))
