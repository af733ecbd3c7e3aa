"""Computing a run's cells in one process, and the setup every run shares (one process or ``torchrun``'s ranks).

A run is the list of cells of :func:`.grid.cells.grid`, each computed once and streamed to ``results.jsonl``
(:mod:`.store.results`). Each cell seeds torch and numpy from the run's seed and its own key, so a resumed run
computes exactly what an uninterrupted one would, and ``torchrun`` can split the cells across processes
(:mod:`.distributed`) without changing a number. Before the first cell (:func:`prepare`, :func:`open_run`,
:func:`run_checked`): the configuration and the output folder are checked (:mod:`.checks`), the data and the
models are loaded (a bad checkpoint fails now), ``results.jsonl`` is locked for this run (a second run into the
same folder is refused), and the recorded cells whose provenance differs from this run's (weights, versions,
device, CPU capability: :mod:`.store.provenance`) refuse the run, or with ``recompute_stale=True`` move to
``results.stale.jsonl`` and are computed again. Ctrl-C raises :class:`Interrupted`, saying how many cells are
recorded and how to resume. The one entry point of every run is :func:`.api.evaluate`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from stochdef.defenses import data as datasets
from stochdef.defenses.validation import check_labels

from .auto_samples import run_auto
from .checks import check_out, whole_range
from .compute.accounting import count_forward
from .compute.diagnose import SURROGATES
from .compute.run import Run, check_defense_name, seed_everything, training_notice
from .config import EvalConfig
from .converge import run_converge
from .grid.cells import Cell, grid, linf_only
from .store.provenance import differences, summary
from .store.results import ResultsFile, cell_seed
from .store.shards import merge_shards
from .user_model import check_fits

logger = logging.getLogger(__name__)

STALE_FILE = "results.stale.jsonl"


class StaleResultsError(ValueError):
    """Recorded cells were computed under other conditions (weights, versions, device) than this run's."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says where it stopped and how to resume."""


