"""The in-house attacks' class-count probe (``_common.prepare``) is ``validation.probe_classes``: it leaves no
trace, so an attack's draws are those it would make without the probe."""

from __future__ import annotations

import pytest
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


def test_pgd_finds_the_draw_kind_once_and_draws_what_it_drew_when_it_probed_at_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the reference: the same seeded PGD with the kind left to eot_value_and_grad and evaluate, which probe
    # (leaving no trace) at every call
    import importlib

    from stochdef.adapters import draws as draws_module
    from stochdef.evaluations.attacks import _common

    pgd_module = importlib.import_module("stochdef.evaluations.attacks.pgd")

    torch.manual_seed(0)
    model = nn.Sequential(NoiseInjection(std=0.3), nn.Linear(6, 5)).eval()
    x, y = torch.rand(8, 6), torch.randint(0, 5, (8,))
    calls = []
    real = draws_module.probe

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    for module in (draws_module, _common):
        monkeypatch.setattr(module, "probe", counted)
    torch.manual_seed(1)
    ours = pgd_module.pgd(model, x, y, eps=0.2, step=0.05, steps=6, samples=4)
    assert len(calls) == 1

    monkeypatch.setattr(pgd_module, "draws_of", lambda *a, **k: None)  # no kind: every call probes
    calls.clear()
    torch.manual_seed(1)
    reference = pgd_module.pgd(model, x, y, eps=0.2, step=0.05, steps=6, samples=4)
    assert len(calls) == 7  # six gradients and the final check
    assert torch.equal(ours.x_adv, reference.x_adv) and torch.equal(ours.success, reference.success)
