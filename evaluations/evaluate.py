"""``stochdef evaluate``: every defense against every library, the naive and the EoT attack side by side.

A run is a list of cells, each computed once and streamed to ``results.jsonl`` (see :mod:`.results`):

* ``clean`` (per defense): accuracy of the defense's own inference rule, one draw and an n-draw ensemble;
* ``attack`` (defense x attack x library x eps x samples): robust accuracy under that library's attack,
  ``samples=1`` being the naive single-draw attack and ``samples>1`` the EoT attack (skipped for a
  deterministic defense, where EoT equals naive);
* ``indicators`` (per defense): the gradient-obfuscation checks of :mod:`.diagnose`;
* ``transfer`` (defense pairs): accuracy of B on adversarial examples made on A (Adv-BNN eq. 14).

Each cell seeds torch and numpy from the run's seed and its own key, so a resumed run computes exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stochdef.adapters import EoT, is_random
from stochdef.defenses import data as datasets
from stochdef.defenses import zoo
from stochdef.defenses._checks import check_choice, check_positive_int, check_range
from stochdef.defenses.mwd import mwd_layers, set_gradient

from .results import ResultsFile, cell_key, cell_seed
from .runners import ATTACKS, ESTIMATORS, LIBRARIES, AttackSpec, run_attack
from .stats import wilson_interval

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
    attacks: tuple[str, ...] = ATTACKS
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

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, datasets.DATASETS)
        for a in self.attacks:
            check_choice("attack", a, ATTACKS)
        for lib in self.libraries:
            check_choice("library", lib, LIBRARIES)
        for e in self.eps:
            check_range("eps", e, low=0.0)
        for s in self.samples:
            check_positive_int("samples", s)
        check_positive_int("n", self.n)
        check_positive_int("steps", self.steps)
        check_positive_int("judge_samples", self.judge_samples)
        if not self.defenses:
            raise ValueError("defenses must name at least one defense")

    @property
    def eps_mid(self) -> float:
        """The eps the per-defense checks and the transfer matrix use (the middle of the sweep)."""
        ordered = sorted(self.eps)
        return ordered[len(ordered) // 2]

    def common(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n": self.n, "seed": self.seed, "judge": self.judge_samples}


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


@dataclass
class Judge:
    """The defense's own inference rule: one draw, and the softmax average of ``samples`` draws."""

    model: nn.Module
    samples: int

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        single = (self.model(x).argmax(1) == y).cpu()
        probs = EoT(self.model, samples=self.samples, reduce="probs")(x).exp().cpu()
        ensemble = probs.argmax(1) == y.cpu()
        return {
            **_accuracy("single", single),
            **_accuracy("ensemble", ensemble),
            "calibration": calibration_bins(probs, y.cpu()),
        }


def _accuracy(name: str, correct: torch.Tensor) -> dict[str, Any]:
    hits, total = int(correct.sum()), len(correct)
    return {f"acc_{name}": hits / total, f"acc_{name}_ci": list(wilson_interval(hits, total))}


def calibration_bins(probs: torch.Tensor, y: torch.Tensor, bins: int = CALIBRATION_BINS) -> dict[str, list[float]]:
    """Reliability-diagram counts: per confidence bin, the number of points, correct ones and summed confidence."""
    confidence, pred = probs.max(1)
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

    def model(self, name: str) -> nn.Module:
        if name not in self.models:
            # building a model draws initial weights: keep that off the cell's seeded stream, so a cell's
            # numbers do not depend on whether an earlier cell (perhaps in a killed run) loaded the model
            device = torch.device(self.config.device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                model, meta = zoo.load(base_name(name), dataset=self.config.dataset, device=self.config.device)
            if name.endswith(PSEUDO):  # same outputs; attacks back-propagate the MWD pseudogradient
                set_gradient(model, "pseudo")
            logger.info("loaded %s (%s)", name, meta.get("path", "trained now"))
            self.models[name] = model.eval()
        return self.models[name]

    def is_random(self, defense: str) -> bool:
        record = self.store.get(clean_key(self.config, defense))
        return bool(record["random"]) if record else True

    def draws(self, defense: str, samples: int) -> int:
        """``samples``, or 1 for a deterministic defense (every draw would be the same)."""
        return samples if self.is_random(defense) else 1

    def record(self, key: str, kind: str, fields: dict[str, Any], seconds: float) -> None:
        self.store.add({"key": key, "kind": kind, **fields, "seconds": round(seconds, 3), "versions": self.versions})


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
        **config.common(),
    )


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


