"""Checkpoints of zoo entries: where they are, how one is trained and saved, how one is loaded.

Every function here takes a :class:`~.spec.Spec` (not a name), so a family module can load another
entry's trained weights (SAP takes its dense network's) without importing the registry. A checkpoint holds
tensors and plain data only and is read with ``torch.load(weights_only=True)`` (:mod:`.checkpoint`); a JSON
sidecar repeats the metadata, with the command that made it. Loading names the file in every error and
refuses a file recorded for another name, dataset or architecture.

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
from .checkpoint import (
    CheckpointError,
    architecture,
    check_identity,
    convert_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
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
        "torch": str(torch.__version__),
        "command": _command(spec.name, dataset, settings, out_dir),
    }
    model.cpu().eval()
    folder = out_dir if out_dir is not None else cache_dir()
    path = folder / checkpoint_name(spec.name, dataset, quick=settings.quick)
    meta = save_checkpoint(path, model, meta)
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
    state, meta = read_checkpoint(path)
    model = build_spec(spec, dataset)
    check_fits(path, spec, model, state, meta, dataset=dataset, quick=settings.quick)
    return model.to(device).eval(), dict(meta, path=str(path))


def check_fits(
    path: Path,
    spec: Spec,
    model: nn.Module,
    state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    dataset: str,
    quick: bool,
) -> None:
    """Load ``state`` into ``model`` (``spec`` built for ``dataset``) after checking the checkpoint was made for
    it: its recorded name, dataset and ``quick`` first, then the tensors, then the architecture fingerprint
    (two entries with the same tensors but other layers differ there). Every error names ``path``."""
    check_identity(path, meta, {"name": spec.name, "dataset": dataset, "quick": quick})
    load_weights(path, model, state)
    check_identity(path, meta, {"architecture": architecture(model)})


def convert_spec(path: Path, spec: Spec) -> dict[str, Any]:
    """Re-save the checkpoint of ``spec`` at ``path`` in the safe format (weights bit for bit), checking it fits
    the model first; the dataset is the one the checkpoint records. Returns the new metadata."""
    state, meta = read_checkpoint(path)
    dataset = meta.get("dataset")
    if not isinstance(dataset, str) or dataset not in datasets.DATASETS:
        raise CheckpointError(f"checkpoint {path} records no known dataset (got {dataset!r})")
    model = build_spec(spec, dataset)
    check_fits(path, spec, model, state, meta, dataset=dataset, quick=bool(meta.get("quick", False)))
    return convert_checkpoint(path, model)
