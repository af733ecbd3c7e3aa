"""The argument checks of all three packages: each raises with the argument's name and value, never fixes.

One module serves ``stochdef.defenses``, ``stochdef.adapters`` and ``stochdef.evaluations`` (it sits in the
lowest layer, the defenses, so that no import runs back up). It is not part of the user API: nothing here is
exported from :mod:`stochdef.defenses`. What counts as bad input, and where it is checked: DESIGN.md, §C5.

The batch checks shared by every entry point that takes a model and a batch (the in-house attacks,
``ensemble_accuracy``, ``certified_accuracy``, the adapters): :func:`check_input`, :func:`check_like_model`,
:func:`check_labels` and, on what the model returns, :func:`check_logits` (a tensor of logits, not a tuple, not
probabilities, as many classes as declared). An empty batch is no error: it gets an empty result.

Example:
    >>> check_logits(torch.tensor([[0.2, 0.8]]), batch=1)
    Traceback (most recent call last):
    ...
    ValueError: model must return logits, got probabilities (every row is >= 0 and sums to 1): drop the final softmax
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

Bounds = tuple[float, float]


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
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
    """Validate a ``(low, high)`` pair of finite numbers with ``low < high`` (a tuple, list or 2-element array)."""
    if isinstance(bounds, np.ndarray) and bounds.shape == (2,):
        bounds = tuple(bounds.tolist())
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"{name} must be a (low, high) pair, got {bounds!r}")
    if any(isinstance(b, bool) or not isinstance(b, (int, float, np.integer, np.floating)) for b in bounds):
        raise TypeError(f"{name} must hold two real numbers, got {bounds!r}")
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} must be finite, got {bounds!r}")
    if low >= high:
        raise ValueError(f"{name} must have low < high, got {bounds!r}")
    return low, high


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """Validate a per-example shape: a non-empty tuple/list of positive ints."""
    if not isinstance(shape, (tuple, list)) or len(shape) == 0:
        raise TypeError(f"{name} must be a non-empty tuple of ints (one example's shape), got {shape!r}")
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
        raise ValueError(f"{name} must hold positive ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def check_like_model(x: torch.Tensor, model: torch.nn.Module, *, name: str = "x") -> None:
    """Raise unless ``x`` has the dtype and device of ``model``'s first floating parameter (or buffer).

    A model without floating parameters or buffers accepts anything; nothing is ever cast or moved.
    """
    for tensor in itertools.chain(model.parameters(), model.buffers()):  # lazily: stops at the first float
        if not tensor.is_floating_point():
            continue
        if x.device != tensor.device:
            raise ValueError(f"{name} must be on the model's device {tensor.device}, got {x.device}")
        if x.dtype != tensor.dtype:
            raise TypeError(f"{name} must have the model's dtype {tensor.dtype}, got {x.dtype}")
        return


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


def check_labels(
    y: torch.Tensor,
    *,
    batch: int,
    num_classes: int | None = None,
    device: torch.device | None = None,
    name: str = "y",
) -> None:
    """Check int64 class labels of shape ``(batch,)`` inside ``[0, num_classes)`` (on ``device`` when given).

    Only ``torch.int64`` is accepted: it is the index type every loss and ``gather`` takes, and labels are
    never cast behind the caller's back.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype != torch.int64:
        raise TypeError(f"{name} must hold int64 class indices (torch.long), got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(y.shape)}")
    if device is not None and y.device != device:
        raise ValueError(f"{name} must be on {device} like the inputs, got {y.device}")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(y.min())}")
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        raise ValueError(f"{name} must be < {num_classes} (the number of classes), got {int(y.max())}")


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it lies in the interval; e.g. ``low=0, low_open=True`` means ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})") from None
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got nan")
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        left = "-inf" if low is None else f"{low}"
        right = "inf" if high is None else f"{high}"
        interval = (
            f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"
        )
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return v


