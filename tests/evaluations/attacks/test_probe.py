"""The in-house attacks' class-count probe (``_common.prepare``) is ``validation.probe_classes``: it leaves no
trace, so an attack's draws are those it would make without the probe."""

from __future__ import annotations

import torch
from torch import nn

from stochdef.defenses import NoiseInjection
from stochdef.evaluations.attacks._common import prepare


def test_prepare_counts_the_classes_and_leaves_the_rng_and_the_mode_as_they_were() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(NoiseInjection(std=0.3), nn.Linear(6, 5)).train()
    x, y = torch.rand(4, 6), torch.tensor([0, 1, 2, 4])
    state = torch.get_rng_state()
    bounds, num_classes = prepare(model, x, y, (0.0, 1.0))
    assert (bounds, num_classes) == ((0.0, 1.0), 5)
    assert torch.equal(torch.get_rng_state(), state)  # a probe with a draw of the noise would move it
    assert model.training
