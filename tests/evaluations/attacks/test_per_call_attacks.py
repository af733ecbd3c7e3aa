"""The in-house attacks' own loops on a model that draws once per call (DESIGN.md, §C2): real draws averaged.

The model adds one Gaussian tensor of the input's shape without the batch dimension per call (the rows of a call
share it). The success checks (``_common.evaluate``) and DeepFool's linearization must take one call per draw: a
call on the batch replicated ``samples`` times would hold one draw. References are separate single calls from the
same seed (the draw probe leaves no trace of the RNG, so the estimator's calls draw what the reference's draw).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.evaluations.attacks import deepfool
from stochdef.evaluations.attacks._common import draws_of, evaluate
from stochdef.evaluations.attacks.deepfool import linearize

B, S, CLASSES = 5, 6, 4


class SharedNoise(nn.Module):
    """A linear classifier of ``x + std * e``, one ``e`` per call (``per_row=False``) or per row (``True``)."""

    def __init__(self, *, per_row: bool, std: float = 0.5) -> None:
        super().__init__()
        self.linear = nn.Linear(8, CLASSES)
        self.per_row, self.std = per_row, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape if self.per_row else x.shape[1:], dtype=x.dtype, device=x.device)
        return self.linear((x + self.std * noise).flatten(1))


def _model(*, per_row: bool) -> SharedNoise:
    torch.manual_seed(0)
    return SharedNoise(per_row=per_row).eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(B, 1, 2, 4, generator=generator), torch.randint(0, CLASSES, (B,), generator=generator)


def test_the_draw_kind_is_found_once_per_attack() -> None:
    x, _ = _data()
    assert draws_of(_model(per_row=False), x, samples=S) == "per-call"
    assert draws_of(_model(per_row=True), x, samples=S) == "per-row"
    assert draws_of(_model(per_row=False), x, samples=1) == "per-row"  # one draw is one call whatever the kind


def test_the_success_check_averages_separate_calls_of_a_per_call_model() -> None:
    model, (x, y) = _model(per_row=False), _data()
    torch.manual_seed(7)
    logits, loss = evaluate(model, x, y, samples=S)
    torch.manual_seed(7)
    with torch.no_grad():
        calls = [model(x) for _ in range(S)]
    expected = torch.stack(calls).mean(0)
    expected_loss = torch.stack([F.cross_entropy(out, y, reduction="none") for out in calls]).mean(0)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    # the draws are real: S distinct calls (a replicated call would give S copies of the first draw)
    assert not torch.allclose(logits, calls[0], atol=1e-3)


def test_deepfool_linearizes_separate_calls_of_a_per_call_model() -> None:
    model, (x, y) = _model(per_row=False), _data()
    classes = (y[:, None] + 1) % CLASSES
    torch.manual_seed(3)
    _, f, w = linearize(model, x, y, classes, samples=S, draws="per-call")
    torch.manual_seed(3)
    diffs, grads = [], []
    for _ in range(S):
        xr = x.clone().requires_grad_(True)
        out = model(xr)
        diff = out.gather(1, classes).squeeze(1) - out.gather(1, y[:, None]).squeeze(1)
        (g,) = torch.autograd.grad(diff.sum(), xr)
        diffs.append(diff.detach())
        grads.append(g)
    torch.testing.assert_close(f[:, 0], torch.stack(diffs).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w[:, 0], torch.stack(grads).mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_row", [False, True])
def test_deepfool_takes_one_call_per_draw_of_a_per_call_model(per_row: bool) -> None:
    """Every call on a per-call model holds at most the batch (one draw each); a per-row model gets the
    replicated call (``S`` draws of the batch in one call)."""
    model, (x, y) = _model(per_row=per_row), _data()
    rows: list[int] = []
    handle = model.register_forward_hook(lambda _m, args, _out: rows.append(int(args[0].shape[0])))
    try:
        deepfool(model, x, y, steps=3, samples=S, bounds=(-5.0, 5.0))
    finally:
        handle.remove()
    assert (max(rows) == S * B) if per_row else (max(rows) <= B), rows
