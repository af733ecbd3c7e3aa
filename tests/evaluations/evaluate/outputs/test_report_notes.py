"""What the report and the card say about a user's run (issue 27): the threat model by name, the run time summed
over resumes, why each cell did not run, an attack cell that returned its inputs unchanged, the checkpoint, and a
warning for an eps that covers the whole input range. Runs ``evaluate_model`` on 24 digits with a linear model."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from stochdef.evaluations import evaluate_model
from stochdef.evaluations.evaluate.grid import cells
from stochdef.evaluations.evaluate.outputs.report import console_table

N = 24


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def _trained(digits: Any) -> nn.Module:
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(digits.x_train[:500]), digits.y_train[:500]).backward()
        opt.step()
    return net.eval()


def test_an_l2_run_is_named_l2_and_says_why_each_cell_did_not_run(digits: Any, tmp_path: Path) -> None:
    net = _trained(digits)
    evaluate_model(net, digits.x_test[:N], digits.y_test[:N], eps=(0.5, 1.0), norm="l2", out=tmp_path, steps=3,
                   attacks=("fgsm", "pgd", "square"), libraries=("inhouse", "foolbox"), samples=(1,))  # fmt: skip
    report = (tmp_path / "report.md").read_text()
    assert "L-inf attacks" not in report and "(L-inf" not in report and "linf" not in report
    assert "L2 attacks at eps 0.5, 1.0" in report and "## Robust accuracy (L2)" in report
    table = report.split("## Robust accuracy (L2)")[1].split("\n## ")[0]
    assert "n/a / n/a" not in table  # every n/a carries its footnote
    for reason in ("FGSM is L-inf only (the sign step)", "Foolbox 3 has no Square attack",
                   "not written in-house: stochdef runs the libraries' implementation"):  # fmt: skip
        marks = re.findall(r"\[(\d+)\] [^\n]*" + re.escape(reason), table)
        assert len(marks) == 1, (reason, table)
        assert f"n/a [{marks[0]}]" in table


def test_the_console_table_keeps_its_columns_apart(digits: Any, tmp_path: Path) -> None:
    result = evaluate_model(_net(), digits.x_test[:8], digits.y_test[:8], eps=(8 / 255, 0.0314), attacks=("fgsm",),
                            libraries=("inhouse",), samples=(1,))  # fmt: skip
    lines = console_table(result.store, result.config).splitlines()
    assert lines[0] == "L-inf attacks"
    header = lines[1].split()
    assert header[:2] == ["defense", "clean"] and header.count("naive/EoT") == 2  # no two labels run together
    assert len(lines[3]) == len(lines[1])  # the numbers sit under their labels


def test_the_run_time_is_summed_over_resumes(digits: Any, tmp_path: Path) -> None:
    net = _trained(digits)
    x, y = digits.x_test[:N], digits.y_test[:N]
    kwargs: dict[str, Any] = {"eps": 0.1, "libraries": ("inhouse",), "samples": (1,), "out": tmp_path}
    evaluate_model(net, x, y, attacks=("pgd",), steps=400, **kwargs)  # the expensive part, "before the resume"
    evaluate_model(net, x, y, attacks=("pgd", "fgsm"), steps=400, **kwargs)  # resumes: computes the fgsm cell only
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    total = sum(r["seconds"] for r in records)  # the clean, pgd and fgsm cells, each recorded once
    assert len(records) == 3
    found = re.search(r"Run time: ([\d.]+) s \(the compute time of its 3 cells", (tmp_path / "report.md").read_text())
    assert found is not None and float(found.group(1)) == pytest.approx(total, abs=0.05)  # printed to 0.1 s


def test_an_attack_that_returns_its_inputs_is_flagged(
    digits: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cells.libraries.run

    def lazy(library: str, attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw: Any) -> Any:
        return x.clone() if library == "art" else real(library, attack, model, x, y, **kw)

    monkeypatch.setattr(cells.libraries, "run", lazy)
    result = evaluate_model(_trained(digits), digits.x_test[:N], digits.y_test[:N], eps=0.3, attacks=("pgd",),
                            libraries=("inhouse", "art"), samples=(1,), steps=5, out=tmp_path)  # fmt: skip
    flagged = result.card["unchanged_attack_cells"]
    assert len(flagged) == 1 and flagged[0].startswith("pgd/art/samples 1 at eps 0.3 returned its inputs unchanged")
    table = (tmp_path / "report.md").read_text().split("## Robust accuracy (L-inf)")[1]
    assert "**unchanged** [1]" in table and "[1] pgd/art/samples 1 at eps 0.3 returned its inputs unchanged" in table


def test_the_card_names_the_checkpoint_and_a_whole_range_eps_warns(
    digits: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_trained(digits).state_dict(), path)
    with caplog.at_level(logging.WARNING):
        result = evaluate_model(_net(), digits.x_test[:8], digits.y_test[:8], eps=(0.1, 2.0), attacks=("fgsm",),
                                libraries=("inhouse",), samples=(1,), checkpoint=path,
                                out=tmp_path / "out")  # fmt: skip
    assert result.card["checkpoint"] == str(path)
    warned = [r.getMessage() for r in caplog.records if "covers the whole input range" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("eps 2.0 covers the whole input range [0.0, 1.0] under linf")


def test_adversarial_examples_for_every_eps_and_their_picture(digits: Any, tmp_path: Path) -> None:
    """The worst-case file holds one row per eps, equal (every array) whether the run went at once or gained an eps
    on a resume; the report shows the picture of the broken examples."""
    net, x, y = _trained(digits), digits.x_test[:N], digits.y_test[:N]
    kwargs: dict[str, Any] = {"attacks": ("fgsm", "pgd"), "libraries": ("inhouse",), "samples": (1,), "steps": 5}
    evaluate_model(net, x, y, eps=(0.05, 0.3), out=tmp_path / "once", **kwargs)
    evaluate_model(net, x, y, eps=(0.3,), out=tmp_path / "resumed", **kwargs)
    result = evaluate_model(net, x, y, eps=(0.05, 0.3), out=tmp_path / "resumed", **kwargs)
    with np.load(tmp_path / "once" / "worst-case.npz") as f:
        once = {k: f[k] for k in f.files}
    with np.load(tmp_path / "resumed" / "worst-case.npz") as f:
        resumed = {k: f[k] for k in f.files}
    assert once["eps"].tolist() == [0.05, 0.3] and once["x_adv"].shape == (2, *x.shape)
    for name in ("eps", "x", "y", "x_adv", "broken_by", "robust", "linf", "l2"):
        np.testing.assert_array_equal(resumed[name], once[name], err_msg=name)
    records = [json.loads(line) for line in (tmp_path / "once" / "results.jsonl").read_text().splitlines()]
    for k, e in enumerate([0.05, 0.3]):
        bits = [r["correct"] for r in records if r["kind"] == "clean" or r.get("eps") == e]
        assert once["robust"][k].tolist() == [all(b[i] == "1" for b in bits) for i in range(N)]
        assert float(once["linf"][k].max()) <= e + 1e-6
        assert [ex["robust"] for ex in result.card["examples_by_eps"][str(e)]] == once["robust"][k].tolist()
    assert once["robust"][1].sum() < once["robust"][0].sum()  # a trained linear model falls from 0.05 to 0.3
    assert (tmp_path / "once" / "worst_case_examples.png").stat().st_size > 5000
    assert "![worst_case_examples.png](worst_case_examples.png)" in (tmp_path / "once" / "report.md").read_text()
