"""The registry of trainable defenses, and their checkpoints.

One module per family holds its entries as ``SPECS``, a list of :class:`Spec`: :mod:`.plain`,
:mod:`.sdr`, :mod:`.dropconnect`, :mod:`.bayes`, :mod:`.rse`, :mod:`.sap`, :mod:`.noise`, :mod:`.mwd`.
They import only :mod:`.spec` and :mod:`.store`; this module imports them all and indexes their specs
by name. :func:`load` returns a trained model: a checkpoint shipped in ``defenses/checkpoints/``, else
one cached in ``$STOCHDEF_CACHE`` (default ``~/.cache/stochdef``), else it trains one with the
project's own trainer and caches it. Every checkpoint stores the state dict, the spec name, the
dataset, the metrics, the command that made it, an architecture fingerprint and the weights' sha256; a
JSON sidecar repeats all but the weights. Checkpoints hold tensors and plain data only and are read with
``torch.load(weights_only=True)`` (:mod:`.checkpoint`); :func:`load` raises :class:`CheckpointError` naming
the file for one that is damaged or made for another model, and :func:`convert` re-saves an older one.

Example:
    >>> "vanilla-mlp" in names()
    True
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..validation import check_choice
from . import bayes, dropconnect, mwd, noise, plain, rse, sap, sdr
from .checkpoint import CheckpointError, read_checkpoint
from .spec import Spec, TrainSettings, plain_trainer
from .store import (
    SHIPPED_DIR,
    build_spec,
    cache_dir,
    checkpoint_name,
    convert_spec,
    find_checkpoint,
    load_spec,
    train_spec,
)

__all__ = [
    "FAMILIES",
    "CheckpointError",
    "SHIPPED_DIR",
    "Spec",
    "TrainSettings",
    "build",
    "cache_dir",
    "checkpoint_name",
    "convert",
    "find_checkpoint",
    "get",
    "load",
    "names",
    "plain_trainer",
    "registry",
    "train",
]

#: The family modules, in the order their entries are listed.
FAMILIES: tuple[ModuleType, ...] = (plain, sdr, dropconnect, bayes, rse, sap, noise, mwd)


def _index(families: tuple[ModuleType, ...]) -> dict[str, Spec]:
    specs: dict[str, Spec] = {}
    for module in families:
        family_specs: list[Spec] = module.SPECS
        for spec in family_specs:
            if spec.name in specs:
                raise RuntimeError(f"two defenses are named {spec.name!r}")
            specs[spec.name] = spec
    return specs


_REGISTRY = _index(FAMILIES)


def registry() -> dict[str, Spec]:
    """All specs of all family modules, by name (a new dict each call)."""
    return dict(_REGISTRY)


def names() -> list[str]:
    """The registered defense names."""
    return list(_REGISTRY)


def get(name: str) -> Spec:
    """The :class:`Spec` called ``name``; the error lists the valid names."""
    check_choice("defense", name, list(_REGISTRY))
    return _REGISTRY[name]


def build(name: str, dataset: str = "mnist5k") -> nn.Module:
    """An untrained model of defense ``name`` shaped for ``dataset``."""
    return build_spec(get(name), dataset)


def train(
    name: str, *, dataset: str = "mnist5k", settings: TrainSettings | None = None, out_dir: Path | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train defense ``name`` on ``dataset`` and save the checkpoint (and its JSON sidecar) in ``out_dir``."""
    spec = get(name)
    return train_spec(spec, dataset=dataset, settings=settings or TrainSettings(), out_dir=out_dir)


def load(
    name: str,
    *,
    dataset: str = "mnist5k",
    device: str | torch.device = "cpu",
    train_if_missing: bool = True,
    settings: TrainSettings | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained ``name`` model for ``dataset`` in eval mode, with its checkpoint metadata.

    Looks for a shipped, then a cached checkpoint; trains and caches one if neither exists (unless
    ``train_if_missing=False``, which raises ``FileNotFoundError`` saying how to make one).
    """
    spec = get(name)
    settings = settings or TrainSettings()
    return load_spec(spec, dataset=dataset, device=device, train_if_missing=train_if_missing, settings=settings)


def convert(path: str | Path) -> dict[str, Any]:
    """Re-save the checkpoint at ``path`` (and its sidecar) as tensors and plain data only, weights bit for bit.

    The zoo entry and dataset are the ones the file records; it must fit that entry's model. Reading runs no code
    from the file (``weights_only=True``). ``stochdef train --convert PATH`` calls this. Returns the new metadata.
    """
    path = Path(path)
    _, meta = read_checkpoint(path, verify=False)
    name = meta.get("name")
    if not isinstance(name, str) or name not in _REGISTRY:
        raise CheckpointError(f"checkpoint {path} records no zoo name (got {name!r}); known: {list(_REGISTRY)}")
    return convert_spec(path, _REGISTRY[name])
