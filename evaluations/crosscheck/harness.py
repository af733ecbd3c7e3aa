"""The cross-check: the in-house attacks against Foolbox 3, ART, torchattacks and advertorch.

For every model of :mod:`.models` (trained within the run, seconds) and every attack, the same
configuration runs in-house and in each library; :mod:`.checks` and :mod:`.randomized`
compare them (exact parity, DeepFool agreement with diagnosed divergences, LocalSearch rates, robust
accuracy on randomized models with binomial intervals). It prints a table, writes JSON and Markdown, and
says whether any comparison disagrees (``stochdef crosscheck`` then exits non-zero, see
:mod:`stochdef.evaluations.cli.crosscheck`). ``quick=True`` is the CI-sized run.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stochdef.defenses.files import atomic_write_json, atomic_write_text

from ..bench import device_name
from ..libraries import BIM, FGSM, PGD, DeepFool, FGSMMinimal, LocalSearch
from . import models
from .checks import CONFIDENCE, Row, Setting, deepfool_rows, exact_rows, minimal_rows
from .randomized import localsearch_rows, randomized_rows
from .report import markdown

logger = logging.getLogger(__name__)
PACKAGES = ("torch", "foolbox", "adversarial-robustness-toolbox", "torchattacks", "advertorch", "numpy", "eagerpy")


def sizes(quick: bool) -> dict[str, int]:
    """How many test examples each kind of comparison uses, and the EoT draws on randomized models."""
    if quick:
        return {"exact": 100, "deepfool": 30, "ls_low": 12, "ls_high": 40, "random": 100, "random_df": 25,
                "random_ls": 30, "samples": 8, "eval_samples": 32, "steps": 10, "ls_low_rounds": 10}  # fmt: skip
    return {"exact": 360, "deepfool": 100, "ls_low": 40, "ls_high": 100, "random": 300, "random_df": 50,
            "random_ls": 100, "samples": 32, "eval_samples": 64, "steps": 20, "ls_low_rounds": 30}  # fmt: skip


def settings(n: dict[str, int]) -> dict[str, list[Setting]]:
    """The matched configurations, by kind of comparison."""
    steps, samples = n["steps"], n["samples"]
    linf: dict[str, Any] = {"eps": 0.1, "step": 0.01, "steps": steps}
    df: dict[str, Any] = {"steps": 50, "overshoot": 0.02, "candidates": 10}
    return {
        "exact": [
            Setting("fgsm", FGSM(eps=0.1)),
            Setting("fgsm-targeted", FGSM(eps=0.1, targeted=True)),
            Setting("bim", BIM(**linf)),
            Setting("pgd", PGD(**linf)),
            Setting("pgd-targeted", PGD(**linf, targeted=True)),
            Setting("pgd-l2", PGD(eps=1.0, step=0.1, steps=steps, norm="l2")),
        ],
        "minimal": [Setting("fgsm-minimal", FGSMMinimal(epsilons=1000, max_eps=1.0))],
        "deepfool": [
            Setting("deepfool-l2", DeepFool(norm="l2", **df)),
            Setting("deepfool-linf", DeepFool(norm="linf", **df)),
        ],
        "localsearch": [
            Setting("localsearch-lowest", LocalSearch(select="lowest", rounds=n["ls_low_rounds"])),
            Setting("localsearch", LocalSearch(select="highest", rounds=150)),
        ],
        "randomized": [
            Setting("fgsm", FGSM(eps=0.1, samples=samples)),
            Setting("pgd", PGD(**linf, samples=samples)),
            Setting("deepfool-l2", DeepFool(norm="l2", **df, samples=samples)),
            Setting("localsearch", LocalSearch(select="highest", rounds=150, samples=samples)),
        ],
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run(
    *, device: str = "cpu", quick: bool = False, seed: int = 0, names: list[str] | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run the cross-check and return the report (rows, models, environment, timings)."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device is cuda but no CUDA device is available")
    n = sizes(quick)
    config = settings(n)
    names = list(names or (models.QUICK if quick else models.FULL))
    start = time.perf_counter()
    rows: list[Row] = []
    trained_info = []
    for name in tqdm(names, desc="crosscheck", disable=not progress):
        trained = models.train(name, device=dev, seed=seed, quick=quick, progress=progress)
        trained_info.append(
            {
                "name": name,
                "dataset": trained.case.dataset,
                "randomized": trained.case.randomized,
                "description": trained.case.description,
                "held_out_accuracy": trained.accuracy,
                "train_seconds": round(trained.seconds, 2),
            }  # fmt: skip
        )
        x_all, y_all = trained.data.x_test.to(dev), trained.data.y_test.to(dev)
        classes = trained.data.num_classes
        started = time.perf_counter()
        if trained.case.randomized:
            for s in config["randomized"]:
                size = n["random_df"] if isinstance(s.attack, DeepFool) else n["random"]
                size = n["random_ls"] if isinstance(s.attack, LocalSearch) else size
                rows += randomized_rows(
                    trained, s, x_all[:size], y_all[:size], seed=seed, eval_samples=n["eval_samples"]
                )
        else:
            x, y = x_all[: n["exact"]], y_all[: n["exact"]]
            for s in config["exact"]:
                target = (y + 1) % classes if s.attack.targeted else y
                rows += exact_rows(trained, s, x, target, seed)
            rows += minimal_rows(trained, config["minimal"][0], x, y)
            for s in config["deepfool"]:
                rows += deepfool_rows(trained, s, x_all[: n["deepfool"]], y_all[: n["deepfool"]], seed)
            if not name.startswith("cnn"):  # LocalSearch probes pixels; one MLP per dataset is enough
                low, high = config["localsearch"]
                rows += localsearch_rows(trained, low, x_all[: n["ls_low"]], y_all[: n["ls_low"]], seed)
                rows += localsearch_rows(trained, high, x_all[: n["ls_high"]], y_all[: n["ls_high"]], seed)
        trained_info[-1]["attack_seconds"] = round(time.perf_counter() - started, 2)
    failed = [r for r in rows if r.passed is False]
    return {
        "command": f"stochdef crosscheck --device {device}" + (" --quick" if quick else "") + f" --seed {seed}",
        "device": str(dev),
        "device_name": device_name(str(dev)),
        "quick": quick,
        "seeds": {"training": seed, "attacks": seed, "robust_accuracy_draws": seed + 1},
        "sizes": n,
        "confidence": CONFIDENCE,
        "versions": versions(),
        "models": trained_info,
        "rows": [r.as_dict() for r in rows],
        "failed": len(failed),
        "skipped": sum(r.passed is None for r in rows),
        "passed": not failed,
        "seconds": round(time.perf_counter() - start, 2),
    }


def save(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``crosscheck-<device>[-quick].json`` and ``.md`` into folder ``out``."""
    stem = f"crosscheck-{report['device'].split(':')[0]}" + ("-quick" if report["quick"] else "")
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_json(json_path, report)
    atomic_write_text(md_path, markdown(report))
    return json_path, md_path
