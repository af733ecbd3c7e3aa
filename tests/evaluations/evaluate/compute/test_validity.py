"""Contract §C7: an adversarial example counts only inside the threat model. The pure check against hand-made
examples at the edge of each tolerance, and a deliberately faulty attack (one that steps past eps) driven through
the engine: its examples are recorded as invalid and the headline is not lowered."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stochdef.evaluations import libraries
from stochdef.evaluations.evaluate import EvalConfig, evaluate
from stochdef.evaluations.evaluate.compute.judge import Judge
from stochdef.evaluations.evaluate.compute.validity import BALL, BOUNDS, NON_FINITE, SHAPE, check_examples, tolerance
from stochdef.evaluations.evaluate.outputs.threat_model import section
from stochdef.evaluations.evaluate.outputs.worst_case import summary


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_ball_holds_eps_up_to_its_stated_tolerance_and_not_beyond(norm: str) -> None:
    """A perturbation of exactly the tolerance is valid; 1e-5 relative beyond it (ten times the stated relative
    slack) is not; 0.2 in [0, 1] is always inside the bounds."""
    eps, x = 0.1, torch.full((2, 1, 4, 4), 0.5)
    direction = torch.ones(16) if norm == "linf" else torch.ones(16) / 4.0  # unit L-inf / unit L2
    edge = tolerance(eps, norm, (0.0, 1.0), 16)
    rows = torch.stack([direction * edge * (1 - 1e-9), direction * edge * (1 + 1e-5)]).to(torch.float64)
    x_adv = (x.to(torch.float64) + rows.view(2, 1, 4, 4)).to(torch.float64)
    v = check_examples(x.to(torch.float64), x_adv, eps=eps, norm=norm, bounds=(0.0, 1.0))
    assert v.valid.tolist() == [True, False] and v.reasons == {BALL: 1}


def test_bounds_finiteness_and_shape_each_make_an_example_invalid() -> None:
    x = torch.full((4, 3), 0.5)
    x_adv = x.clone()
    x_adv[1, 0] = float("inf")
    x_adv[2, 1] = 1.0 + 1e-4  # past the bound, inside the ball
    x_adv[3, 2] = 0.5 + 0.3  # past the ball
    v = check_examples(x, x_adv, eps=0.31, norm="linf", bounds=(0.0, 1.0))
    assert v.valid.tolist() == [True, False, False, True]
    v = check_examples(x, x_adv, eps=0.1, norm="linf", bounds=(0.0, 1.0))
    assert v.fields() == {"invalid": 3, "invalid_reasons": {BALL: 1, BOUNDS: 1, NON_FINITE: 1}}
    assert torch.equal(v.counted(x, x_adv), torch.where(v.valid.view(-1, 1), x_adv, x))
    assert check_examples(x, x_adv[:2], eps=0.1, norm="linf", bounds=(0.0, 1.0)).reasons == {SHAPE: 4}


def test_a_faulty_attack_that_steps_past_eps_never_lowers_the_headline(
    tmp_path: Path,
    digits,
    plain_digits_mlp: nn.Module,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # type: ignore[no-untyped-def]
    """FGSM whose step is five times eps (an eps in another scale): every example it moved is recorded as invalid,
    and the worst case is at least the honest run's; judged as returned, its examples would have lowered it."""
    x, y = digits.x_test[:60], digits.y_test[:60]
    config = EvalConfig(
        dataset="digits", defenses=("plain",), attacks=("fgsm",), libraries=("inhouse",), eps=(0.1,), samples=(1,),
        n=60, judge_samples=1, indicators=False, transfer=False, source="test",
    )  # fmt: skip
    honest = evaluate(config, out=tmp_path / "honest", models={"plain": plain_digits_mlp}, x=x, y=y, progress=False)
    real_run, returned = libraries.run, []

    def faulty(library, attack, model, x, y, **kwargs):  # type: ignore[no-untyped-def]
        x_adv = real_run(library, attack, model, x, y, **kwargs)
        returned.append((x + 5 * (x_adv - x)).clamp(0, 1))
        return returned[-1]

    monkeypatch.setattr(libraries, "run", faulty)
    caplog.set_level("WARNING")
    broken = evaluate(config, out=tmp_path / "faulty", models={"plain": plain_digits_mlp}, x=x, y=y, progress=False)
    record = next(r for r in broken.store if r["kind"] == "attack")
    moved = int(((returned[0] - x).flatten(1).abs().amax(1) > 0.1 + 1e-6).sum())
    assert moved > 30 and record["invalid"] == moved and record["invalid_reasons"] == {BALL: moved}
    assert record["linf"] <= 0.1 + 1e-6  # the largest perturbation that counts
    fair, unfair = (summary(e.store, config, "plain", 0.1) for e in (honest, broken))
    assert fair is not None and unfair is not None
    assert unfair["robust_accuracy"] >= fair["robust_accuracy"]
    as_returned = Judge(plain_digits_mlp, 1)(returned[0], y)["acc_ensemble"]
    assert as_returned < fair["robust_accuracy"]  # what the headline would have been without the check
    report = "\n".join(section(broken.store, config))
    assert f"| plain | fgsm | inhouse | 1 | 0.1 | {moved} of 60 | {BALL}: {moved} |" in report
    assert f"fgsm/inhouse/samples 1 on plain at eps 0.1: {moved} of 60" in caplog.text
    assert "All examples of the 1 attack cells checked were inside." in "\n".join(section(honest.store, config))
