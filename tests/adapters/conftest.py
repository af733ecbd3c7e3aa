"""Randomized models that draw once per call (DESIGN.md, §C2): the rows of one call share a draw, calls differ."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.defenses import fit


class SharedNoise(nn.Module):
    """``net(x + std * e)`` with one Gaussian ``e`` of the input's shape without the batch dimension per call."""

    def __init__(self, net: nn.Module, *, std: float) -> None:
        super().__init__()
        self.net, self.std = net, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.std * torch.randn(x.shape[1:], dtype=x.dtype, device=x.device))


class ResizePad(nn.Module):
    """Xie et al. 2018's randomization layer ("Mitigating Adversarial Effects Through Randomization", ICLR 2018),
    drawn once per call as in the paper's code: the whole batch resized (bilinear) to a random ``r x r`` with
    ``size <= r <= out``, zero-padded at a random offset to ``out x out``, then ``net``."""

    def __init__(self, net: nn.Module, *, size: int, out: int) -> None:
        super().__init__()
        self.net, self.size, self.out = net, size, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = int(torch.randint(self.size, self.out + 1, ()))
        top, left = (int(v) for v in torch.randint(0, self.out - r + 1, (2,)))
        z = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        return self.net(F.pad(z, (left, self.out - r - left, top, self.out - r - top)))


def _head(inputs: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, 32), nn.Tanh(), nn.Linear(32, classes))


def shared_noise_model() -> nn.Module:
    """A per-call model on 1x8x8 inputs: shared Gaussian noise (std 0.3), then a 64-32-10 tanh MLP."""
    return SharedNoise(_head(64), std=0.3).eval()


def resize_pad_model() -> nn.Module:
    """A per-call model on 1x8x8 inputs: a random resize to 8..11 and pad to 11x11, then a 121-32-10 tanh MLP."""
    return ResizePad(_head(121), size=8, out=11).eval()


PER_CALL: dict[str, Callable[[], nn.Module]] = {"shared-noise": shared_noise_model, "resize-pad": resize_pad_model}


@pytest.fixture(params=sorted(PER_CALL))
def per_call_model(request: pytest.FixtureRequest) -> nn.Module:
    """Each per-call model, untrained, from a fixed seed."""
    torch.manual_seed(0)
    return PER_CALL[str(request.param)]()


@pytest.fixture(scope="session")
def per_call_digits_model(digits) -> nn.Module:  # type: ignore[no-untyped-def]
    """Xie et al.'s random resize-and-pad (drawn once per call) before a 121-32-10 MLP, trained on the digits."""
    torch.manual_seed(0)
    model = resize_pad_model()
    fit(model, digits.x_train, digits.y_train, epochs=15, batch_size=64, lr=3e-3, progress=False, seed=0)
    return model.eval()
