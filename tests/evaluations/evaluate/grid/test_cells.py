"""The typed cells: their keys (unchanged from the records already written), costs, the seconds they record, and
the run's threat model reaching every check (indicators and transfer matrix included)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, IndicatorCell, TransferCell, evaluate
from stochdef.evaluations.evaluate.adaptive import with_declarations
from stochdef.evaluations.evaluate.compute.diagnose import Checks, diagnose
from stochdef.evaluations.evaluate.engine import compute, open_run, prepare
from stochdef.evaluations.evaluate.grid.cells import CertificateCell, grid
from stochdef.evaluations.evaluate.store.results import KINDS, ResultsFile, cell_key
from stochdef.evaluations.libraries import APGDCE, FGSM, PGD, Square

REPORT = Path(__file__).resolve().parents[4] / "evaluations" / "reports" / "evaluate" / "results.jsonl"


def test_keys_are_those_of_the_records_already_written() -> None:
    """The default grid's keys are the committed report's: a resumed run finds every old cell."""
    written = {json.loads(line)["key"] for line in REPORT.read_text().splitlines() if line.strip()}
    cells = grid(with_declarations(EvalConfig()))
    keys = {cell.key for cell in cells}
    new = {cell.key for cell in cells if isinstance(cell, AttackCell) and cell.surrogate}  # adaptive cells
    new |= {cell.key for cell in cells if isinstance(cell, CertificateCell)}
    assert len(keys) == len(cells) and len(new) > 0
    # the report written before the adaptive and certificate cells existed, or after: every other key is unchanged
    assert written - new == keys - new and (not written & new or written == keys)


def test_an_attack_key_holds_exactly_the_settings_that_change_its_numbers() -> None:
    c = EvalConfig(defenses=("a",), n=10)
    base = {"kind": "attack", "defense": "a", "library": "art", "dataset": "mnist5k", "n": 10, "seed": 0, "judge": 16}
    pgd = AttackCell.of(c, "a", "art", PGD(eps=0.1, steps=10, samples=8))
    assert pgd.key == cell_key(**base, attack="pgd", eps=0.1, samples=8, steps=10)
    square = AttackCell.of(c, "a", "art", Square(eps=0.1, restarts=2, queries=50))
    assert square.key == cell_key(**base, attack="square", eps=0.1, samples=1, steps=10, restarts=2, queries=50)
    assert set(KINDS) >= {cls.kind for cls in (CleanCell, AttackCell, IndicatorCell, TransferCell)}


def test_costs_follow_the_attacks_budgets(tmp_path: Path) -> None:
    """An attack cell costs its attack's passes (restarts, queries and draws included) plus the judge's; a skipped
    cell costs nothing; a transfer source's examples are counted once, in the unit."""
    config = EvalConfig(defenses=("vanilla-mlp", "sdr-learnable"), n=10, judge_samples=4, restarts=3)
    run = open_run(config, ResultsFile(tmp_path / "r.jsonl"))
    one = AttackCell.of(config, "sdr-learnable", "art", APGDCE(eps=0.1, steps=10, restarts=1))
    three = AttackCell.of(config, "sdr-learnable", "art", APGDCE(eps=0.1, steps=10, restarts=3))
    assert three.cost(run, lambda _: 1.0) == 10 * (3 * 30 + 1 + 4) and one.cost(run, lambda _: 1.0) == 10 * (30 + 5)
    small = AttackCell.of(config, "sdr-learnable", "art", Square(eps=0.1, queries=100))
    big = AttackCell.of(config, "sdr-learnable", "art", Square(eps=0.1, queries=1000))
    assert big.cost(run, lambda _: 1.0) > 5 * small.cost(run, lambda _: 1.0)
    foolbox_apgd = AttackCell.of(config, "sdr-learnable", "foolbox", APGDCE(eps=0.1, steps=10))
    assert foolbox_apgd.cost(run, lambda _: 1.0) == 0.0  # skipped: Foolbox 3 has no APGD
    weight = {"vanilla-mlp": 1.0, "sdr-learnable": 7.0}.__getitem__
    assert AttackCell.of(config, "sdr-learnable", "inhouse", FGSM(eps=0.1)).cost(run, weight) == 7.0 * 10 * (3 + 5)