def cells(run: Run) -> Iterator[tuple[str, str, Any]]:
    """``(kind, key, payload)`` of every cell of the run, in order (clean cells first)."""
    c = run.config
    for defense in c.defenses:
        yield "clean", clean_key(c, defense), defense
    for defense in c.defenses:
        for attack in c.attacks:
            for eps in c.eps:
                for samples in c.samples:
                    spec = AttackSpec(attack, eps, samples=samples, steps=c.steps)
                    for library in c.libraries:
                        yield "attack", attack_key(c, defense, library, spec), (defense, library, spec)
    if c.indicators:
        for defense in c.defenses:
            yield "indicators", indicator_key(c, defense), defense
    if c.transfer and len(c.defenses) > 1:
        for source in c.defenses:
            for target in c.defenses:
                yield "transfer", transfer_key(c, source, target), (source, target)


def compute(run: Run, kind: str, key: str, payload: Any) -> None:
    """Compute one cell and record it (a cell that does not apply records why)."""
    seed_everything(cell_seed(run.config.seed, key))
    start = time.perf_counter()
    if kind == "clean":
        model = run.model(payload)
        random = is_random(model, run.x[:32], passes=3)
        fields = {
            "defense": payload,
            "random": random,
            **Judge(model, run.config.judge_samples if random else 1)(run.x, run.y),
        }
    elif kind == "attack":
        defense, library, spec = payload
        fields = {"defense": defense, "library": library, **asdict(spec), "step": spec.step_size}
        if spec.samples > 1 and not run.is_random(defense):
            fields["skipped"] = "deterministic defense: the EoT attack equals the naive one"
        else:
            model = run.model(defense)
            x_adv = run_attack(library, spec, model, run.x, run.y, num_classes=run.num_classes)
            fields.update(
                estimator=ESTIMATORS[library] if spec.samples > 1 else "one draw per gradient (naive)",
                linf=float((x_adv - run.x).abs().max()),
                **Judge(model, run.draws(defense, run.config.judge_samples))(x_adv, run.y),
            )
    elif kind == "indicators":
        from .diagnose import diagnose

        fields = {"defense": payload, "indicators": diagnose(run, payload)}
    else:
        from .transfer import transfer_cell

        fields = transfer_cell(run, *payload)
    run.record(key, kind, fields, time.perf_counter() - start)


def evaluate(config: EvalConfig, *, out: Path, progress: bool = True) -> ResultsFile:
    """Run (or resume) the evaluation described by ``config``; results go to ``out/results.jsonl``."""
    data = datasets.load(config.dataset)
    if config.n > len(data.x_test):
        raise ValueError(f"n must be <= {len(data.x_test)} (the size of {config.dataset}'s test split), got {config.n}")
    for name in config.defenses:
        check_defense_name(name, data)  # unknown names fail here, listing the valid ones
    store = ResultsFile(Path(out) / "results.jsonl")
    device = torch.device(config.device)
    run = Run(config, store, data.x_test[: config.n].to(device), data.y_test[: config.n].to(device), data.num_classes)
    todo = [cell for cell in cells(run) if cell[1] not in store]
    logger.info("%d cells, %d already done", len(todo) + len(store), len(store))
    for kind, key, payload in tqdm(todo, desc="evaluate", disable=not progress):
        compute(run, kind, key, payload)
    return store
