"""Checkpoints of zoo entries: where they are, how one is trained and saved, how one is loaded.

Every function here takes a :class:`~.spec.Spec` (not a name), so a family module can load another
entry's trained weights (SAP takes its dense network's) without importing the registry. A checkpoint is a
``torch.save`` of ``{"state_dict": ..., "meta": ...}`` (tensors, strings and numbers only, no pickled
classes); a JSON sidecar repeats the metadata, with the command that made it.

Example:
    >>> checkpoint_name("sdr-decay", "mnist5k", quick=True)
    'sdr-decay--mnist5k--quick.pt'
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data as datasets
from ..files import atomic_torch_save, atomic_write_json
from .spec import Spec, TrainSettings

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def cache_dir() -> Path:
    """Where checkpoints trained on first use go: ``$STOCHDEF_CACHE`` or ``~/.cache/stochdef``."""
    return Path(os.environ.get("STOCHDEF_CACHE", Path.home() / ".cache" / "stochdef"))


def checkpoint_name(name: str, dataset: str, *, quick: bool = False) -> str:
    """The file name of ``name``'s checkpoint on ``dataset``."""
    return f"{name}--{dataset}{'--quick' if quick else ''}.pt"


def find_checkpoint(name: str, dataset: str, *, quick: bool = False) -> Path | None:
    """The shipped checkpoint if there is one, else the cached one, else ``None``."""
    for folder in (SHIPPED_DIR, cache_dir()):
        path = folder / checkpoint_name(name, dataset, quick=quick)
        if path.exists():
            return path
    return None


def build_spec(spec: Spec, dataset: str) -> nn.Module:
    """An untrained model of ``spec`` shaped for ``dataset``."""
    data = datasets.load(dataset)
    return spec.build(data.input_shape, data.num_classes)


def train_spec(
    spec: Spec, *, dataset: str, settings: TrainSettings, out_dir: Path | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``spec`` on ``dataset`` and save the checkpoint (and its JSON sidecar) in ``out_dir``."""
    data = datasets.load(dataset)
    torch.manual_seed(settings.seed)
    model = spec.build(data.input_shape, data.num_classes)
    start = time.perf_counter()
    history = spec.train(model, data, settings)
    meta: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "paper": spec.paper,
        "dataset": dataset,
        "seed": settings.seed,
        "quick": settings.quick,
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_loss": history.loss[-1] if history.loss else None,
        "test_accuracy_single_draw": history.final_accuracy,
        "torch": torch.__version__,
        "command": _command(spec.name, dataset, settings, out_dir),
    }
    model.cpu().eval()
    folder = out_dir if out_dir is not None else cache_dir()
    path = folder / checkpoint_name(spec.name, dataset, quick=settings.quick)
    atomic_torch_save(path, {"state_dict": model.state_dict(), "meta": meta})
    atomic_write_json(path.with_suffix(".json"), meta)
    logger.info("saved %s (held-out accuracy %.4f)", path, history.final_accuracy)
    return model, meta


def _command(name: str, dataset: str, settings: TrainSettings, out_dir: Path | None) -> str:
    args = ["stochdef", "train", name, "--dataset", dataset, "--seed", str(settings.seed)]
    if settings.quick:
        args.append("--quick")
    if out_dir is not None:
        args += ["--out", str(out_dir)]
    return shlex.join(args) if sys.platform != "win32" else " ".join(args)


def load_spec(
    spec: Spec,
    *,
    dataset: str,
    device: str | torch.device = "cpu",
    train_if_missing: bool = True,
    settings: TrainSettings,
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained ``spec`` model for ``dataset`` in eval mode, with its checkpoint metadata.

    Looks for a shipped, then a cached checkpoint; trains and caches one if neither exists (unless
    ``train_if_missing=False``, which raises ``FileNotFoundError`` saying how to make one).
    """
    name = spec.name
    path = find_checkpoint(name, dataset, quick=settings.quick)
    if path is None:
        if not train_if_missing:
            raise FileNotFoundError(
                f"no checkpoint for {name!r} on {dataset!r}: run `stochdef train {name} --dataset {dataset}`"
            )
        logger.info("no checkpoint for %s on %s: training one (cached in %s)", name, dataset, cache_dir())
        model, meta = train_spec(spec, dataset=dataset, settings=settings)
        return model.to(device).eval(), meta
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = build_spec(spec, dataset)
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), dict(blob["meta"], path=str(path))
