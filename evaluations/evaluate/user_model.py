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
import itertools
import pickle
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.defenses.validation import check_bounds, check_input, probe_classes


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
    """Load a state dict (or ``{"state_dict": ...}``) from ``path`` into ``model``, strictly; returns it. A file
    that is no state dict (a pickled model, an ``.npz``) or one for another architecture fails on one line that
    says what to change (every missing and unexpected key, every shape that differs)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    where = f"checkpoint {str(path)!r}"
    if _is_npz(path):
        raise ValueError(f"{where} is a NumPy .npz, not a torch state dict: save torch.save(model.state_dict(), PATH)")
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(
            f"{where}: this file holds a pickled model{what}, not a state dict: save model.state_dict() "
            "(torch.save(model.state_dict(), PATH))"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{where} cannot be read by torch.load ({str(err).strip().splitlines()[0]})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{where} holds {type(state).__name__}, not a state dict of tensors")
    if problems := fit_problems(model, state):
        raise ValueError(f"{where} does not fit the model {type(model).__name__}: {problems}")
    model.load_state_dict(state)
    return model


def _is_npz(path: Path) -> bool:
    """Whether ``path`` is a NumPy ``.npz`` (a zip of ``.npy`` arrays; torch's zip files hold ``data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)


def fit_problems(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """Why ``state`` does not fit ``model`` (every missing and unexpected key, every shape that differs), or ``""``.

    >>> from torch import nn
    >>> fit_problems(nn.Linear(2, 3), {"weight": torch.zeros(3, 2), "w2": torch.zeros(1)})
    "missing keys ['bias']; unexpected keys ['w2']"
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing keys {missing}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected}")
    if shapes:
        parts.append("shapes differ: " + ", ".join(shapes))
    if unexpected and all(k.startswith("module.") for k in unexpected):
        parts.append("the file's keys start with 'module.' (saved from DataParallel): save model.module.state_dict()")
    return "; ".join(parts)


def check_fits(model: nn.Module, x: torch.Tensor, *, bounds: tuple[float, float] = (0.0, 1.0), name: str = "x") -> int:
    """Check ``x`` against ``model`` before any forward pass, then call it on one input of ``x``'s shape; returns the
    number of classes it scores. Each mistake is one line that says what to change (the dtype to cast to, channels
    first, the device).

    >>> from torch import nn
    >>> check_fits(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), torch.zeros(2, 1, 2, 2))
    3
    >>> check_fits(nn.Conv2d(3, 4, 3), torch.zeros(2, 8, 8, 3))
    Traceback (most recent call last):
    ...
    ValueError: x: the model expects (N, 3, 8, 8), got (N, 8, 8, 3): channels first (x.permute(0, 3, 1, 2))
    """
    param = next((t for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()), None)
    if param is not None and x.dtype != param.dtype:
        target = str(param.dtype).removeprefix("torch.")
        raise TypeError(
            f"{name} is {str(x.dtype).removeprefix('torch.')} but the model's parameters are {target}: cast {name} "
            f"to {target} (x.to(torch.{target}), or x.astype(np.{target}) before saving)"
        )
    if param is not None and x.device != param.device:
        raise ValueError(f"{name} is on {x.device} but the model is on {param.device}: move one to the other")
    channels = _first_channels(model)
    shape = tuple(x.shape[1:])
    if channels is not None and len(shape) == 3 and shape[0] != channels:
        if shape[-1] == channels:
            want = (channels, shape[0], shape[1])
            raise ValueError(
                f"{name}: the model expects {_shape(want)}, got {_shape(shape)}: channels first "
                f"({name}.permute(0, 3, 1, 2))"
            )
        raise ValueError(f"{name}: the model's first convolution takes {channels} channels, got {_shape(shape)}")
    try:
        return probe_classes(model, input_shape=shape, bounds=bounds, device=x.device)
    except (RuntimeError, IndexError) as err:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ValueError(f"the model fails on an input of {name}'s shape {_shape(shape)}: {last}") from None


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


def _first_channels(model: nn.Module) -> int | None:
    """The input channels of the first 2-D convolution of ``model`` when it comes before any linear layer."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return None
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


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
