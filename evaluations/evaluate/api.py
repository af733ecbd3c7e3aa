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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stochdef.defenses.files import atomic_write_text
from stochdef.defenses.validation import check_bounds, check_input

from .. import libraries as attack_libraries
from .adaptive import with_declarations
from .config import DEFAULT_SAMPLES_CAP, EvalConfig, build_config, own_model_config
from .engine import local, prepare
from .outputs import model_card, worst_case
from .store import budgets, samples_auto
from .store.results import ResultsFile
from .user_model import fingerprint, load_checkpoint


@dataclass(frozen=True)
class Evaluation:
    """A finished run: its results (``None`` on a ``torchrun`` rank other than 0, which reports nothing) and the
    config as run (with ``--samples auto``, the draws it ran)."""

    store: ResultsFile | None
    config: EvalConfig


def evaluate(
    config: EvalConfig, *, out: str | Path, models: dict[str, nn.Module] | None = None, x: torch.Tensor | None = None,
    y: torch.Tensor | None = None, progress: bool = True, recompute_stale: bool = False,
) -> Evaluation:  # fmt: skip
    """Run (or resume) ``config``; the one entry point of every run (the CLI, :func:`evaluate_model`, and each rank of
    a ``torchrun`` sweep). Zoo defenses on ``config.dataset`` by default; ``models`` (name -> module) are the
    caller's own, and ``x, y`` the caller's test data. Under ``torchrun`` with several processes
    (:func:`.distributed.launched`) the cells are split across the ranks."""
    from . import distributed

    config = with_declarations(config, models)  # the adaptive cells of the defenses' declared surrogates
    if distributed.launched():
        if models or x is not None or config.samples_cap or config.converge != "off":
            raise ValueError(
                "under torchrun, evaluate splits zoo defenses with a fixed --samples list; "
                "--model, --data, --converge and --samples auto run in one process"
            )
        store = distributed.evaluate(config, out=Path(out), progress=progress, recompute_stale=recompute_stale)
        return Evaluation(store, config)
    inputs = prepare(config, models=models, x=x, y=y)
    store, config = local(config, inputs, out=Path(out), progress=progress, recompute_stale=recompute_stale)
    return Evaluation(store, config)


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
    #: with several models (``evaluate_model({"a": m1, "b": m2}, ...)``), each model's result, by name
    by_model: dict[str, EvaluationResult] = field(default_factory=dict, repr=False)


