"""The cross-check harness: the quick CPU run passes and reproduces the parity facts; its statistics and
diagnoses against independent references; a disagreement makes the command fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.evaluations import cli, crosscheck
from stochdef.evaluations.crosscheck import checks as crosscheck_checks
from stochdef.evaluations.crosscheck import references
from stochdef.evaluations.crosscheck.checks import stall_share
from stochdef.evaluations.crosscheck.models import MODELS, ModelCase, Trained
from stochdef.evaluations.libraries import BIM


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    """``stochdef crosscheck --device cpu --quick`` (what CI runs), once for the module."""
    out = tmp_path_factory.mktemp("crosscheck")
    code = cli.main(["crosscheck", "--device", "cpu", "--quick", "--out", str(out)])
    return code, json.loads((out / "crosscheck-cpu-quick.json").read_text()), out


def _rows(report: dict[str, Any], **match: str) -> list[dict[str, Any]]:
    return [r for r in report["rows"] if all(r[k] == v for k, v in match.items())]


def test_quick_crosscheck_passes_and_writes_reports(quick_report) -> None:  # type: ignore[no-untyped-def]
    code, report, out = quick_report
    assert code == 0 and report["passed"] and report["failed"] == 0
    markdown = (out / "crosscheck-cpu-quick.md").read_text()
    assert report["device_name"] in markdown and "## Findings" in markdown
    assert report["device"] == "cpu" and report["device_name"]
    assert {"torch", "foolbox", "adversarial-robustness-toolbox", "torchattacks"} <= set(report["versions"])
    assert report["seeds"]["training"] == 0 and report["seconds"] > 0
    assert all(r["seconds"] for r in report["rows"] if r["passed"] is not None)
    assert {m["name"] for m in report["models"]} == {"mlp-digits", "noise-mlp-digits"}
    assert all(m["held_out_accuracy"] > 0.85 for m in report["models"])


def test_quick_crosscheck_reproduces_the_parity_facts(quick_report) -> None:  # type: ignore[no-untyped-def]
    _, report, _ = quick_report
    # FGSM and PGD without random start are bit-identical with every library; torchattacks' BIM within 1e-7.
    for attack in ("fgsm", "pgd", "pgd-targeted"):
        for library in ("foolbox", "art", "torchattacks"):
            (row,) = _rows(report, model="mlp-digits", attack=attack, library=library)
            assert row["details"]["bit_identical"], (attack, library)
    (bim,) = _rows(report, model="mlp-digits", attack="bim", library="torchattacks")
    assert bim["details"]["max_abs_diff"] <= 1e-7
    # DeepFool: Foolbox shares the conventions; ART lies about (1 + overshoot) further out; torchattacks
    # fails on some examples, and every one of those failures is diagnosed as the box-edge stall.
    (fool,) = _rows(report, model="mlp-digits", attack="deepfool-l2", library="foolbox")
    assert abs(fool["details"]["ratio_median"] - 1) < 1e-4 and fool["details"]["agree"] == fool["n"]
    (art,) = _rows(report, model="mlp-digits", attack="deepfool-l2", library="art")
    assert 1.0 < art["details"]["ratio_median"] <= 1.02 + crosscheck_checks.SLACK
    (ta,) = _rows(report, model="mlp-digits", attack="deepfool-l2", library="torchattacks")
    assert ta["details"]["library_failures"] > 0
    assert ta["details"]["stalled"] == ta["details"]["library_failures"]
    assert abs(ta["details"]["ratio_median"] - 1) < 0.02
    # randomized model: every library through the adapters, plus torchattacks' EOTPGD
    libraries = {r["library"] for r in _rows(report, model="noise-mlp-digits", attack="pgd")}
    assert libraries == {"foolbox", "art", "torchattacks", "torchattacks-eotpgd"}


def test_quick_crosscheck_localsearch_rows(quick_report) -> None:  # type: ignore[no-untyped-def]
    _, report, _ = quick_report
    rows = _rows(report, kind="localsearch")
    assert len(rows) == 2
    if references.import_advertorch()[0] is None:
        assert all(r["passed"] is None and "advertorch" in r["note"] for r in rows)
    else:
        assert all(r["passed"] for r in rows)


def test_disagreement_fails_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits, plain_digits_mlp
) -> None:  # type: ignore[no-untyped-def]
    trained = Trained(MODELS["mlp-digits"], plain_digits_mlp, digits, 0.95, 0.0)
    setting = crosscheck_checks.Setting("bim", BIM(eps=0.1, step=0.01, steps=5))
    x, y = digits.x_test[:32], digits.y_test[:32]
    rows = crosscheck_checks.exact_rows(trained, setting, x, y, seed=0)
    assert all(r.passed for r in rows)
    monkeypatch.setattr(crosscheck_checks, "EXACT_TOL", 1e-12)  # torchattacks' BIM is not bit-identical
    verdicts = {r.library: r.passed for r in crosscheck_checks.exact_rows(trained, setting, x, y, seed=0)}
    assert verdicts == {"foolbox": True, "art": True, "torchattacks": False}
    failing = {"passed": False, "failed": 1, "skipped": 0, "rows": [], "models": [], "quick": True, "device": "cpu"}
    failing.update(device_name="cpu", seconds=1.0, versions={}, seeds={}, sizes={}, confidence=0.99, command="x")
    monkeypatch.setattr(crosscheck, "run", lambda **kw: failing)
    assert cli.main(["crosscheck", "--device", "cpu", "--quick", "--out", str(tmp_path)]) == 1
    assert "FAIL" in (tmp_path / "crosscheck-cpu-quick.md").read_text()


def test_model_list_is_extensible() -> None:
    case = ModelCase(
        "tiny", "digits", False, "a test model", lambda shape, k: nn.Sequential(nn.Flatten(), nn.Linear(64, k))
    )
    MODELS["tiny"] = case
    try:
        trained = crosscheck.models.train("tiny", device="cpu", seed=0, quick=True)
        assert trained.accuracy > 0.5 and not trained.case.randomized
    finally:
        del MODELS["tiny"]
    with pytest.raises(ValueError, match="model"):
        crosscheck.models.train("nope", device="cpu", seed=0, quick=True)


@pytest.mark.cuda
def test_crosscheck_runs_on_cuda() -> None:
    report = crosscheck.run(device="cuda", quick=True, names=["mlp-digits"])
    assert report["passed"] and report["device"].startswith("cuda")


# ---- the box-edge stall diagnosis, by hand ------------------------------------------------------------------


def test_stall_share_on_a_hand_computed_case() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # w = grad(z_1 - z_0) = (1, 1)
    x = torch.tensor([[1.0, 0.5], [0.5, 0.5]])
    share, margin = stall_share(model, x, torch.tensor([0, 0]), (0.0, 1.0))
    # first row: the coordinate at the upper bound blocks half of ||w||^2; second row: nothing blocked
    torch.testing.assert_close(share, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(margin, -x.sum(1))


# (the statistics of evaluations/stats.py are tested in tests/evaluations/test_stats.py)
