"""An evaluation of a model that draws once per call, and of one that draws per row (DESIGN.md, §C2).

The per-call model is Xie et al. 2018's random resize-and-pad ("Mitigating Adversarial Effects Through
Randomization"), one size and one offset for the whole batch per call, before an MLP trained on the digits. Its
records, report, console table and model card must say its draws were taken one call per draw, and no call of
the whole evaluation may hold more rows than the batch (a call on the batch replicated ``samples`` times would
hold copies of one draw). A per-row model's numbers must be those of the evaluation without the draw probe.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.defenses import fit
from stochdef.evaluations import evaluate_model
from stochdef.evaluations.evaluate.grid import base, cells
from stochdef.evaluations.evaluate.outputs.report import console_table

N, SAMPLES, JUDGE = 40, 4, 4
PER_CALL = f"{SAMPLES} draws, one call per draw"


class ResizePad(nn.Module):
    """The batch resized to a random ``r x r`` (``8 <= r <= 11``) and zero-padded at a random offset to 11x11,
    one draw per call, then a 121-32-10 MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(121, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = int(torch.randint(8, 12, ()))
        top, left = (int(v) for v in torch.randint(0, 12 - r, (2,)))
        z = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        return self.net(F.pad(z, (left, 11 - r - left, top, 11 - r - top)))


@pytest.fixture(scope="module")
def per_call_run(digits: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[int]]:
    torch.manual_seed(0)
    model = ResizePad()
    fit(model, digits.x_train, digits.y_train, epochs=10, batch_size=64, lr=3e-3, progress=False, seed=0)
    model.eval()
    rows: list[int] = []  # the rows of every call of the model during the evaluation
    model.register_forward_hook(lambda _m, args, _out: rows.append(int(args[0].shape[0])))
    result = evaluate_model(
        model, digits.x_test[:N], digits.y_test[:N], eps=0.1, attacks=("fgsm", "pgd"),
        libraries=("inhouse", "foolbox", "art", "torchattacks"), samples=(1, SAMPLES), steps=3, judge_samples=JUDGE,
        out=tmp_path_factory.mktemp("per-call"),
    )  # fmt: skip
    return result, rows


def test_every_call_of_a_per_call_model_is_one_draw_of_the_batch(per_call_run: tuple[Any, list[int]]) -> None:
    _, rows = per_call_run
    assert rows and max(rows) <= N, max(rows)


def test_the_records_say_one_call_per_draw(per_call_run: tuple[Any, list[int]]) -> None:
    result, _ = per_call_run
    records = list(result.store)
    clean = next(r for r in records if r["kind"] == "clean")
    assert clean["random"] is True and clean["draws"] == "per-call"
    assert clean["judge_draws"] == f"{JUDGE} draws, one call per draw"
    attacks = [r for r in records if r["kind"] == "attack" and "skipped" not in r]
    assert {r["library"] for r in attacks} == {"inhouse", "foolbox", "art", "torchattacks"}
    for r in attacks:
        assert r["judge_draws"] == f"{JUDGE} draws, one call per draw"
        if r["samples"] == SAMPLES:
            assert r["draws"] == PER_CALL and r["estimator"].endswith(f"; {PER_CALL}"), r
        else:
            assert r["draws"] == "1 draw, one call" and r["estimator"] == "one draw per gradient (naive)", r
    # the EoT cells are attacks of their own, not the naive ones again
    naive = {(r["attack"], r["library"]): r["correct"] for r in attacks if r["samples"] == 1}
    eot = {(r["attack"], r["library"]): r["correct"] for r in attacks if r["samples"] == SAMPLES}
    assert naive.keys() == eot.keys() and any(naive[k] != eot[k] for k in naive)


def test_the_report_console_and_card_say_one_call_per_draw(per_call_run: tuple[Any, list[int]]) -> None:
    result, _ = per_call_run
    report = (result.out / "report.md").read_text()
    assert f"- **model** (draws once per call): EoT {PER_CALL}; ensemble {JUDGE} draws, one call per draw." in report
    assert "replicated" not in report
    console = console_table(result.store, result.config)
    assert f"model (draws once per call): EoT {PER_CALL}" in console
    card = json.loads((result.out / "model-card.json").read_text())
    assert card["draws"] == "per-call"
    assert card["eot_draws"] == {"1": "1 draw, one call", str(SAMPLES): PER_CALL}
    assert card["judge"] == f"softmax average of {JUDGE} draws, one call per draw"


def _numbers(result: Any) -> dict[str, dict[str, Any]]:
    """Every record's fields but the time, the versions and the words on how the draws were taken."""
    words = {"seconds", "versions", "draws", "judge_draws", "source_draws", "estimator"}
    return {r["key"]: {k: v for k, v in r.items() if k not in words} for r in result.store}


def test_a_per_row_models_numbers_are_those_without_the_probe(
    noisy_digits_mlp: nn.Module, digits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean cell's probe and the kind handed to the judges leave every number as it was: the reference run
    has no probe and judges that find the kind themselves (the code before the probe)."""
    x, y = digits.x_test[:N], digits.y_test[:N]

    def run() -> Any:
        return evaluate_model(
            noisy_digits_mlp, x, y, eps=0.1, attacks=("fgsm", "pgd"), libraries=("inhouse", "torchattacks"),
            samples=(1, SAMPLES), steps=3, judge_samples=JUDGE,
        )  # fmt: skip

    probed = run()
    clean = next(r for r in probed.store if r["kind"] == "clean")
    assert clean["draws"] == "per-row"
    eot = [r for r in probed.store if r["kind"] == "attack" and r["samples"] == SAMPLES]
    assert eot and all(r["draws"] == f"{SAMPLES} draws, one call on the batch replicated {SAMPLES} times" for r in eot)
    reference_judge = cells.Judge
    for module in (base, cells):  # the clean cells judge in base, the attack cells in cells
        monkeypatch.setattr(module, "Judge", lambda model, samples, draws=None: reference_judge(model, samples))
    monkeypatch.setattr(base, "probe", lambda *a, **k: "per-row")  # no model call: the kind, unprobed
    reference = _numbers(run())
    assert reference and reference == _numbers(probed)
