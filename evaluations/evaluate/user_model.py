"""A user's own model, checkpoint and test data for ``stochdef evaluate --model MODULE:ATTR``.

* ``MODULE:ATTR`` names an ``nn.Module`` or a zero-argument callable returning one (a class, a factory),
  importable from the current directory (``ATTR`` may be dotted: ``pkg.nets:Zoo.small``);
* a checkpoint is a state dict saved with ``torch.save`` (or ``{"state_dict": ...}``, as ``stochdef train``
  writes), loaded into the model's own parameters (``weights_only``: no pickled classes run);
* test data is a ``.pt`` file (``torch.save({"x": x, "y": y})``) or an ``.npz`` (``np.savez(f, x=x, y=y)``):
  ``x`` float inputs of shape ``(N, *input_shape)`` inside the bounds (``--bounds``, default [0, 1]),
  ``y`` integer class labels of shape ``(N,)``.

:func:`fingerprint` hashes a model's parameters and the data, so a cell computed for one checkpoint is
never reused for another (DESIGN.md, §C4).

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
>>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(b)
(True, False)
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.defenses.validation import check_bounds, check_input


def load_model(target: str) -> nn.Module:
    """The module named by ``MODULE:ATTR``, importable from the current directory, in ``eval()`` mode."""
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise ValueError(f"model must be MODULE:ATTR (e.g. mypkg.nets:build), got {target!r}")
    module_name, attr = target.split(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model {target!r}: cannot import {module_name!r} ({err})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model {target!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise TypeError(
                f"model {target!r} must be an nn.Module or a callable returning one, got {type(obj).__name__}"
            )
        obj = obj()
        if not isinstance(obj, nn.Module):
            raise TypeError(f"model {target!r}: calling it returned {type(obj).__name__}, not an nn.Module")
    return obj.eval()


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict (or ``{"state_dict": ...}``) from ``path`` into ``model``, strictly; returns it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    device = next(iter(model.parameters()), torch.empty(0)).device
    blob = torch.load(path, map_location=device, weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"checkpoint {str(path)!r} does not fit the model: {first}") from None
    return model


def load_data(
    path: str | Path, *, bounds: tuple[float, float] = (0.0, 1.0), n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a ``.pt`` or ``.npz`` file holding ``x`` and ``y``; the first ``n`` examples if given."""
    path = Path(path)
    if path.suffix not in (".pt", ".npz"):
        raise ValueError(f"data {str(path)!r} must be a .pt or .npz file holding x and y")
    if not path.is_file():
        raise ValueError(f"data {str(path)!r} is not a file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            blob: dict[str, Any] = {k: torch.from_numpy(f[k]) for k in f.files}
    else:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "x" not in blob or "y" not in blob:
        found = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"data {str(path)!r} must hold 'x' and 'y', got {found}")
    x, y = torch.as_tensor(blob["x"]), torch.as_tensor(blob["y"])
    if n is not None:
        if n > len(x):
            raise ValueError(f"n must be <= {len(x)} (the examples in {str(path)!r}), got {n}")
        x, y = x[:n], y[:n]
    check_input(x, bounds=check_bounds("bounds", bounds))
    if y.dtype != torch.int64:
        raise TypeError(f"y in {str(path)!r} must hold int64 class labels, got {y.dtype}")
    return x, y


def fingerprint(*parts: nn.Module | torch.Tensor | str, extra: Iterable[str] = ()) -> str:
    """16 hex digits of the SHA-256 of models' parameters and buffers, tensors and strings."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, nn.Module):
            tensors: list[tuple[str, torch.Tensor]] = sorted(part.state_dict().items())
            digest.update(type(part).__qualname__.encode())
        elif isinstance(part, torch.Tensor):
            tensors = [("", part)]
        else:
            digest.update(part.encode())
            continue
        for name, t in tensors:
            digest.update(name.encode())
            digest.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]
