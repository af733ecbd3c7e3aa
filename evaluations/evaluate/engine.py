"""``stochdef evaluate``: every defense against every library, the naive and the EoT attack side by side.

A run is a list of cells, each computed once and streamed to ``results.jsonl`` (see :mod:`.results`):

* ``clean`` (per defense): accuracy of the defense's own inference rule, one draw and an n-draw ensemble;
* ``attack`` (defense x attack x library x eps x samples): robust accuracy under that library's attack,
  ``samples=1`` being the naive single-draw attack and ``samples>1`` the EoT attack (skipped for a
  deterministic defense, where EoT equals naive);
* ``indicators`` (per defense): the gradient-obfuscation checks of :mod:`.diagnose`;
* ``transfer`` (defense pairs): accuracy of B on adversarial examples made on A (Adv-BNN eq. 14).

Each cell seeds torch and numpy from the run's seed and its own key, so a resumed run computes exactly
what an uninterrupted one would have, and ``torchrun`` can split the cells across processes
(:mod:`.distributed`) without changing a number. Before the first cell: the configuration and the output folder are
checked (:mod:`.checks`), ``results.jsonl`` is locked for this run (a second run into the same folder is
refused), every model is loaded (a bad checkpoint fails now), and the recorded cells whose provenance differs
from this run's (weights, versions, device, CPU capability: :mod:`.provenance`) refuse the run, or with
``recompute_stale=True`` move to ``results.stale.jsonl`` and are computed again. Ctrl-C raises
:class:`Interrupted`, saying how many cells are recorded and how to resume.
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
from .checks import check_out
from .diagnose import SURROGATES, diagnose, surrogate_for
from .provenance import differences, summary
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
from .shards import merge_shards
from .transfer import source_examples, transfer_cell
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
    if kind == "transfer":  # the source's examples: made once per process, outside the cell's passes and draws
        reseed_after_source(run, key, payload[0])
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
    run.record(key, kind, fields, time.perf_counter() - start, defenses_of(kind, payload))


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


def reseed_after_source(run: Run, key: str, source: str) -> None:
    """Make (or reuse) the transfer source's examples, then seed the cell: the target's draws then start from
    the cell's own seed whether or not an earlier cell on this process had made that source's examples."""
    source_examples(run, source)
    seed_everything(cell_seed(run.config.seed, key))


def defenses_of(kind: str, payload: Any) -> tuple[str, ...]:
    """The defenses whose models a cell uses (its provenance records their weights)."""
    if kind == "attack":
        return (payload[0],)
    if kind == "transfer":
        return tuple(dict.fromkeys(payload))
    if kind == "indicators":  # the transfer indicator attacks from a surrogate model
        return (payload, surrogate_for(payload))
    return (payload,)


class StaleResultsError(ValueError):
    """Recorded cells were computed under other conditions (weights, versions, device) than this run's."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says where it stopped and how to resume."""


STALE_FILE = "results.stale.jsonl"


def _stale(run: Run, grid: list[tuple[str, str, Any]]) -> dict[str, list[str]]:
    """The recorded cells of ``grid`` whose provenance differs from what this run would record, and how."""
    expected = {"versions": run.versions}
    found = {}
    for kind, key, payload in grid:
        record = run.store.get(key)
        if record is not None:
            diff = differences(record, {**expected, "provenance": run.provenance(defenses_of(kind, payload))})
            if diff:
                found[key] = diff
    return found


def prepare(config: EvalConfig) -> datasets.Dataset:
    """Load the data and check every defense name; announce the models that will be trained first."""
    data = datasets.load(config.dataset)
    if config.n > len(data.x_test):
        raise ValueError(f"n must be <= {len(data.x_test)} (the size of {config.dataset}'s test split), got {config.n}")
    for name in config.defenses:
        check_defense_name(name, data)  # unknown names fail here, listing the valid ones
    for name in dict.fromkeys(config.defenses + (SURROGATES if config.indicators else ())):
        if notice := training_notice(name, config.dataset):
            logger.warning(notice)  # before the run starts, so that the user can stop it
    return data


def open_run(config: EvalConfig, store: ResultsFile, data: datasets.Dataset | None = None) -> Run:
    """The :class:`Run` of ``config`` (on ``data``, :func:`prepare` d if not given) that records into ``store``."""
    data = prepare(config) if data is None else data
    device = torch.device(config.device)
    return Run(config, store, data.x_test[: config.n].to(device), data.y_test[: config.n].to(device), data.num_classes)


def retire_stale(run: Run, grid: list[tuple[str, str, Any]], out: Path, *, recompute_stale: bool) -> None:
    """Refuse a store holding cells of ``grid`` of another provenance, or (``recompute_stale``) move them to
    ``out/results.stale.jsonl`` so that they are computed again. ``run.store`` must be the results file."""
    store = run.store
    stale = _stale(run, grid)
    if stale and not recompute_stale:
        raise StaleResultsError(
            f"{store.path} holds {len(stale)} cell(s) of this run computed under other conditions "
            f"({summary(stale.values())}): rerun with --recompute-stale to compute them again (the old records "
            f"move to {out / STALE_FILE}), or write to another --out"
        )
    if stale:
        store.retire(stale, to=out / STALE_FILE)
        logger.warning(
            "recomputing %d cell(s) computed under other conditions (%s); old records moved to %s",
            len(stale),
            summary(stale.values()),
            out / STALE_FILE,
        )


def evaluate(config: EvalConfig, *, out: Path, progress: bool = True, recompute_stale: bool = False) -> ResultsFile:
    """Run (or resume) the evaluation described by ``config``; results go to ``out/results.jsonl``.

    Everything is checked before the first cell (see the module docstring); recorded cells of another
    provenance raise :class:`StaleResultsError` unless ``recompute_stale=True``. Shards left by a killed
    distributed run (:mod:`.distributed`) are merged first: their cells are done.
    """
    out = check_out(out)
    data = prepare(config)
    with ResultsFile(out / "results.jsonl", lock=True) as store:
        merge_shards(store, out)
        return run_checked(open_run(config, store, data), progress=progress, recompute_stale=recompute_stale)


def run_checked(run: Run, *, progress: bool = True, recompute_stale: bool = False) -> ResultsFile:
    """Load every model, refuse (or retire) stale cells, then compute the missing ones of ``run``.

    With ``samples_cap`` set (``--samples auto``), the EoT draws double until the worst case settles
    (:mod:`.auto_samples`); ``run.config`` ends as run.
    """
    config, store = run.config, run.store
    for name in config.defenses:
        run.model(name)  # a missing or bad checkpoint fails before the first cell
    retire_stale(run, list(cells(run)), store.path.parent, recompute_stale=recompute_stale)
    if config.samples_cap:
        return run_auto(run, lambda r: run_cells(r, progress=progress))
    return run_cells(run, progress=progress)


def run_cells(run: Run, *, progress: bool = True) -> ResultsFile:
    """Compute every cell of ``run.config`` that the store lacks; Ctrl-C raises :class:`Interrupted`."""
    store = run.store
    grid = list(cells(run))
    todo = [cell for cell in grid if cell[1] not in store]
    logger.info("%d cells, %d already done", len(grid), len(grid) - len(todo))
    done = 0
    try:
        for kind, key, payload in tqdm(todo, desc="evaluate", disable=not progress):
            compute(run, kind, key, payload)
            done += 1
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {done} of the {len(todo)} cells to compute; {len(store)} cells are recorded in "
            f"{store.path}: run the same command again to resume"
        ) from None
    return store
