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
    clean, *attacks = bar["steps"]  # the clean cell first, then fgsm and pgd at 1 and 8 draws
    assert bar["total"] == pytest.approx(sum(bar["steps"]))
    assert len(attacks) == 4 and clean == 10 * (1 + 4)  # n x (one pass + the judge's 4 draws)
    assert max(attacks) > 10 * clean  # EoT-PGD (8 draws x 10 steps) costs far more than the clean cell