@dataclass
class Inputs:
    """What a run evaluates on: the test examples, their class count, and the caller's own models (none for zoo
    defenses, which :class:`Run` loads by name)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    models: dict[str, nn.Module] = field(default_factory=dict)


def prepare(
    config: EvalConfig, *, models: dict[str, nn.Module] | None = None, x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> Inputs:  # fmt: skip
    """Check and load what ``config`` runs on: the caller's ``models`` (else the zoo's defenses, each name checked,
    with a notice for every one that will be trained first) and test data ``x, y`` (else the first ``config.n``
    test examples of ``config.dataset``). Logs, once per run, that an L2 run skips the L-inf checks."""
    data = datasets.load(config.dataset) if config.dataset in datasets.DATASETS else None
    if x is None or y is None:
        if data is None:
            raise ValueError(f"dataset {config.dataset!r} holds no test data: pass x and y")
        if config.n > len(data.x_test):
            raise ValueError(
                f"n must be <= {len(data.x_test)} (the size of {config.dataset}'s test split), got {config.n}"
            )
        x, y = data.x_test[: config.n].to(config.device), data.y_test[: config.n].to(config.device)
    if models:  # each model checked against the data before any forward pass over it (user_model.check_fits)
        classes = {name: check_fits(m, x, bounds=config.bounds) for name, m in models.items()}
        if len(set(classes.values())) > 1:
            raise ValueError(f"the models score different numbers of classes: {classes}")
        num_classes = next(iter(classes.values()))
    else:
        assert data is not None, "zoo defenses need a zoo data set"
        num_classes = data.num_classes
        for name in config.defenses:
            check_defense_name(name, data)  # unknown names fail here, listing the valid ones
    check_labels(y, batch=len(x), num_classes=num_classes, device=x.device)
    zoo_names = () if models else config.defenses
    for name in dict.fromkeys(zoo_names + (SURROGATES if config.indicators and data is not None else ())):
        if notice := training_notice(name, config.dataset):
            logger.warning(notice)  # before the run starts, so that the user can stop it
    if wide := whole_range(config.eps, norm=config.norm, bounds=config.bounds, dims=int(x[0].numel())):
        logger.warning(wide)
    if linf_only(config):
        logger.warning("the indicators and the transfer matrix are L-inf checks: not run with norm %r", config.norm)
    return Inputs(x, y, num_classes, dict(models or {}))


def open_run(config: EvalConfig, store: ResultsFile, inputs: Inputs | None = None) -> Run:
    """The :class:`Run` of ``config`` on ``inputs`` (:func:`prepare` d if not given) that records into ``store``."""
    inputs = prepare(config) if inputs is None else inputs
    return Run(config, store, inputs.x, inputs.y, inputs.num_classes, models=dict(inputs.models))


def compute(run: Run, cell: Cell) -> None:
    """Compute one cell and record it (a cell that does not apply records why)."""
    cell.before(run)  # work shared with other cells (a transfer source's examples): outside its seed and count
    seed_everything(cell_seed(run.config.seed, cell.key))
    start = time.perf_counter()
    with count_forward(run.models) as passes:
        fields = cell.compute(run)
    fields["forward_passes"] = passes.total  # rows through the defenses' forward (one example, one draw)
    run.record(cell.key, cell.kind, fields, time.perf_counter() - start, cell.defenses())


def _stale(run: Run, cells: Sequence[Cell]) -> dict[str, list[str]]:
    """The recorded cells of ``cells`` whose provenance differs from what this run would record, and how."""
    expected = {"versions": run.versions}
    found = {}
    for cell in cells:
        record = cell.record(run.store)
        if record is not None:
            diff = differences(record, {**expected, "provenance": run.provenance(cell.defenses())})
            if diff:
                found[cell.key] = diff
    return found


def retire_stale(run: Run, cells: Sequence[Cell], out: Path, *, recompute_stale: bool) -> None:
    """Refuse a store holding cells of ``cells`` of another provenance, or (``recompute_stale``) move them to
    ``out/results.stale.jsonl`` so that they are computed again. ``run.store`` must be the results file."""
    store = run.store
    stale = _stale(run, cells)
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


def local(
    config: EvalConfig, inputs: Inputs, *, out: Path, progress: bool = True, recompute_stale: bool = False
) -> tuple[ResultsFile, EvalConfig]:
    """Run (or resume) ``config`` on ``inputs`` in this process; results go to ``out/results.jsonl``. Returns the
    store and the config as run (with ``--samples auto``, the counts it ran). Shards left by a killed distributed
    run (:mod:`.distributed`) are merged first: their cells are done."""
    out = check_out(out)
    with ResultsFile(out / "results.jsonl", lock=True) as store:
        run = open_run(config, store, inputs)
        merge_shards(store, out, order=[cell.key for cell in grid(config)])
        run_checked(run, progress=progress, recompute_stale=recompute_stale)
    return store, run.config


def run_checked(run: Run, *, progress: bool = True, recompute_stale: bool = False) -> ResultsFile:
    """Load every model, refuse (or retire) stale cells, then compute the missing ones of ``run``.

    With ``samples_cap`` set (``--samples auto``), the EoT draws double until the worst case settles
    (:mod:`.auto_samples`); ``run.config`` ends as run.
    """
    config, store = run.config, run.store
    for name in config.defenses:
        run.model(name)  # a missing or bad checkpoint fails before the first cell
    retire_stale(run, grid(config), store.path.parent, recompute_stale=recompute_stale)
    if config.samples_cap:
        run_auto(run, lambda r: run_cells(r, progress=progress))
    else:
        run_cells(run, progress=progress)
    run_converge(run, compute)  # --converge: the doubled budgets, after the indicators that may ask for them
    return store


def run_cells(run: Run, *, progress: bool = True) -> ResultsFile:
    """Compute every cell of ``run.config`` that the store lacks; Ctrl-C raises :class:`Interrupted`."""
    store = run.store
    cells = grid(run.config)
    todo = [cell for cell in cells if cell.key not in store]
    logger.info("%d cells, %d already done", len(cells), len(cells) - len(todo))
    done = 0
    # the bar (and its ETA) advances by each cell's expected cost in forward passes, not by cells: a clean cell
    # is cheap and an EoT attack cell dear, so a count of cells misjudges the time left
    costs = [max(cell.cost(run, lambda _: 1.0), 1.0) for cell in todo]
    try:
        with tqdm(total=sum(costs), desc="evaluate", unit="pass", unit_scale=True, disable=not progress) as bar:
            for cell, cost in zip(todo, costs, strict=True):
                compute(run, cell)
                done += 1
                bar.update(cost)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {done} of the {len(todo)} cells to compute; {len(store)} cells are recorded in "
            f"{store.path}: run the same command again to resume"
        ) from None
    return store
