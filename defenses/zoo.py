"""The registry of trainable defenses, and their checkpoints.

Each family module exposes ``SPECS``, a list of :class:`Spec`; :data:`FAMILY_MODULES` lists those
modules. :func:`load` returns a trained model: a checkpoint shipped in ``defenses/checkpoints/``, else
one cached in ``$STOCHDEF_CACHE`` (default ``~/.cache/stochdef``), else it trains one with the
project's own trainer and caches it. Every checkpoint stores the state dict, the spec name, the
dataset, the metrics and the command that made it; a JSON sidecar repeats all but the weights.

Example:
    >>> "vanilla-mlp" in names()
    True
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as datasets
from .files import atomic_torch_save, atomic_write_json
from .models import mlp, small_cnn
from .training import History, fit
from .validation import check_choice

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).parent / "checkpoints"
FAMILY_MODULES: tuple[str, ...] = ("zoo", "sdr_zoo", "dropconnect", "bayes", "rse", "sap_zoo", "noise", "mwd_zoo")


@dataclass(frozen=True)
class TrainSettings:
    """How to train: ``quick`` cuts epochs for tests and smoke runs; ``seed`` fixes everything."""

    seed: int = 0
    quick: bool = False
    device: str = "cpu"
    progress: bool = True


@dataclass(frozen=True)
class Spec:
    """A named, trainable defense (or baseline).

    ``build(input_shape, num_classes)`` makes an untrained model; ``train(model, data, settings)``
    trains it in place and returns its :class:`History`.
    """

    name: str
    family: str
    paper: str
    description: str
    build: Callable[[tuple[int, ...], int], nn.Module]
    train: Callable[[nn.Module, datasets.Dataset, TrainSettings], History]


def _flat(input_shape: tuple[int, ...]) -> int:
    size = 1
    for d in input_shape:
        size *= d
    return size


def plain_trainer(desc: str) -> Callable[[nn.Module, datasets.Dataset, TrainSettings], History]:
    """Adam, lr 1e-3, 20 epochs (2 with ``quick``) of cross-entropy, the model as it is (its randomness on)."""

    def train(model: nn.Module, data: datasets.Dataset, s: TrainSettings) -> History:
        return fit(
            model,
            data.x_train,
            data.y_train,
            epochs=2 if s.quick else 20,
            lr=1e-3,
            x_val=data.x_test,
            y_val=data.y_test,
            seed=s.seed,
            device=s.device,
            progress=s.progress,
            desc=desc,
        )

    return train


_train_plain = plain_trainer("vanilla")


SPECS: list[Spec] = [
    Spec(
        name="vanilla-mlp",
        family="vanilla",
        paper="Khan et al. (SDR), Table 1 baseline",
        description="deterministic ReLU MLP 784-100-100-100-10",
        build=lambda shape, k: mlp((_flat(shape), 100, 100, 100, k)),
        train=_train_plain,
    ),
    Spec(
        name="vanilla-cnn",
        family="vanilla",
        paper="Liu et al. (Adv-BNN), Table 1 'no defense'",
        description="deterministic small CNN (2 conv + BN)",
        build=lambda shape, k: small_cnn(in_channels=shape[0], image_size=shape[-1], num_classes=k),
        train=_train_plain,
    ),
]


def registry() -> dict[str, Spec]:
    """All specs of all family modules, by name."""
    specs: dict[str, Spec] = {}
    for module in FAMILY_MODULES:
        for spec in importlib.import_module(f"{__package__}.{module}").SPECS:
            if spec.name in specs:
                raise RuntimeError(f"two defenses are named {spec.name!r}")
            specs[spec.name] = spec
    return specs


def names() -> list[str]:
    """The registered defense names."""
    return list(registry())


def get(name: str) -> Spec:
    """The :class:`Spec` called ``name``; the error lists the valid names."""
    specs = registry()
    check_choice("defense", name, list(specs))
    return specs[name]


def cache_dir() -> Path:
    """Where checkpoints trained on first use go: ``$STOCHDEF_CACHE`` or ``~/.cache/stochdef``."""
    return Path(os.environ.get("STOCHDEF_CACHE", Path.home() / ".cache" / "stochdef"))


def checkpoint_name(name: str, dataset: str, *, quick: bool = False) -> str:
    return f"{name}--{dataset}{'--quick' if quick else ''}.pt"


def find_checkpoint(name: str, dataset: str, *, quick: bool = False) -> Path | None:
    """The shipped checkpoint if there is one, else the cached one, else ``None``."""
    for folder in (SHIPPED_DIR, cache_dir()):
        path = folder / checkpoint_name(name, dataset, quick=quick)
        if path.exists():
            return path
    return None


def build(name: str, dataset: str = "mnist5k") -> nn.Module:
    """An untrained model of defense ``name`` shaped for ``dataset``."""
    spec = get(name)
    data = datasets.load(dataset)
    return spec.build(data.input_shape, data.num_classes)


def train(
    name: str, *, dataset: str = "mnist5k", settings: TrainSettings | None = None, out_dir: Path | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train defense ``name`` on ``dataset`` and save the checkpoint (and its JSON sidecar) in ``out_dir``."""
    settings = settings or TrainSettings()
    spec = get(name)
    data = datasets.load(dataset)
    torch.manual_seed(settings.seed)
    model = spec.build(data.input_shape, data.num_classes)
    start = time.perf_counter()
    history = spec.train(model, data, settings)
    meta: dict[str, Any] = {
        "name": name,
        "family": spec.family,
        "paper": spec.paper,
        "dataset": dataset,
        "seed": settings.seed,
        "quick": settings.quick,
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_loss": history.loss[-1] if history.loss else None,
        "test_accuracy_single_draw": history.final_accuracy,
        "torch": torch.__version__,
        "command": _command(name, dataset, settings, out_dir),
    }
    model.cpu().eval()
    folder = out_dir if out_dir is not None else cache_dir()
    path = folder / checkpoint_name(name, dataset, quick=settings.quick)
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
    settings = settings or TrainSettings()
    path = find_checkpoint(name, dataset, quick=settings.quick)
    if path is None:
        if not train_if_missing:
            raise FileNotFoundError(
                f"no checkpoint for {name!r} on {dataset!r}: run `stochdef train {name} --dataset {dataset}`"
            )
        logger.info("no checkpoint for %s on %s: training one (cached in %s)", name, dataset, cache_dir())
        model, meta = train(name, dataset=dataset, settings=settings)
        return model.to(device).eval(), meta
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = build(name, dataset)
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), dict(blob["meta"], path=str(path))
