"""The state of one evaluation run: what it has loaded (data, models, their weights' digests) and records.

:class:`Run` loads each model once (a zoo checkpoint, or ``--checkpoint``; a caller's own model comes in
loaded), keeps the transfer sources' adversarial examples, and writes each cell's record with its versions and
provenance (:mod:`..store.provenance`). The cells themselves (:mod:`..grid.cells`) say what to compute.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.defenses import data as datasets
from stochdef.defenses import zoo
from stochdef.defenses.mwd import mwd_layers, set_gradient
from stochdef.defenses.zoo.checkpoint import weights_digest
from stochdef.defenses.zoo.store import SHIPPED_DIR, find_checkpoint

from ..config import PSEUDO, EvalConfig, base_name
from ..store.provenance import environment
from ..store.results import ResultsFile

logger = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    """Versions of torch and the attack libraries (recorded with every cell), the libraries' read from their
    installed metadata: importing them (1-2 s) is left to the cells that run them."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "foolbox": metadata.version("foolbox"),
        "art": metadata.version("adversarial-robustness-toolbox"),
        "torchattacks": metadata.version("torchattacks"),
        "numpy": np.__version__,
    }


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@dataclass
class Run:
    """The state of one evaluation run: config, data, results, loaded models."""

    config: EvalConfig
    store: ResultsFile
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    versions: dict[str, str] = field(default_factory=library_versions)
    models: dict[str, nn.Module] = field(default_factory=dict)
    # sha256 of each loaded model's weights (by zoo name), recorded in every cell's provenance
    weights: dict[str, str] = field(default_factory=dict)
    # adversarial examples made on a source defense, reused by every transfer cell of that source
    transfer_sources: dict[str, torch.Tensor] = field(default_factory=dict)
    # a distributed run's grid position of each cell: its ranks compute out of grid order, and each worst-case
    # part keeps per example the first cell in this order that broke it (empty in one process: grid order)
    order: dict[str, int] = field(default_factory=dict)

    def model(self, name: str) -> nn.Module:
        if name not in self.models:
            # building a model draws initial weights: keep that off the cell's seeded stream, so a cell's
            # numbers do not depend on whether an earlier cell (perhaps in a killed run) loaded the model
            device = torch.device(self.config.device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                model, meta = zoo.load(base_name(name), dataset=self.config.dataset, device=self.config.device)
                if self.config.checkpoint is not None:  # an explicit checkpoint always wins
                    from ..user_model import load_checkpoint

                    load_checkpoint(model, self.config.checkpoint)
                    meta = {"path": self.config.checkpoint, "weights_sha256": weights_digest(model.state_dict())}
            if name.endswith(PSEUDO):  # same outputs; attacks back-propagate the MWD pseudogradient
                set_gradient(model, "pseudo")
            logger.info("loaded %s (%s)", name, meta.get("path", "trained now"))
            self.weights[base_name(name)] = str(meta.get("weights_sha256", ""))
            self.models[name] = model.eval()
        return self.models[name]

    def provenance(self, defenses: tuple[str, ...]) -> dict[str, Any]:
        """What a cell on ``defenses`` depends on beyond its key (see :mod:`.provenance`); loads the models."""
        for name in defenses:
            self.model(name)
        for d in defenses:  # a caller's own model (evaluate_model, --model) came in loaded: digest it once
            self.weights.setdefault(base_name(d), weights_digest(self.models[d].state_dict()))
        weights = {base_name(d): self.weights[base_name(d)] for d in defenses}
        return {"weights": weights, **environment(self.config.device)}

    def record(self, key: str, kind: str, fields: dict[str, Any], seconds: float, defenses: tuple[str, ...]) -> None:
        self.store.add(
            {
                "key": key,
                "kind": kind,
                **fields,
                "seconds": round(seconds, 3),
                "versions": self.versions,
                "provenance": self.provenance(defenses),
            }
        )


def check_defense_name(defense: str, data: datasets.Dataset) -> None:
    """``ValueError`` listing the valid names for an unknown defense, or ``[psd]`` on a model without MWD layers."""
    spec = zoo.get(base_name(defense))
    if defense.endswith(PSEUDO) and not mwd_layers(spec.build(data.input_shape, data.num_classes)):
        raise ValueError(
            f"defense {defense!r}: {PSEUDO} (attack through the MWD pseudogradient) needs an MWD network, "
            f"e.g. mwd-256{PSEUDO}"
        )


def training_notice(defense: str, dataset: str) -> str | None:
    """None when ``defense`` has a checkpoint for ``dataset`` (shipped or cached), else a sentence saying it will
    be trained first and how long that took when the zoo recorded it (the shipped checkpoints' JSON sidecars).

    >>> training_notice("vanilla-mlp", "mnist5k") is None
    True
    """
    name = base_name(defense)
    if find_checkpoint(name, dataset) is not None:
        return None
    sidecars = [json.loads(p.read_text()) for p in sorted(SHIPPED_DIR.glob("*.json"))]
    own = [m for m in sidecars if m.get("name") == name and not m.get("quick")]
    if own:
        recorded = ", ".join(f"{m['train_seconds']:.0f} s on {m['dataset']}" for m in own)
        how_long = f"the shipped {name} took {recorded}"
    else:
        family = [m for m in sidecars if m.get("family") == zoo.get(name).family and not m.get("quick")]
        seconds = sorted(float(m["train_seconds"]) for m in family)
        how_long = "no time recorded for it" + (
            f"; the shipped {zoo.get(name).family} entries took {seconds[0]:.0f}-{seconds[-1]:.0f} s each"
            if seconds
            else ""
        )
    return (
        f"{name} has no checkpoint for {dataset}: it will be trained first ({how_long}, on the machine that "
        "trained the shipped checkpoints)"
    )
