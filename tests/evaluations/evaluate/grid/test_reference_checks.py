"""Croce & Hein's checks on each model of a run with the library ``autoattack``: the recorded outcomes are what
the reference's functions say when called directly, the report shows them beside stochdef's checks, and a
disagreement is explained; without the package the cell says why it did not run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate import EvalConfig, evaluate
from stochdef.evaluations.evaluate.api import write_outputs
from stochdef.evaluations.evaluate.grid.reference_cell import ReferenceChecksCell
from stochdef.evaluations.evaluate.outputs.reference_section import CLEAN_CHECK, WHY, rows
from stochdef.evaluations.libraries import AutoAttackRand, reference, wrap

pyautoattack = pytest.importorskip("pyautoattack")
from pyautoattack import checks  # noqa: E402
from pyautoattack.autopgd_base import APGDAttack  # noqa: E402

N = 40


class Rounded(nn.Module):
    """The inputs rounded to {0, 1} first: the gradient is zero everywhere (a deterministic, masked model)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x))


class Jitter(nn.Module):
    """Logits plus noise of std 1e-8 per row: random to stochdef (outputs differ), not to the reference (their
    L2-normalised distance stays far below its 1e-4)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z + 1e-8 * z.abs().max() * torch.randn_like(z)


def _run(tmp_path: Path, models: dict[str, nn.Module], digits: Any, **kw: Any) -> Any:
    config = EvalConfig(
        dataset="digits", defenses=tuple(models), attacks=("fgsm",), libraries=("inhouse", "autoattack"), eps=(0.1,),
        samples=(1,), n=N, steps=2, judge_samples=4, indicators=False, transfer=False, source="t", **kw,
    )  # fmt: skip
    done = evaluate(config, out=tmp_path, models=models, x=digits.x_test[:N], y=digits.y_test[:N], progress=False)
    write_outputs(done.store, done.config, tmp_path)
    return done


def _heard(call: Any) -> bool:
    """Whether a reference check, called directly (no logger: it warns), spoke."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return any("See flags_doc.md" in str(w.message) or "not possible" in str(w.message) for w in caught)


def _direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, bool]:
    """Each reference check called directly on ``model`` as the reference's attacks receive it."""
    wrapped = wrap("autoattack", AutoAttackRand(eps=0.1), model, x, num_classes=10)
    for key in checks.funcs:
        checks.funcs[key] = 0
    apgd = APGDAttack(wrapped, n_iter=1, eps=0.1, loss="dlr", eot_iter=1, device=x.device)
    return {
        "check_randomized": _heard(lambda: checks.check_randomized(wrapped, x, y)),
        "check_range_output": _heard(lambda: checks.check_range_output(wrapped, x)),
        "check_dynamic": _heard(lambda: checks.check_dynamic(wrapped, x)),
        "check_zero_gradients": _heard(lambda: apgd.perturb(x, y)),
        "check_n_classes": _heard(lambda: checks.check_n_classes(10, ["apgd-ce", "apgd-dlr"], 9, 9)),
    }


def test_recorded_outcomes_are_the_reference_functions_own(
    tmp_path: Path, digits, plain_digits_mlp: nn.Module, noisy_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    models = {"plain": plain_digits_mlp, "noisy": noisy_digits_mlp, "rounded": Rounded(plain_digits_mlp)}
    done = _run(tmp_path, models, digits)
    x, y = digits.x_test[:N], digits.y_test[:N]
    recorded = {}
    for name in models:
        record = ReferenceChecksCell.of(done.config, name).record(done.store)
        assert record is not None and record["reference"] == f"pyautoattack {pyautoattack.__version__}"
        recorded[name] = {k["name"]: k["fired"] for k in record["checks"]}
        assert recorded[name] == _direct(models[name], x, y), name
    # what each model is: the noisy one randomized, the rounded one without gradients, the plain one neither
    assert [recorded[m]["check_randomized"] for m in models] == [False, True, False]
    assert [recorded[m]["check_zero_gradients"] for m in models] == [False, False, True]
    report = (tmp_path / "report.md").read_text()
    assert "## Croce & Hein's checks beside stochdef's" in report and "### rounded" in report
    assert report.count(CLEAN_CHECK) == 1  # under the one model the reference found randomized


def test_a_disagreement_is_explained(tmp_path: Path, digits, plain_digits_mlp: nn.Module) -> None:  # type: ignore[no-untyped-def]
    models = {"jitter": Jitter(plain_digits_mlp), "sigmoid": nn.Sequential(plain_digits_mlp, nn.Sigmoid())}
    done = _run(tmp_path, models, digits)
    found = {d: {k["name"]: k for k in rows(done.store, done.config, d)} for d in models}  # type: ignore[union-attr]
    jitter, sigmoid = found["jitter"]["check_randomized"], found["sigmoid"]["check_range_output"]
    assert not jitter["fired"] and jitter["agree"] is False and jitter["why"] == WHY[("check_randomized", False, True)]
    assert not sigmoid["fired"] and sigmoid["agree"] is False
    assert sigmoid["why"] == WHY[("check_range_output", False, True)]
    assert found["sigmoid"]["check_randomized"]["agree"] and not found["sigmoid"]["check_randomized"]["why"]
    report = (tmp_path / "report.md").read_text()
    assert WHY[("check_randomized", False, True)] in report and WHY[("check_range_output", False, True)] in report
    card = (tmp_path / "model-card--jitter.json").read_text()
    assert WHY[("check_randomized", False, True)] in card


def test_without_the_package_the_run_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits, plain_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(reference, "installed", lambda: False)
    done = _run(tmp_path, {"plain": plain_digits_mlp}, digits)
    record = ReferenceChecksCell.of(done.config, "plain").record(done.store)
    assert record is not None and record["skipped"].endswith(reference.NOT_INSTALLED)
    assert reference.NOT_INSTALLED in (tmp_path / "report.md").read_text()
    assert reference.NOT_INSTALLED in (tmp_path / "model-card.json").read_text()