def evaluate_model(
    model: nn.Module | Mapping[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | Sequence[float],
    norm: str = "linf",
    attacks: Sequence[str] = attack_libraries.DEFAULT_ATTACKS,
    libraries: Sequence[str] = attack_libraries.DEFAULT_LIBRARIES,
    samples: Sequence[int] | str = (1, 8),
    out: str | Path | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    steps: int = 10,
    block: int = 0,
    restarts: int = 1,
    queries: int = 1000,
    judge_samples: int = 16,
    samples_cap: int = DEFAULT_SAMPLES_CAP,
    converge: str = "off",
    indicators: bool = False,
    dataset: str = "custom",
    checkpoint: str | Path | None = None,
    seed: int = 0,
    name: str = "model",
    recompute_stale: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    """Attack ``model`` on ``(x, y)`` with every attack of every library; the worst case is the headline.

    ``eps``: one radius or several (the card's is the largest); ``samples``: EoT draws per gradient, 1
    being the naive attack, or ``"auto"`` to double them up to ``samples_cap`` until the worst case
    settles (:mod:`.auto_samples`). ``indicators=True`` adds the gradient-obfuscation checks (in-house,
    L-inf); the two that attack a zoo surrogate run only when ``dataset`` names the zoo data set ``x`` comes
    from (the card lists the checks that ran). ``checkpoint``: a state dict loaded into ``model`` first. The
    model runs where its parameters are; ``x`` and ``y`` must be there too. The keywords are those of
    ``stochdef evaluate`` (:data:`.config.SETTINGS`). Several models (a mapping name -> model, e.g. a defense and
    its undefended baseline) run side by side in one report; the result is the first one's, with every model's
    in ``by_model``.
    """
    models = _models(model, name=name, checkpoint=checkpoint)
    bounds = check_bounds("bounds", tuple(bounds))
    check_input(x, bounds=bounds)
    if checkpoint is not None:
        load_checkpoint(next(iter(models.values())), checkpoint)
    eps_all = (float(eps),) if isinstance(eps, int | float) else tuple(float(e) for e in eps)
    config = build_config(
        dataset=dataset, attacks=tuple(attacks), libraries=tuple(libraries), eps=eps_all, samples=samples,
        samples_cap=samples_cap, converge=converge, steps=steps, block=block, judge_samples=judge_samples, seed=seed,
        device=str(x.device), indicators=indicators, norm=norm, bounds=bounds, restarts=restarts, queries=queries,
        source=fingerprint(*models.values(), x, y, extra=list(models) if len(models) > 1 else ()),
    )  # fmt: skip
    config = own_model_config(
        config, name=tuple(models), n=len(x), source=config.source, zoo_data=dataset != "custom",
        checkpoint=None if checkpoint is None else str(checkpoint),
    )  # fmt: skip
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            return _evaluate(config, models, x, y, Path(tmp), keep=False, progress=progress, recompute_stale=False)
    return _evaluate(config, models, x, y, Path(out), keep=True, progress=progress, recompute_stale=recompute_stale)


def _models(model: object, *, name: str, checkpoint: object) -> dict[str, nn.Module]:
    """``evaluate_model``'s model(s) by name, in eval mode; a mapping names its own (``name`` and ``checkpoint``
    are for one model)."""
    if isinstance(model, nn.Module):
        return {name: model.eval()}
    if not isinstance(model, Mapping) or not model:
        raise TypeError(f"model must be an nn.Module or a non-empty mapping name -> nn.Module, got {model!r:.80}")
    for key, m in model.items():
        if not isinstance(key, str) or not key or not isinstance(m, nn.Module):
            raise TypeError(f"model: each entry must map a non-empty name to an nn.Module, got {key!r}: {m!r:.60}")
    if checkpoint is not None and len(model) > 1:
        raise ValueError("checkpoint is for one model: load each model's state dict before passing several")
    return {key: m.eval() for key, m in model.items()}


def _evaluate(
    config: EvalConfig, models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, out: Path, *, keep: bool,
    progress: bool, recompute_stale: bool,
) -> EvaluationResult:  # fmt: skip
    start = time.perf_counter()
    done = evaluate(config, out=out, models=models, x=x, y=y, progress=progress,
                    recompute_stale=recompute_stale)  # fmt: skip
    assert done.store is not None
    if keep:
        write_outputs(done.store, done.config, out, seconds=time.perf_counter() - start)
    results = {d: result_of(done.store, done.config, out, keep=keep, defense=d) for d in done.config.defenses}
    first = results[done.config.defenses[0]]
    return first if len(results) == 1 else dataclasses.replace(first, by_model=results)


def result_of(
    store: ResultsFile, c: EvalConfig, out: Path, *, keep: bool = True, defense: str | None = None
) -> EvaluationResult:
    """The :class:`EvaluationResult` of ``defense`` (default: the first) of a finished run."""
    defense, eps = defense or c.defenses[0], max(c.eps)
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
    from .outputs.plots import all_plots
    from .outputs.report import markdown

    plots = all_plots(store, c, out)
    text = markdown(store, c, seconds=seconds, plots=plots)
    extra = samples_auto.report_lines(out) + budgets.report_lines(out)
    if extra:
        text = text.rstrip("\n") + "\n\n" + "\n".join(extra)
    atomic_write_text(out / "report.md", text)
    model_card.write_cards(store, c, out)
    return plots