def test_a_block_records_its_own_seconds(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    """A block computed apart (as a ``torchrun`` rank computes it) records the time it took, not the clock minus
    its first row's index; the cell combined from its blocks records their sum."""
    config = EvalConfig(
        dataset="digits", defenses=("plain",), attacks=("fgsm",), libraries=("inhouse",), eps=(0.1,),
        samples=(1,), n=12, block=5, indicators=False, transfer=False, source="test",
    )  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    inputs = prepare(config, models={"plain": model}, x=digits.x_test[:12], y=digits.y_test[:12])
    run = open_run(config, ResultsFile(tmp_path / "results.jsonl"), inputs)
    cell = next(c for c in grid(config) if isinstance(c, AttackCell))
    blocks = cell.blocks(run)
    assert blocks is not None and [(b.start, b.end) for b in blocks] == [(0, 5), (5, 10), (10, 12)]
    start = time.perf_counter()
    for block in blocks:
        compute(run, block)
    wall = time.perf_counter() - start
    seconds = [run.store.get(block.key)["seconds"] for block in blocks]  # type: ignore[index]
    assert all(0.0 <= s <= wall for s in seconds), (seconds, wall)
    combined = cell.combined(run, [run.store.get(block.key) for block in blocks])  # type: ignore[misc]
    assert combined["correct"] == "".join(run.store.get(b.key)["correct"] for b in blocks)  # type: ignore[index]


class Shifted(nn.Module):
    """A digits classifier for inputs in [-1, 1] (the plain one after x -> (x + 1) / 2)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x + 1) / 2)


def test_the_transfer_matrix_and_the_indicators_attack_in_the_runs_bounds(
    tmp_path: Path, digits, plain_digits_mlp: nn.Module, noisy_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    """Data in [-1, 1] (``--bounds -1,1``): the transfer source's examples and the indicators' attacks stay in that
    box (they attacked [0, 1] before, and the in-house attacks refused inputs outside it)."""
    x, y = digits.x_test[:40] * 2 - 1, digits.y_test[:40]
    models = {"plain": Shifted(plain_digits_mlp).eval(), "noisy": Shifted(noisy_digits_mlp).eval()}
    config = EvalConfig(
        dataset="digits", defenses=tuple(models), attacks=("fgsm",), libraries=("inhouse",), eps=(0.1,),
        samples=(1, 2), n=40, steps=3, judge_samples=2, bounds=(-1.0, 1.0), indicators=False, source="test",
    )  # fmt: skip
    done = evaluate(config, out=tmp_path, models=models, x=x, y=y, progress=False)
    assert done.store is not None
    transfers = [r for r in done.store if r["kind"] == TransferCell.kind]
    assert len(transfers) == 4 and all(0.0 <= r["acc_ensemble"] <= 1.0 for r in transfers)
    checks = Checks(eps=0.1, eps_all=(0.1,), steps=3, bounds=(-1.0, 1.0), samples=1, judge=1, seed=0)
    found = {i["name"]: i for i in diagnose(models["plain"], models["plain"], x, y, checks, defense="plain")}
    # an attack over the whole [-1, 1] box must break every point of an undefended model
    assert found["unconstrained_attack_failure"]["value"] == pytest.approx(0.0, abs=0.05)


def test_the_cost_models_agreement_with_measured_seconds(tmp_path: Path) -> None:
    """``schedule.agreement``: seconds proportional to the costs rank perfectly with no spread; reversed, they
    rank at -1 (the bench reports it for a real run)."""
    from stochdef.evaluations.evaluate.grid.schedule import agreement

    config = EvalConfig(
        defenses=("vanilla-mlp", "sdr-learnable"), attacks=("fgsm", "pgd", "apgd-ce"), libraries=("inhouse", "art"),
        eps=(0.1,), samples=(1, 4), n=10, judge_samples=2, indicators=False, transfer=False,
    )  # fmt: skip
    weights = {"vanilla-mlp": 1.0, "sdr-learnable": 3.0}
    for sign in (1, -1):
        run = open_run(config, ResultsFile(tmp_path / f"{sign}.jsonl"))
        cells = [c for c in grid(config) if isinstance(c, AttackCell) and "skipped" not in c.header(run)]
        costs = [c.cost(run, weights.__getitem__) for c in cells]
        judged = {"acc_single": 1.0, "acc_single_ci": [0, 1], "acc_ensemble": 1.0, "acc_ensemble_ci": [0, 1]}
        for cell, cost in zip(cells, costs, strict=True):
            seconds = 1e-3 * cost if sign > 0 else 1.0 / cost
            run.store.add({"key": cell.key, "kind": AttackCell.kind, **judged, "seconds": seconds})
        found = agreement(run, cells, weights)
        assert found["cells"] == len(cells)
        if sign > 0:
            assert found["spearman"] == pytest.approx(1.0) and found["spread_90_10"] == pytest.approx(1.0)
        else:
            assert found["spearman"] < -0.9
