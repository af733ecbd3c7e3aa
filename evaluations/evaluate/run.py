"""One evaluation run's configuration and state, and the keys of its cells.

:class:`EvalConfig` says what to evaluate, :class:`Run` holds what a run has loaded and recorded. The
cells' computations (:mod:`.engine`), the gradient-obfuscation checks (:mod:`.diagnose`), the transfer
matrix (:mod:`.transfer`), the report and the plots all depend on this module; it depends on none of them.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.adapters import EoT
from stochdef.defenses import data as datasets
from stochdef.defenses import zoo
from stochdef.defenses.mwd import MWDLayer, mwd_layers, set_gradient
from stochdef.defenses.validation import check_bounds, check_choice, check_int
from stochdef.defenses.zoo.checkpoint import weights_digest
from stochdef.defenses.zoo.store import SHIPPED_DIR, find_checkpoint

from ..libraries import DEFAULT_EVAL_ATTACKS, LIBRARIES, NORMS, RESTART_ATTACKS, AttackSpec
from ..stats import wilson_interval
from .checks import check_config
from .provenance import environment
from .results import ResultsFile, cell_key

logger = logging.getLogger(__name__)

# One shipped MNIST-5k checkpoint per paper, and the undefended MLP (the papers' baselines -- dropconnect,
# rse, bnn, madry, adv-mlp, relu-256, ... -- are a --defense away; MWD is the shipped 256-wide net).
DEFAULT_DEFENSES: tuple[str, ...] = ("vanilla-mlp", "sdr-learnable", "adv-bnn", "sap-mlp", "noise-gaussian", "mwd-256")
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate; every field that changes a number is part of each cell's key."""

    dataset: str = "mnist5k"
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    attacks: tuple[str, ...] = DEFAULT_EVAL_ATTACKS
    libraries: tuple[str, ...] = LIBRARIES
    eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    samples: tuple[int, ...] = (1, 8)
    n: int = 100
    steps: int = 10
    judge_samples: int = 16
    seed: int = 0
    device: str = "cpu"
    indicators: bool = True
    transfer: bool = True
    # threat model and the stronger attacks (see :meth:`attack_spec`)
    norm: str = "linf"
    bounds: tuple[float, float] = (0.0, 1.0)
    restarts: int = 1
    queries: int = 1000
    # ``--samples auto``: double the draws up to this cap (0: run ``samples`` as given)
    samples_cap: int = 0
    # a state dict that replaces the zoo's checkpoint of the (single) defense
    checkpoint: str | None = None
    # identity of a user's model and data (fingerprints), part of every key; "" for zoo runs
    source: str = ""

    def __post_init__(self) -> None:
        check_config(self)  # every field, before anything runs (evaluate/checks.py)
        self._check_threat_model()

    @property
    def eps_mid(self) -> float:
        """The eps the per-defense checks and the transfer matrix use (the middle of the sweep)."""
        ordered = sorted(self.eps)
        return ordered[len(ordered) // 2]

    def common(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n": self.n, "seed": self.seed, "judge": self.judge_samples, **self.identity()}

    def _check_threat_model(self) -> None:
        check_choice("norm", self.norm, NORMS)
        object.__setattr__(self, "bounds", check_bounds("bounds", tuple(self.bounds)))
        check_int("restarts", self.restarts)
        check_int("queries", self.queries)
        if self.samples_cap:
            check_int("samples_cap", self.samples_cap)
        if self.checkpoint is not None and len(self.defenses) != 1:
            raise ValueError(f"checkpoint {self.checkpoint!r} needs exactly one defense, got {list(self.defenses)}")

    def identity(self) -> dict[str, Any]:
        """The key fields of a run that is not a plain zoo run (empty for one, so old keys stay valid)."""
        extra: dict[str, Any] = {}
        if self.bounds != (0.0, 1.0):
            extra["bounds"] = list(self.bounds)
        if self.source:
            extra["fingerprint"] = self.source
        if self.checkpoint is not None:
            extra["checkpoint"] = file_digest(self.checkpoint)
        return extra

    def attack_spec(self, attack: str, eps: float, samples: int) -> AttackSpec | str:
        """The spec of one attack cell, or why the attack has no such cell (fgsm under L2)."""
        if attack == "fgsm" and self.norm != "linf":
            return "FGSM is L-inf only (the sign step)"
        restarts = self.restarts if attack in RESTART_ATTACKS else 1
        return AttackSpec(
            attack, eps, samples=samples, steps=self.steps, norm=self.norm, bounds=self.bounds, restarts=restarts,
            queries=self.queries,
        )  # fmt: skip


def file_digest(path: str) -> str:
    """The first 16 hex digits of the SHA-256 of a file (cached per path, size and modification time)."""
    import os

    stat = os.stat(path)
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime: int) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of torch and the attack libraries (recorded with every cell)."""
    import art
    import foolbox
    import torchattacks

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "foolbox": foolbox.__version__,
        "art": art.__version__,
        "torchattacks": torchattacks.__version__,
        "numpy": np.__version__,
    }


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def output_kind(model: nn.Module) -> str:
    """``"scores"`` for a network whose outputs are per-class scores in [0, 1] (an MWD net, or sigmoid outputs:
    Agrawal et al. train both on the square error), else ``"logits"``; decided by the network's last layer.

    >>> output_kind(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())), output_kind(nn.Linear(4, 3))
    ('scores', 'logits')
    """
    last = [m for m in model.modules() if not list(m.children())][-1:]
    return "scores" if last and isinstance(last[0], (MWDLayer, nn.Sigmoid)) else "logits"


@dataclass
class Judge:
    """The defense's own inference rule: one draw, and the softmax average of ``samples`` draws.

    Calibration uses the model's own confidence: the softmax of logits, or for a network with scores in
    [0, 1] (:func:`output_kind`) the largest mean score itself (a softmax of such scores would put the top
    confidence near 0.2 on ten classes whatever the network says).
    """

    model: nn.Module
    samples: int

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        single = (self.model(x).argmax(1) == y).cpu()
        probs = EoT(self.model, samples=self.samples, reduce="probs")(x).exp().cpu()
        ensemble = probs.argmax(1) == y.cpu()
        kind = output_kind(self.model)
        confidence = probs if kind == "logits" else EoT(self.model, samples=self.samples)(x).cpu()
        return {
            **_accuracy("single", single),
            **_accuracy("ensemble", ensemble),
            "calibration": {**calibration_bins(confidence, y.cpu()), "output": kind},
            "correct": bits(ensemble),  # per example, for the worst case over attacks (worst_case.py)
        }


def bits(correct: torch.Tensor) -> str:
    """A bool vector as a string of 0s and 1s (one character per example, compact in JSON).

    >>> bits(torch.tensor([True, False, True]))
    '101'
    """
    return "".join("1" if v else "0" for v in correct.tolist())


def _accuracy(name: str, correct: torch.Tensor) -> dict[str, Any]:
    hits, total = int(correct.sum()), len(correct)
    return {f"acc_{name}": hits / total, f"acc_{name}_ci": list(wilson_interval(hits, total))}


def calibration_bins(probs: torch.Tensor, y: torch.Tensor, bins: int = CALIBRATION_BINS) -> dict[str, list[float]]:
    """Reliability-diagram counts: per confidence bin, the number of points, correct ones and summed confidence.

    ``probs`` are per-class confidences in [0, 1] (a softmax, or a network's own scores).
    """
    confidence, pred = probs.clamp(0.0, 1.0).max(1)
    index = (confidence * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).tolist()
    correct = torch.bincount(index, weights=(pred == y).double(), minlength=bins).tolist()
    conf = torch.bincount(index, weights=confidence.double(), minlength=bins).tolist()
    return {"count": count, "correct": correct, "confidence": conf}


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

    def model(self, name: str) -> nn.Module:
        if name not in self.models:
            # building a model draws initial weights: keep that off the cell's seeded stream, so a cell's
            # numbers do not depend on whether an earlier cell (perhaps in a killed run) loaded the model
            device = torch.device(self.config.device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                model, meta = zoo.load(base_name(name), dataset=self.config.dataset, device=self.config.device)
                if self.config.checkpoint is not None:  # an explicit checkpoint always wins
                    from .user_model import load_checkpoint

                    load_checkpoint(model, self.config.checkpoint)
                    meta = {"path": self.config.checkpoint, "weights_sha256": weights_digest(model.state_dict())}
            if name.endswith(PSEUDO):  # same outputs; attacks back-propagate the MWD pseudogradient
                set_gradient(model, "pseudo")
            logger.info("loaded %s (%s)", name, meta.get("path", "trained now"))
            self.weights[base_name(name)] = str(meta.get("weights_sha256", ""))
            self.models[name] = model.eval()
        return self.models[name]

    def is_random(self, defense: str) -> bool:
        record = self.store.get(clean_key(self.config, defense))
        return bool(record["random"]) if record else True

    def draws(self, defense: str, samples: int) -> int:
        """``samples``, or 1 for a deterministic defense (every draw would be the same)."""
        return samples if self.is_random(defense) else 1

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


PSEUDO = "[psd]"


def base_name(defense: str) -> str:
    """The zoo name of ``defense`` (``"mwd-256[psd]"`` is ``mwd-256`` attacked through its pseudogradient)."""
    return defense.removesuffix(PSEUDO)


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


def clean_key(config: EvalConfig, defense: str) -> str:
    return cell_key(kind="clean", defense=defense, **config.common())


def attack_key(config: EvalConfig, defense: str, library: str, spec: AttackSpec) -> str:
    return cell_key(
        kind="attack",
        defense=defense,
        library=library,
        attack=spec.attack,
        eps=spec.eps,
        samples=spec.samples,
        steps=spec.steps,
        **spec_extras(spec),
        **config.common(),
    )


def spec_extras(spec: AttackSpec) -> dict[str, Any]:
    """The spec's settings that enter a cell key when not their defaults (so the L-inf keys stay as they were)."""
    extra: dict[str, Any] = {}
    if spec.norm != "linf":
        extra["norm"] = spec.norm
    if spec.restarts != 1:
        extra["restarts"] = spec.restarts
    if spec.attack == "square":
        extra["queries"] = spec.queries
    return extra


def indicator_key(config: EvalConfig, defense: str) -> str:
    return cell_key(
        kind="indicators",
        defense=defense,
        eps=config.eps_mid,
        eps_all=sorted(config.eps),
        samples=max(config.samples),
        steps=config.steps,
        **config.common(),
    )


def transfer_key(config: EvalConfig, source: str, target: str) -> str:
    return cell_key(
        kind="transfer",
        source=source,
        target=target,
        eps=config.eps_mid,
        samples=max(config.samples),
        steps=config.steps,
        **config.common(),
    )
