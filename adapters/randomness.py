"""Control a model's randomness: fix it to one draw, keep dropout random under ``eval()``, detect identical draws.

How a model draws (per row, per call, not at all) and the adapters' warning about it: :mod:`.draws`.
"""

from __future__ import annotations

import torch
from torch import nn

from stochdef.defenses.validation import check_int, leaves_no_trace

from .draws import PROBE_DRAWS, IdenticalDrawsWarning

__all__ = [
    "FixedRandomness",
    "IdenticalDrawsWarning",
    "fix_randomness",
    "identical_draws",
    "is_random",
    "keep_random",
]


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


# -- randomness that hangs on self.training (MC dropout) ----------------------------------------------------


class KeepRandom(nn.Module):
    """Mixin of :func:`keep_random`: ``training`` reads ``True`` always and ignores ``train()``/``eval()``."""

    @property
    def training(self) -> bool:
        return True

    @training.setter
    def training(self, mode: bool) -> None:
        pass


class KeepRandomDropout(KeepRandom, nn.Dropout):
    """``nn.Dropout`` that stays random in ``eval()`` (see :func:`keep_random`)."""


class KeepRandomDropout1d(KeepRandom, nn.Dropout1d):
    """``nn.Dropout1d`` that stays random in ``eval()`` (see :func:`keep_random`)."""


class KeepRandomDropout2d(KeepRandom, nn.Dropout2d):
    """``nn.Dropout2d`` that stays random in ``eval()`` (see :func:`keep_random`)."""


class KeepRandomDropout3d(KeepRandom, nn.Dropout3d):
    """``nn.Dropout3d`` that stays random in ``eval()`` (see :func:`keep_random`)."""


class KeepRandomAlphaDropout(KeepRandom, nn.AlphaDropout):
    """``nn.AlphaDropout`` that stays random in ``eval()`` (see :func:`keep_random`)."""


class KeepRandomFeatureAlphaDropout(KeepRandom, nn.FeatureAlphaDropout):
    """``nn.FeatureAlphaDropout`` that stays random in ``eval()`` (see :func:`keep_random`)."""


# Named classes for torch's own dropout layers (so that a kept-random model still pickles); others get one made.
_KEPT: dict[type[nn.Module], type[nn.Module]] = {
    cls.__mro__[2]: cls
    for cls in (
        KeepRandomDropout,
        KeepRandomDropout1d,
        KeepRandomDropout2d,
        KeepRandomDropout3d,
        KeepRandomAlphaDropout,
        KeepRandomFeatureAlphaDropout,
    )
}
DROPOUT: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd,)


def _kept_class(cls: type[nn.Module]) -> type[nn.Module]:
    if cls not in _KEPT:
        _KEPT[cls] = type(f"KeepRandom{cls.__name__}", (KeepRandom, cls), {"__module__": __name__})
    return _KEPT[cls]


def keep_random(model: nn.Module, *, layers: tuple[type[nn.Module], ...] = DROPOUT, enabled: bool = True) -> nn.Module:
    """Keep the layers whose randomness hangs on ``self.training`` random under ``eval()`` (MC dropout).

    ART and torchattacks call ``model.eval()`` before they attack, which switches ``nn.Dropout`` (and every
    layer of ``layers``, by default all of torch's dropout layers) off: an adapter with ``samples > 1`` would
    average identical draws. This changes, in place, the class of each such layer of ``model`` to a subclass
    whose ``training`` is always ``True``; nothing else changes (weights, ``state_dict`` keys, the other
    layers' modes: batch norm still follows ``eval()``). ``enabled=False`` undoes it (the layers take the
    mode of ``model``). Returns ``model``. stochdef's own defenses need none of this (DESIGN.md, §C1).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = keep_random(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))).eval()
        >>> x = torch.ones(1, 4)
        >>> torch.equal(net(x), net(x))
        False
        >>> torch.equal(*(keep_random(net, enabled=False).eval()(x) for _ in range(2)))
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(layers, tuple) or not all(isinstance(c, type) and issubclass(c, nn.Module) for c in layers):
        raise TypeError(f"layers must be a tuple of nn.Module classes, got {layers!r}")
    for module in model.modules():
        kept = isinstance(module, KeepRandom)
        if enabled and not kept and isinstance(module, layers):
            module.__class__ = _kept_class(type(module))
        elif not enabled and kept:
            module.__class__ = next(
                c for c in type(module).__mro__[1:] if issubclass(c, nn.Module) and not issubclass(c, KeepRandom)
            )
            module.training = model.training
    return model


# -- identical draws ------------------------------------------------------------------------------------------


def identical_draws(
    model: nn.Module, x: torch.Tensor, *, draws: int = PROBE_DRAWS, max_batch: int = PROBE_DRAWS
) -> bool:
    """True when ``draws`` copies of ``x[0]`` give identical outputs, in ``model``'s current mode.

    The copies go in calls of at most ``max_batch`` rows (one call by default).
    The probe leaves no trace (``validation.leaves_no_trace``): the calls that follow draw exactly what
    they would have drawn without it.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> identical_draws(nn.Linear(4, 3), torch.rand(2, 4))
        True
        >>> identical_draws(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train(), torch.rand(2, 4))
        False
    """
    check_int("draws", draws, minimum=2)
    check_int("max_batch", max_batch, minimum=1)
    batch = x[:1].detach().repeat(draws, *([1] * (x.dim() - 1)))
    with leaves_no_trace(model, x.device):
        out = torch.cat([model(batch[i : i + max_batch]) for i in range(0, draws, max_batch)])
    return bool((out == out[:1]).all())