def check_interval(name: str, low: float, high: float, *, minimum: float | None = None) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair with ``low <= high`` (and ``low >= minimum`` when given)."""
    low = check_range(f"{name}[0]", low, low=minimum)
    high = check_range(f"{name}[1]", high, low=minimum)
    if low > high:
        raise ValueError(f"{name} must have min <= max, got ({low}, {high})")
    return low, high


def check_logits(
    out: object,
    *,
    batch: int,
    num_classes: int | None = None,
    name: str = "model",
    classes_name: str = "num_classes",
) -> torch.Tensor:
    """Return ``out`` if it is what a classifier must return for a batch of ``batch`` rows: a floating tensor of
    logits of shape ``(batch, classes)`` (``classes == num_classes`` when given), not a tuple, not probabilities.

    Probabilities are recognized when every row is >= 0 and sums to 1 (a softmax output); log-probabilities
    pass (they are logits up to a constant). ``name`` names the model, ``classes_name`` the class-count argument.
    """
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"{name} must return a tensor of logits of shape (batch, classes), got {type(out).__name__}"
            + (" (return only the logits)" if isinstance(out, (tuple, list, dict)) else "")
        )
    if not out.is_floating_point():
        raise TypeError(f"{name} must return floating-point logits, got dtype {out.dtype}")
    if out.dim() != 2 or out.shape[0] != batch:
        raise ValueError(f"{name} must return logits of shape ({batch}, classes), got shape {tuple(out.shape)}")
    if num_classes is not None and out.shape[1] != num_classes:
        raise ValueError(f"{classes_name} is {num_classes} but {name} returns {out.shape[1]} class scores per row")
    if out.numel() and out.shape[1] >= 2:
        o = out.detach()
        tol = 1e-4 if o.dtype in (torch.float16, torch.bfloat16) else 1e-6 * out.shape[1]
        if bool((o >= 0).all()) and bool(((o.sum(dim=1) - 1).abs() <= tol).all()):
            raise ValueError(
                f"{name} must return logits, got probabilities (every row is >= 0 and sums to 1): "
                "drop the final softmax"
            )
    return out


def check_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bounds: Bounds | None = None,
    num_classes: int | None = None,
) -> None:
    """The checks of a model's batch: ``model`` a module; ``x`` finite, of rank >= 2, inside ``bounds``, with the
    model's dtype and device; ``y`` int64 labels of shape ``(batch,)`` on ``x``'s device, in range."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_input(x, bounds=bounds)
    check_like_model(x, model)
    check_labels(y, batch=x.shape[0], num_classes=num_classes, device=x.device)


class CheckedOutput(nn.Module):
    """``model`` whose every output goes through :func:`check_logits` (a wrapper: no draw, no parameter of its own).

    >>> CheckedOutput(nn.Softmax(dim=1))(torch.zeros(2, 3))
    Traceback (most recent call last):
    ...
    ValueError: model must return logits, got probabilities (every row is >= 0 and sums to 1): drop the final softmax
    """

    def __init__(self, model: nn.Module, *, num_classes: int | None = None, classes_name: str = "num_classes") -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.classes_name = classes_name

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        return check_logits(out, batch=x.shape[0], num_classes=self.num_classes, classes_name=self.classes_name)


@contextlib.contextmanager
def leaves_no_trace(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Calls of ``model`` inside leave no trace: they run without gradients inside ``torch.random.fork_rng``
    (CPU and ``device``), and on exit the model's buffers (batch-norm statistics), the state of every
    ``torch.Generator`` its layers hold, NumPy's and Python's global RNGs (a transform drawing its size with
    ``np.random`` or ``random``) and every submodule's train/eval mode are restored, so the calls that follow
    draw exactly what they would have drawn without them (the adapters' probes)."""
    modes = [(m, m.training) for m in model.modules()]
    numpy_state, python_state = np.random.get_state(), random.getstate()
    buffers = [b.detach().clone() for b in model.buffers()]
    generators = [
        (g, g.get_state()) for m in model.modules() for g in vars(m).values() if isinstance(g, torch.Generator)
    ]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers, strict=True):
                b.copy_(saved)
        for g, state in generators:
            g.set_state(state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        for module, training in modes:
            module.training = training


def probe_classes(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    bounds: Bounds,
    device: torch.device,
    classes_name: str = "nb_classes",
    num_classes: int | None = None,
) -> int:
    """The number of classes ``model`` scores, from one call on one input (the middle of ``bounds``), checked with
    :func:`check_logits`. The call runs in eval mode and leaves no trace (:func:`leaves_no_trace`)."""
    dtype = next((t.dtype for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()), None)
    x = torch.full(
        (1, *input_shape), (bounds[0] + bounds[1]) / 2, dtype=dtype or torch.get_default_dtype(), device=device
    )
    with leaves_no_trace(model, device):
        out = model.eval()(x)
    return int(check_logits(out, batch=1, num_classes=num_classes, classes_name=classes_name).shape[1])
