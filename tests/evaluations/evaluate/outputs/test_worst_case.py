"""The per-example worst case, ``--samples auto``, forward-pass counting and the default grid.

The worst case is checked against a brute-force loop over examples and cells; ``settled`` against the rule
written out by hand; forward passes against the rows an EoT call must make.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.adapters import EoT
from stochdef.evaluations import evaluate_model
from stochdef.evaluations.evaluate import AttackCell, EvalConfig, grid
from stochdef.evaluations.evaluate.auto_samples import settled
from stochdef.evaluations.evaluate.compute.accounting import count_forward
from stochdef.evaluations.evaluate.outputs.worst_case import summary_of
from stochdef.evaluations.libraries import DEFAULT_ATTACKS


def test_summary_of_is_the_per_example_and() -> None:
    gen = torch.Generator().manual_seed(0)
    rows = (torch.rand(7, 50, generator=gen) < 0.8).tolist()
    bits = ["".join("1" if v else "0" for v in row) for row in rows]
    brute = sum(all(row[i] for row in rows) for i in range(50))
    assert summary_of(bits) == (brute, 50)
    with pytest.raises(ValueError, match="at least one"):
        summary_of([])


def test_settled_follows_the_rule() -> None:
    # fell by more than the half-width: keep doubling; by at most: the count before the last doubling
    assert settled([(1, 0.6, 0.1)]) is None
    assert settled([(1, 0.6, 0.1), (2, 0.45, 0.1)]) is None
    assert settled([(1, 0.6, 0.1), (2, 0.45, 0.1), (4, 0.40, 0.1)]) == 2
    assert settled([(1, 0.6, 0.1), (2, 0.6, 0.1)]) == 1
    assert settled([(1, 0.3, 0.05), (2, 0.35, 0.05)]) == 1  # a rise (noise) settles too


def test_forward_passes_count_every_draw() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with count_forward({"net": net}) as passes:
        EoT(net, samples=5)(torch.rand(7, 1, 2, 2))
        net(torch.rand(2, 1, 2, 2))
    assert passes.total == 5 * 7 + 2
    with count_forward({}) as none:
        net(torch.rand(3, 1, 2, 2))
    assert none.total == 0


def test_samples_auto_doubles_until_the_worst_case_settles(
    noisy_digits_mlp: nn.Module, digits: Any, tmp_path: Path
) -> None:
    x, y = digits.x_test[:40], digits.y_test[:40]
    result = evaluate_model(
        noisy_digits_mlp, x, y, eps=0.15, attacks=("pgd",), libraries=("inhouse",), samples="auto",
        samples_cap=8, steps=3, judge_samples=4, out=tmp_path,
    )  # fmt: skip
    data = json.loads((tmp_path / "samples-auto.json").read_text())
    curve = data["defenses"]["model"]["curve"]
    counts = [p["samples"] for p in curve]
    assert counts == [2**k for k in range(len(counts))] and counts[-1] <= 8
    assert data["samples_run"] == counts
    chosen = data["defenses"]["model"]["chosen"]
    points = [(p["samples"], p["robust_accuracy"], p["half_width"]) for p in curve]
    assert chosen == settled(points)  # the rule, applied to the curve it reports
    if chosen is None:
        assert counts[-1] == 8  # stopped at the cap only
    else:
        assert all(settled(points[:k]) is None for k in range(1, len(points)))  # it stopped at the first settle
    assert result.card["samples_auto"]["chosen"] == chosen
    # the headline takes every count run: never above the worst case at any one count
    assert result.robust_accuracy <= min(p["robust_accuracy"] for p in curve) + 1e-12
    assert "--samples auto" in (tmp_path / "report.md").read_text()


def test_the_default_grid_runs_apgd_ce_with_eot() -> None:
    config = EvalConfig()
    assert "apgd-ce" in DEFAULT_ATTACKS == config.attacks and max(config.samples) > 1
    cells = [c for c in grid(config) if isinstance(c, AttackCell)]
    eot_apgd = {c.library for c in cells if c.attack.name == "apgd-ce" and c.attack.samples > 1}
    assert {"art", "torchattacks"} <= eot_apgd


def test_an_l2_config_runs_no_fgsm_cell() -> None:
    config = EvalConfig(norm="l2", eps=(1.0,), indicators=False, transfer=False)
    cells = [c for c in grid(config) if isinstance(c, AttackCell)]
    assert cells and all(c.attack.name != "fgsm" and c.attack.norm == "l2" for c in cells)
    with pytest.raises(ValueError, match="norm"):
        EvalConfig(norm="l1")
    with pytest.raises(ValueError, match="bounds"):
        EvalConfig(bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="checkpoint"):
        EvalConfig(checkpoint="x.pt")  # six default defenses: which one?
