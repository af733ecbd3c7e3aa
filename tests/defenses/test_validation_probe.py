"""The adapters' probes leave no trace: ``to_art``'s class-count probe and the identical-draws probe."""

from __future__ import annotations

import torch
from torch import nn

from stochdef.adapters import to_art
from stochdef.defenses.validation import leaves_no_trace


class _OwnGenerator(nn.Module):
    """A noisy layer drawing from its own generator, with batch norm in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(3)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x.flatten(1)) + torch.randn(x.shape[0], 4, generator=self.gen)
        return self.head(h + torch.randn_like(h))


def test_to_art_probe_moves_no_generator_buffer_mode_or_global_rng() -> None:
    torch.manual_seed(0)
    model = _OwnGenerator().train()
    gen_state, rng_state = model.gen.get_state(), torch.get_rng_state()
    buffers = [b.clone() for b in model.buffers()]
    to_art(model, input_shape=(4,), nb_classes=10, clip_values=(0.0, 1.0), samples=1)
    assert torch.equal(model.gen.get_state(), gen_state)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers, strict=True))
    assert model.training and model.norm.training


def test_leaves_no_trace_restores_after_an_error() -> None:
    model = _OwnGenerator().train()
    gen_state = model.gen.get_state()
    try:
        with leaves_no_trace(model, torch.device("cpu")):
            model.eval()(torch.rand(2, 4))
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert torch.equal(model.gen.get_state(), gen_state) and model.training
