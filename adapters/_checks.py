"""Argument checks shared by the adapters: each raises with the argument's name and value, never fixes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Bounds = tuple[float, float]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; raise ``TypeError``/``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists the valid ones."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)


def check_bounds(name: str, bounds: object) -> Bounds:
    """Validate a ``(low, high)`` pair of finite floats with ``low < high``."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"{name} must be a (low, high) pair, got {bounds!r}")
    low, high = (float(b) for b in bounds)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} must be finite, got {bounds!r}")
    if low >= high:
        raise ValueError(f"{name} must have low < high, got {bounds!r}")
    return low, high


def check_input(
    x: torch.Tensor,
    *,
    name: str = "x",
    bounds: Bounds | None = None,
    sample_shape: Sequence[int] | None = None,
) -> None:
    """Check a batch: a floating tensor of rank >= 2, all finite, inside ``bounds``, rows of ``sample_shape``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have a batch dimension (rank >= 2), got shape {tuple(x.shape)}")
    if sample_shape is not None and tuple(x.shape[1:]) != tuple(sample_shape):
        raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, sample_shape))}), got {tuple(x.shape)}")
    if x.numel() == 0:
        return
    x = x.detach()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    if bounds is not None:
        low, high = bounds
        lo, hi = (float(v) for v in torch.aminmax(x))
        if lo < low or hi > high:
            raise ValueError(f"{name} must lie inside bounds {bounds}, got values in [{lo:.6g}, {hi:.6g}]")


def check_labels(y: torch.Tensor, *, batch: int, num_classes: int | None = None, name: str = "y") -> None:
    """Check integer class labels of shape ``(batch,)`` inside ``[0, num_classes)``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(y.shape)}")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(y.min())}")
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        raise ValueError(f"{name} must be < {num_classes} (the number of classes), got {int(y.max())}")
