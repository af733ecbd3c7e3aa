"""A user's own data (issue 27): the gradient-obfuscation checks that need no zoo surrogate run on it and the card
lists those that ran; ``--samples auto`` on a small sample says it cannot tell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stochdef.defenses import NoiseInjection
from stochdef.evaluations import evaluate_model
from stochdef.evaluations.evaluate.compute.diagnose import NEED_SURROGATE


def _noisy(digits: Any) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(digits.x_train[:500]), digits.y_train[:500]).backward()
        opt.step()
    return nn.Sequential(NoiseInjection(std=0.3), net).eval()


def test_the_indicators_without_a_surrogate_run_on_a_users_data(digits: Any, tmp_path: Path) -> None:
    result = evaluate_model(_noisy(digits), digits.x_test[:16], digits.y_test[:16], eps=(0.05, 0.1),
                            attacks=("fgsm",), libraries=("inhouse",), samples=(1, 2), steps=3, judge_samples=2,
                            indicators=True, out=tmp_path)  # fmt: skip
    ran = result.card["indicators_run"]
    expected = {"randomized", "unavailable_gradients", "zero_gradients", "silent_success",
                "unconstrained_attack_failure", "iterative_beats_single_step", "accuracy_monotone_in_eps",
                "whitebox_beats_transfer_and_noise[noise only]", "more_steps_change_little"}  # fmt: skip
    assert expected <= set(ran), ran
    assert not set(ran) & set(NEED_SURROGATE)
    assert isinstance(result.card["indicator_fired"], bool)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    indicator = [r for r in records if r["kind"] == "indicators"]
    assert len(indicator) == 1 and indicator[0]["provenance"]  # no surrogate model was loaded or keyed
    assert "## Gradient-obfuscation indicators" in (tmp_path / "report.md").read_text()


def test_samples_auto_on_a_small_sample_says_it_cannot_tell(digits: Any, tmp_path: Path) -> None:
    evaluate_model(_noisy(digits), digits.x_test[:20], digits.y_test[:20], eps=0.15, attacks=("pgd",),
                   libraries=("inhouse",), samples="auto", samples_cap=4, steps=3, judge_samples=2,
                   out=tmp_path)  # fmt: skip
    data = json.loads((tmp_path / "samples-auto.json").read_text())
    curve = data["defenses"]["model"]["curve"]
    assert curve[-1]["half_width"] >= 0.1  # 20 examples: a Wilson half-width of at least 0.1 unless p is near 0 or 1
    assert data["defenses"]["model"]["too_small_to_tell"] is True
    assert "the sample is too small to tell" in (tmp_path / "report.md").read_text()
