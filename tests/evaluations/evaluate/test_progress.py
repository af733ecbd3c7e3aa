"""The progress bar's ETA (issue 27): the bar advances by each cell's expected cost in forward passes, so a cheap
clean cell moves it little and an EoT attack cell much (a count of cells said 2:26 left at 8% of a 5.6-min run)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from stochdef.defenses import NoiseInjection
from stochdef.evaluations import evaluate_model
from stochdef.evaluations.evaluate import engine


def test_the_bar_advances_by_expected_cost(digits: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bars: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, *args: Any, total: float = 0.0, **kwargs: Any) -> None:
            bars.append({"total": total, "steps": []})

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: float) -> None:
            bars[-1]["steps"].append(n)

    monkeypatch.setattr(engine, "tqdm", Recorder)
    torch.manual_seed(0)
    model = nn.Sequential(NoiseInjection(std=0.2), nn.Flatten(), nn.Linear(64, 10))
    evaluate_model(model, digits.x_test[:10], digits.y_test[:10], eps=0.1, attacks=("fgsm", "pgd"),
                   libraries=("inhouse",), samples=(1, 8), steps=10, judge_samples=4, progress=True)  # fmt: skip
    (bar,) = bars
    steps = bar["steps"]  # one per cell computed under the bar, each its expected cost in forward passes
    assert bar["total"] == pytest.approx(sum(steps))
    # n x (the attack's passes + one pass + the judge's 4 draws): FGSM at 1 draw, EoT-PGD at 8 draws x 10 steps
    assert 10 * (3 + 1 + 4) in steps and max(steps) == 10 * (3 * 10 * 8 + 1 + 4)
    assert max(steps) > 10 * min(steps)  # a count of cells would misjudge the time left
