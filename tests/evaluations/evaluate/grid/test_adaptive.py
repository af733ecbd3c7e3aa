"""Adaptive attacks (DESIGN.md, §C8): a surrogate gradient a model declares gets its own attack cells, which join
the defense's worst case. A user model with a non-differentiable layer (rounding) and a straight-through estimate,
and the zoo's MWD with its pseudogradient."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stochdef.defenses.surrogate import switched
from stochdef.evaluations.evaluate import EvalConfig, evaluate
from stochdef.evaluations.evaluate.adaptive import with_declarations
from stochdef.evaluations.evaluate.grid.cells import AttackCell, grid
from stochdef.evaluations.evaluate.outputs.report import markdown
from stochdef.evaluations.evaluate.outputs.worst_case import section, summary


class Quantize(nn.Module):
    """Rounds its input to multiples of 1/2 (zero gradient almost everywhere); declares the straight-through
    estimate (identity gradient) as its surrogate ``ste``."""

    def __init__(self) -> None:
        super().__init__()
        self.straight_through = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = (x * 2).round() / 2
        return x + (q - x).detach() if self.straight_through else q

    def surrogate_gradients(self):  # type: ignore[no-untyped-def]
        return {"ste": lambda: switched(self, "straight_through", True)}


def test_a_user_model_declaring_a_straight_through_estimate_is_attacked_through_it(
    tmp_path: Path, digits, plain_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    """PGD on the rounding net's own gradient (zero) moves nothing; through the declared estimate it breaks most
    examples, and the worst case is at most that cell's accuracy (it is the AND over every cell)."""
    model = nn.Sequential(Quantize(), plain_digits_mlp).eval()
    x, y = digits.x_test[:60], digits.y_test[:60]
    config = EvalConfig(
        dataset="digits", defenses=("quant",), attacks=("pgd", "square"), libraries=("inhouse",), eps=(0.3,),
        samples=(1,), n=60, judge_samples=1, indicators=False, transfer=False, source="test",
    )  # fmt: skip
    assert with_declarations(config, {"quant": model}).surrogates == (("quant", "ste"),)
    done = evaluate(config, out=tmp_path, models={"quant": model}, x=x, y=y, progress=False)
    assert done.config.surrogates == (("quant", "ste"),)
    attacks = [r for r in done.store if r["kind"] == "attack"]
    adaptive = [r for r in attacks if r.get("surrogate") == "ste"]
    assert [r["attack"] for r in adaptive] == ["pgd"]  # Square takes no gradient: no adaptive cell
    plain = next(r for r in attacks if r["attack"] == "pgd" and "surrogate" not in r)
    assert plain["linf"] == 0.0 and adaptive[0]["linf"] > 0.29  # zero gradient: PGD stays at x
    assert adaptive[0]["acc_ensemble"] < plain["acc_ensemble"] - 0.3
    worst = summary(done.store, done.config, "quant", 0.3)
    assert worst is not None and worst["robust_accuracy"] <= adaptive[0]["acc_ensemble"]
    assert worst["adaptive"] == ["pgd/inhouse/samples 1/ste gradient"]
    assert "- quant: adaptive attacks through its ste gradient: pgd/inhouse." in section(done.store, done.config)
    assert f"| pgd [ste gradient] | inhouse | {adaptive[0]['acc_ensemble']:.2f}" in markdown(done.store, done.config)
    assert not Quantize().straight_through  # the surrogate is switched off again after the attack


def test_zoo_mwd_declares_its_pseudogradient_and_its_cells_join_the_grid() -> None:
    """mwd-256's adaptive cells: every gradient attack x library x draws x eps, keyed apart from its own; the
    explicit spelling mwd-256[psd] gets none (it is already attacked through the pseudogradient)."""
    config = with_declarations(EvalConfig(defenses=("mwd-256", "mwd-256[psd]"), attacks=("fgsm", "pgd", "square"),
                                        eps=(0.1, 0.3), samples=(1,)))  # fmt: skip
    assert config.surrogates == (("mwd-256", "pseudo"),) and config.certificates == ("mwd-256", "mwd-256[psd]")
    cells = [c for c in grid(config) if isinstance(c, AttackCell)]
    adaptive = [c for c in cells if c.surrogate]
    libraries = len(config.libraries)
    assert len(adaptive) == 2 * 2 * libraries and {c.defense for c in adaptive} == {"mwd-256"}
    assert len({c.key for c in cells}) == len(cells)
