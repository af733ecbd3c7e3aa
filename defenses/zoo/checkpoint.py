"""Checkpoint files that cannot run code: tensors and plain data only, read with ``torch.load(weights_only=True)``.

A checkpoint is a ``torch.save`` of ``{"format": 1, "state_dict": {name: tensor}, "meta": {...}}`` where ``meta``
holds only strings, numbers, booleans, ``None`` and lists/dicts of them. Reading never unpickles a class
(the one exception, torch's own ``TorchVersion``, a ``str``, is allowed so that files written before this
format still read; it comes back as a plain ``str``). ``meta`` records the zoo name, the dataset, a fingerprint
of the architecture (:func:`architecture`) and a hash of the weights (:func:`weights_digest`); reading checks
the hash, and :func:`check_identity` refuses a file made for another model. Every error names the file.

Example:
    >>> import tempfile, pathlib
    >>> from torch import nn
    >>> net = nn.Linear(3, 2)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.pt"
    >>> meta = save_checkpoint(path, net, {"name": "net", "dataset": "toy"})
    >>> state, again = read_checkpoint(path)
    >>> torch.equal(state["weight"], net.weight), again["weights_sha256"] == weights_digest(net.state_dict())
    (True, True)
    >>> sorted(torch.load(path, weights_only=True))
    ['format', 'meta', 'state_dict']
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.torch_version import TorchVersion

from ..files import atomic_torch_save, atomic_write_json

__all__ = [
    "FORMAT",
    "CheckpointError",
    "architecture",
    "check_identity",
    "convert_checkpoint",
    "load_weights",
    "plain",
    "read_checkpoint",
    "save_checkpoint",
    "weights_digest",
]

FORMAT = 1
# Classes a checkpoint may name besides tensors: torch's version string only (files written before FORMAT 1).
_SAFE_GLOBALS: list[Any] = [TorchVersion]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (unreadable, not a stochdef checkpoint, or made for another model)."""


def plain(value: Any, *, where: str = "meta") -> Any:
    """``value`` as plain data (str, int, float, bool, None, lists and str-keyed dicts of them), or ``TypeError``.

    ``str``, ``int`` and ``float`` subclasses (``TorchVersion``, numpy scalars' ``item()``) become the base type.

    >>> plain({"torch": TorchVersion("2.1.0"), "acc": [0.5, 1]})
    {'torch': '2.1.0', 'acc': [0.5, 1]}
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} must have string keys, got {k!r}")
            out[str(k)] = plain(v, where=f"{where}[{k!r}]")
        return out
    raise TypeError(
        f"{where} must hold plain data (str, numbers, bool, None, lists, dicts), got {type(value).__name__}"
    )


def weights_digest(state_dict: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict: every entry's name, dtype, shape and bytes, in name order.

    Independent of the file format and of the device: the same weights give the same digest.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict[{name!r}] must be a tensor, got {type(tensor).__name__}")
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def architecture(model: nn.Module) -> str:
    """A fingerprint of ``model``'s structure: each submodule's path and class, each state entry's name, shape
    and dtype (16 hex digits). Two zoo entries with the same parameters but other layers (ReLU vs sigmoid) differ.
    """
    lines = [f"module {path or '.'} {type(m).__name__}" for path, m in model.named_modules()]
    lines += [f"entry {k} {tuple(v.shape)} {v.dtype}" for k, v in model.state_dict().items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Save ``model``'s weights and ``meta`` (plain data) to ``path`` atomically, with a JSON sidecar beside it.

    Adds ``format``, ``architecture`` and ``weights_sha256`` to the metadata; returns it as saved.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    full = dict(
        plain(dict(meta)), format=FORMAT, architecture=architecture(model), weights_sha256=weights_digest(state)
    )
    path = Path(path)
    atomic_torch_save(path, {"format": FORMAT, "state_dict": state, "meta": full})
    atomic_write_json(path.with_suffix(".json"), full)
    return full


def _reason(err: BaseException) -> str:
    """A short reason for a failed ``torch.load`` (torch's own unpickling message suggests ``weights_only=False``)."""
    if isinstance(err, pickle.UnpicklingError):
        return "UnpicklingError: not tensors and plain data"
    text = str(err).strip().splitlines()
    first = text[0][:120] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def read_checkpoint(path: str | os.PathLike[str], *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict and metadata of the checkpoint at ``path``, read without running any code from it.

    Raises :class:`CheckpointError` naming ``path`` for a file that is missing, unreadable (truncated, random
    bytes, a pickle naming a class), not shaped like a checkpoint, or whose weights do not match the hash it
    records (``verify=False`` skips that check).
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except Exception as err:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely ({_reason(err)}); it is damaged, not a checkpoint, "
            "or holds more than tensors and plain data: retrain it with `stochdef train`"
        ) from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path}: not a stochdef checkpoint (no 'state_dict' dict)")
    state = blob["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: state_dict entry {bad[0]!r} is not a named tensor")
    try:
        meta = plain(blob.get("meta", {}), where="meta")
    except TypeError as err:
        raise CheckpointError(f"checkpoint {path}: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: meta must be a dict, got {type(meta).__name__}")
    recorded = meta.get("weights_sha256")
    if verify and recorded is not None and recorded != weights_digest(state):
        raise CheckpointError(f"checkpoint {path}: the weights do not match the hash it records (altered or damaged)")
    return state, meta


def check_identity(path: str | os.PathLike[str], meta: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless every ``expected`` field the checkpoint records has that value.

    A field the checkpoint does not record (files written before it was recorded) is not compared.
    """
    for field, want in expected.items():
        got = meta.get(field)
        if got is not None and got != want:
            raise CheckpointError(
                f"checkpoint {path} records {field} {got!r}, not {want!r}: it was made for another model"
            )


def load_weights(path: str | os.PathLike[str], model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state)``, with one line naming the file and what differs when it does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or shapes:
        parts = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", extra), ("other shape for", shapes))
            if keys
        ]
        raise CheckpointError(f"checkpoint {path} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(dict(state))


def convert_checkpoint(path: str | os.PathLike[str], model: nn.Module | None = None) -> dict[str, Any]:
    """Re-save the checkpoint at ``path`` (and its JSON sidecar) in the safe format, weights bit for bit.

    Reads with ``weights_only=True`` (only torch's ``TorchVersion`` is allowed besides tensors), so even a
    file to convert runs no code. ``model`` (the zoo entry built for the checkpoint's dataset) adds the
    ``architecture`` fingerprint; the sidecar keeps its other fields. Returns the new metadata.
    """
    path = Path(path)
    state, meta = read_checkpoint(path)
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        meta = {**plain(json.loads(sidecar.read_text())), **meta}
    meta = dict(meta, format=FORMAT, weights_sha256=weights_digest(state))
    if model is not None:
        load_weights(path, model, state)
        meta["architecture"] = architecture(model)
    meta.pop("path", None)
    atomic_torch_save(path, {"format": FORMAT, "state_dict": state, "meta": meta})
    atomic_write_json(sidecar, meta)
    again, _ = read_checkpoint(path)
    if again.keys() != state.keys() or not all(
        again[k].dtype == v.dtype and torch.equal(again[k], v) for k, v in state.items()
    ):  # pragma: no cover - torch.save round trips exactly
        raise CheckpointError(f"checkpoint {path}: the weights changed on conversion")
    return meta
