"""Fix a randomized model's randomness to one draw (the "attack must succeed when fixed" sanity check)."""

from __future__ import annotations

import torch
from torch import nn

from stochdef.defenses.validation import check_int


class FixedRandomness(nn.Module):
    """Wrap ``model`` so every call re-seeds the global RNG with ``seed`` before running it.

    Two calls on batches of the same shape then see the same draw, so the wrapped model is a
    deterministic function and a white-box attack on it must succeed as on any plain network
    (Carlini et al. 2019, "On Evaluating Adversarial Robustness", Sec. 5). The caller's RNG state is
    restored after each call. Layers given their own ``torch.Generator`` are not affected.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Noisy(nn.Module):
        ...     def forward(self, x):
        ...         return x + torch.randn_like(x)
        >>> fixed = FixedRandomness(Noisy(), seed=0)
        >>> x = torch.zeros(2, 3)
        >>> torch.equal(fixed(x), fixed(x))
        True
    """

    def __init__(self, model: nn.Module, *, seed: int) -> None:
        super().__init__()
        self.model = model
        self.seed = check_int("seed", seed, minimum=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return self.model(x)


def fix_randomness(model: nn.Module, *, seed: int = 0) -> FixedRandomness:
    """Return ``model`` with its randomness frozen to one draw per input shape (see :class:`FixedRandomness`)."""
    return FixedRandomness(model, seed=seed)


def is_random(model: nn.Module, x: torch.Tensor, *, passes: int = 2) -> bool:
    """True when ``passes`` calls on the same input (after ``model.eval()``) give different outputs."""
    check_int("passes", passes, minimum=2)
    model.eval()
    with torch.no_grad():
        first = model(x)
        return any(not torch.equal(first, model(x)) for _ in range(passes - 1))
