"""The judge's ensemble averages real draws of a model that draws once per call (DESIGN.md, §C2).

The model adds one Gaussian tensor of the input's shape without the batch dimension per call. Reference: the
softmax averaged over separate single calls from the same seed (the judge's one-draw call first, then the
ensemble's; the draw probe leaves no trace of the RNG). One call on the replicated batch would hold one draw.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate.compute.judge import Judge

B, S, CLASSES = 12, 8, 5


class SharedNoise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + 2.0 * torch.randn(x.shape[1:], dtype=x.dtype))  # one draw for every row of a call


def _setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = SharedNoise().eval()
    generator = torch.Generator().manual_seed(1)
    return model, torch.rand(B, 6, generator=generator), torch.randint(0, CLASSES, (B,), generator=generator)


@pytest.mark.parametrize("draws", [None, "per-call"])  # found by the EoT module's probe, or given (the clean cell's)
def test_the_ensemble_of_a_per_call_model_averages_separate_calls(draws: str | None) -> None:
    model, x, y = _setup()
    torch.manual_seed(5)
    judged = Judge(model, S, draws=draws)(x, y)  # type: ignore[arg-type]
    torch.manual_seed(5)
    with torch.no_grad():
        single = model(x).argmax(1) == y
        probs = torch.stack([model(x).softmax(1) for _ in range(S)]).mean(0)
    confidence, _ = probs.max(1)
    assert judged["acc_single"] == pytest.approx(float(single.float().mean()))
    assert judged["correct"] == "".join("1" if c else "0" for c in (probs.argmax(1) == y).tolist())
    # the summed confidence of the ensemble's top class, to float rounding (B values of at most 1)
    assert sum(judged["calibration"]["confidence"]) == pytest.approx(float(confidence.sum()), abs=1e-4)
    # S real draws: the average is not one draw's softmax (copies of one call would be exactly that)
    with torch.no_grad():
        torch.manual_seed(5)
        model(x)
        one_draw = model(x).softmax(1).max(1).values.sum()
    assert abs(float(one_draw) - float(confidence.sum())) > 1e-2
