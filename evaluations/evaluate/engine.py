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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stochdef.adapters import is_random
from stochdef.defenses import data as datasets

from .. import libraries
from ..libraries import AttackSpec
from .accounting import count_forward
from .auto_samples import run_auto
from .diagnose import SURROGATES, diagnose
from .results import ResultsFile, cell_seed
from .run import (
    EvalConfig,
    Judge,
    Run,
    attack_key,
    check_defense_name,
    clean_key,
    indicator_key,
    seed_everything,
    training_notice,
    transfer_key,
)
from .transfer import transfer_cell
from .worst_case import track_worst_case

logger = logging.getLogger(__name__)


def cells(run: Run) -> Iterator[tuple[str, str, Any]]:
    """``(kind, key, payload)`` of every cell of the run, in order (clean cells first)."""
    c = run.config
    for defense in c.defenses:
        yield "clean", clean_key(c, defense), defense
    for defense in c.defenses:
        for attack in c.attacks:
            for eps in c.eps:
                for samples in c.samples:
                    spec = c.attack_spec(attack, eps, samples)
                    if isinstance(spec, str):  # no such attack in this threat model (FGSM under L2)
                        continue
                    for library in c.libraries:
                        yield "attack", attack_key(c, defense, library, spec), (defense, library, spec)
    if c.norm != "linf" and (c.indicators or c.transfer):
        logger.warning("the indicators and the transfer matrix are L-inf checks: not run with norm %r", c.norm)
        return
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
    with count_forward(run.models) as passes:
        if kind == "clean":
            model = run.model(payload)
            random = is_random(model, run.x[:32], passes=3)
            judged = Judge(model, run.config.judge_samples if random else 1)(run.x, run.y)
            fields = {"defense": payload, "random": random, **judged}
            track_worst_case(run, key, "clean", payload, max(run.config.eps), run.x, judged["correct"])
        elif kind == "attack":
            fields = attack_cell(run, key, *payload)
        elif kind == "indicators":
            fields = {"defense": payload, "indicators": diagnose(run, payload)}
        else:
            fields = transfer_cell(run, *payload)
    fields["forward_passes"] = passes.total  # rows through the defenses' forward (one example, one draw)
    run.record(key, kind, fields, time.perf_counter() - start)


def attack_cell(run: Run, key: str, defense: str, library: str, spec: AttackSpec) -> dict[str, Any]:
    """One library's attack on one defense, judged per example by the defense's own inference rule."""
    # The fields an attack cell has always recorded (the spec's other settings are the table's defaults).
    setting = {"attack": spec.attack, "eps": spec.eps, "samples": spec.samples, "steps": spec.steps}
    fields = {"defense": defense, "library": library, **setting, "step": spec.step_size, "bounds": spec.bounds}
    fields.update(run_spec_fields(spec))
    reason = libraries.unsupported(library, spec)
    if reason is not None:
        fields["skipped"] = f"{library} has no counterpart: {reason}"
    elif spec.samples > 1 and not run.is_random(defense):
        fields["skipped"] = "deterministic defense: the EoT attack equals the naive one"
    else:
        model = run.model(defense)
        x_adv = libraries.run(library, spec, model, run.x, run.y, num_classes=run.num_classes)
        delta = (x_adv - run.x).flatten(1)
        judged = Judge(model, run.draws(defense, run.config.judge_samples))(x_adv, run.y)
        fields.update(
            estimator=libraries.estimator(library, spec),
            linf=float(delta.abs().max()),
            l2=float(delta.norm(dim=1).max()),
            **judged,
        )
        label = f"{spec.attack}/{library}/samples {spec.samples}"
        track_worst_case(run, key, label, defense, spec.radius, x_adv, judged["correct"])
    return fields


def run_spec_fields(spec: AttackSpec) -> dict[str, Any]:
    """The settings of the stronger attacks and of L2 runs, recorded only where they apply."""
    fields: dict[str, Any] = {}
    if spec.norm != "linf":
        fields["norm"] = spec.norm
    if spec.restarts != 1 or spec.attack in ("pgd-rs", "apgd-ce", "apgd-dlr", "square"):
        fields["restarts"] = spec.restarts
    if spec.attack == "square":
        fields["queries"] = spec.queries
    return fields


def evaluate(config: EvalConfig, *, out: Path, progress: bool = True) -> ResultsFile:
    """Run (or resume) the evaluation described by ``config``; results go to ``out/results.jsonl``.

    With ``config.samples_cap`` set (``--samples auto``), the EoT draws double until the worst case settles
    (:mod:`.auto_samples`).
    """
    return run_all(open_run(config, out=out), progress=progress)


def run_all(run: Run, *, progress: bool = True) -> ResultsFile:
    """:func:`run_cells`, or with ``samples_cap`` the doubling of :mod:`.auto_samples` (``run.config`` ends as run)."""
    if run.config.samples_cap:
        return run_auto(run, lambda r: run_cells(r, progress=progress))
    return run_cells(run, progress=progress)


def open_run(config: EvalConfig, *, out: Path) -> Run:
    """A :class:`Run` of zoo defenses on ``config.dataset``'s first ``n`` test images."""
    data = datasets.load(config.dataset)
    if config.n > len(data.x_test):
        raise ValueError(f"n must be <= {len(data.x_test)} (the size of {config.dataset}'s test split), got {config.n}")
    for name in config.defenses:
        check_defense_name(name, data)  # unknown names fail here, listing the valid ones
    for name in dict.fromkeys(config.defenses + (SURROGATES if config.indicators else ())):
        if notice := training_notice(name, config.dataset):
            logger.warning(notice)  # before the run starts, so that the user can stop it
    store = ResultsFile(Path(out) / "results.jsonl")
    device = torch.device(config.device)
    return Run(config, store, data.x_test[: config.n].to(device), data.y_test[: config.n].to(device), data.num_classes)


def run_cells(run: Run, *, progress: bool = True) -> ResultsFile:
    """Compute every cell of ``run`` that its store lacks (a killed run resumes where it stopped)."""
    store = run.store
    todo = [cell for cell in cells(run) if cell[1] not in store]
    logger.info("%d cells, %d already done", len(todo) + len(store), len(store))
    for kind, key, payload in tqdm(todo, desc="evaluate", disable=not progress):
        compute(run, kind, key, payload)
    return store
