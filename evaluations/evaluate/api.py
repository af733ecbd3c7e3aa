"""Evaluate your own randomized model: :func:`evaluate_model`, and what ``stochdef evaluate`` writes.

:func:`evaluate_model` runs the same cells as ``stochdef evaluate`` (every attack of every library, naive and
EoT, judged by the model's own ensemble prediction) on a model and test tensors you hand it, and returns
an :class:`EvaluationResult` whose ``robust_accuracy`` is the per-example worst case over all of them at
the largest eps (:mod:`.worst_case`). With ``out`` it writes what the CLI writes: ``results.jsonl``,
``report.md``, the plots, ``model-card.json`` and ``worst-case.npz``; without, it works in a temporary
folder and keeps nothing.

>>> import torch
>>> from torch import nn
>>> from stochdef.defenses import load_dataset
>>> from stochdef.evaluations import evaluate_model
>>> digits = load_dataset("digits")
>>> torch.manual_seed(0) and None
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
>>> result = evaluate_model(net, digits.x_test[:20], digits.y_test[:20], eps=0.1, attacks=("fgsm",),
...                         libraries=("inhouse",), samples=(1,))
>>> 0.0 <= result.robust_accuracy <= result.clean_accuracy <= 1.0
True
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stochdef.defenses.files import atomic_write_text
from stochdef.defenses.validation import check_bounds, check_input, check_labels

from ..libraries import DEFAULT_EVAL_ATTACKS, LIBRARIES
from . import auto_samples, model_card, worst_case
from .checks import check_out
from .engine import evaluate, run_checked
from .results import ResultsFile
from .run import EvalConfig, Run
from .user_model import fingerprint, num_classes_of

DEFAULT_CAP = 32


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_model` measured, at ``eps`` (the largest asked for).

    ``robust_accuracy`` is the per-example worst case over every attack cell (with ``robust_accuracy_ci``,
    95% Wilson); ``per_attack`` the accuracy of each cell (``attack/library/samples N``) at ``eps``;
    ``card`` the model card; ``out`` the folder written (``None`` when nothing was kept).
    """

    clean_accuracy: float
    robust_accuracy: float
    robust_accuracy_ci: tuple[float, float]
    eps: float
    norm: str
    per_attack: dict[str, float]
    card: dict[str, Any]
    config: EvalConfig
    out: Path | None
    store: ResultsFile = field(repr=False)


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | Sequence[float],
    norm: str = "linf",
    attacks: Sequence[str] = DEFAULT_EVAL_ATTACKS,
    libraries: Sequence[str] = LIBRARIES,
    samples: Sequence[int] | str = (1, 8),
    out: str | Path | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    steps: int = 10,
    restarts: int = 1,
    queries: int = 1000,
    judge_samples: int = 16,
    samples_cap: int = DEFAULT_CAP,
    indicators: bool = False,
    dataset: str = "custom",
    seed: int = 0,
    name: str = "model",
    progress: bool = False,
) -> EvaluationResult:
    """Attack ``model`` on ``(x, y)`` with every attack of every library; the worst case is the headline.

    ``eps``: one radius or several (the card's is the largest); ``samples``: EoT draws per gradient, 1
    being the naive attack, or ``"auto"`` to double them up to ``samples_cap`` until the worst case
    settles (:mod:`.auto_samples`). ``indicators=True`` adds the gradient-obfuscation checks (in-house,
    L-inf); their transfer check attacks a zoo surrogate trained on a zoo data set, so it needs ``dataset``
    to name the zoo data set ``x`` comes from. The model runs where its parameters are; ``x`` and ``y``
    must be there too.
    """
    if indicators and dataset == "custom":
        raise ValueError("indicators=True needs dataset= naming the zoo data set of x (its surrogate models)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    bounds = check_bounds("bounds", tuple(bounds))
    check_input(x, bounds=bounds)
    model = model.eval()
    num_classes = num_classes_of(model, x)
    check_labels(y, batch=len(x), num_classes=num_classes, device=x.device)
    eps_all = (float(eps),) if isinstance(eps, int | float) else tuple(float(e) for e in eps)
    auto = samples == "auto"
    if isinstance(samples, str) and not auto:
        raise ValueError(f"samples must be a sequence of counts or 'auto', got {samples!r}")
    counts: tuple[int, ...] = (1,) if isinstance(samples, str) else tuple(samples)
    config = EvalConfig(
        dataset=dataset, defenses=(name,), attacks=tuple(attacks), libraries=tuple(libraries), eps=eps_all,
        samples=counts, n=len(x), steps=steps, judge_samples=judge_samples, seed=seed,
        device=str(x.device), indicators=indicators, transfer=False, norm=norm, bounds=bounds, restarts=restarts,
        queries=queries, samples_cap=samples_cap if auto else 0, source=fingerprint(model, x, y),
    )  # fmt: skip
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            return _evaluate(config, model, x, y, num_classes, Path(tmp), keep=False, progress=progress)
    return _evaluate(config, model, x, y, num_classes, Path(out), keep=True, progress=progress)


def _evaluate(
    config: EvalConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, out: Path, *,
    keep: bool, progress: bool,
) -> EvaluationResult:  # fmt: skip
    start = time.perf_counter()
    out = check_out(out)
    with ResultsFile(out / "results.jsonl", lock=True) as store:
        run = Run(config, store, x, y, num_classes, models={config.defenses[0]: model})
        run_checked(run, progress=progress)
    config = run.config
    if keep:
        write_outputs(store, config, out, seconds=time.perf_counter() - start)
    return result_of(store, config, out, keep=keep)


def result_of(store: ResultsFile, c: EvalConfig, out: Path, *, keep: bool = True) -> EvaluationResult:
    """The :class:`EvaluationResult` of the (single) defense of a finished run."""
    defense, eps = c.defenses[0], max(c.eps)
    card = model_card.card(store, c, defense, out)
    per_attack = {
        f"{r['attack']}/{r['library']}/samples {r['samples']}": r["acc_ensemble"]
        for r in worst_case.cells_at(store, c, defense, eps)
    }
    ci = card["robust_accuracy_ci"] or [float("nan"), float("nan")]
    return EvaluationResult(
        clean_accuracy=float(card["clean_accuracy"]),
        robust_accuracy=float(card["robust_accuracy"] if card["robust_accuracy"] is not None else float("nan")),
        robust_accuracy_ci=(float(ci[0]), float(ci[1])),
        eps=eps,
        norm=c.norm,
        per_attack=per_attack,
        card=card,
        config=c,
        out=out if keep else None,
        store=store,
    )


def write_outputs(store: ResultsFile, c: EvalConfig, out: Path, *, seconds: float | None = None) -> list[str]:
    """``report.md``, the plots and the model cards of a finished run; returns the plot file names."""
    from .plots import all_plots
    from .report import markdown

    plots = all_plots(store, c, out)
    text = markdown(store, c, seconds=seconds, plots=plots)
    extra = auto_samples.section(out)
    if extra:
        text = text.rstrip("\n") + "\n\n" + "\n".join(extra)
    atomic_write_text(out / "report.md", text)
    model_card.write_cards(store, c, out)
    return plots


def with_samples(config: EvalConfig, samples: Sequence[int] | str, cap: int = DEFAULT_CAP) -> EvalConfig:
    """``config`` with fixed draws, or with ``"auto"`` the doubling up to ``cap``."""
    if samples == "auto":
        return dataclasses.replace(config, samples=(1,), samples_cap=cap)
    if isinstance(samples, str):
        raise ValueError(f"samples must be counts or 'auto', got {samples!r}")
    return dataclasses.replace(config, samples=tuple(samples), samples_cap=0)


def execute(
    config: EvalConfig, out: Path, *, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
    models: dict[str, nn.Module] | None = None, progress: bool = True, recompute_stale: bool = False,
) -> tuple[ResultsFile, EvalConfig]:  # fmt: skip
    """Run ``config`` and return the store and the config as run (``samples`` = the counts run when auto).

    Zoo defenses on ``config.dataset`` by default (:func:`.engine.evaluate`); ``models`` (name -> module)
    are the caller's own, and ``x, y`` the caller's test data (else the first ``config.n`` test images of
    ``config.dataset``).
    """
    from stochdef.defenses import data as datasets

    from .run import check_defense_name

    if x is None and not models:
        store = evaluate(config, out=out, progress=progress, recompute_stale=recompute_stale)
        chosen = auto_samples.read(Path(out)) if config.samples_cap else None
        if chosen is not None:
            config = dataclasses.replace(config, samples=tuple(chosen["samples_run"]))
        return store, config
    data = datasets.load(config.dataset) if config.dataset in datasets.DATASETS else None
    if x is None or y is None:
        assert data is not None
        x, y = data.x_test[: config.n].to(config.device), data.y_test[: config.n].to(config.device)
    if models:
        num_classes = num_classes_of(next(iter(models.values())), x)
    else:
        assert data is not None
        num_classes = data.num_classes
        for name in config.defenses:
            check_defense_name(name, data)
    check_labels(y, batch=len(x), num_classes=num_classes, device=x.device)
    out = check_out(out)
    with ResultsFile(out / "results.jsonl", lock=True) as store:
        run = Run(config, store, x, y, num_classes, models=dict(models or {}))
        run_checked(run, progress=progress, recompute_stale=recompute_stale)
    return store, run.config
