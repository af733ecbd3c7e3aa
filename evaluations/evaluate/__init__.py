"""``stochdef evaluate``: every defense against every library, the naive and the EoT attack side by side.

Arranged by concern (how each library runs each attack is :mod:`stochdef.evaluations.libraries`):

* :mod:`.config` -- :class:`EvalConfig` and :data:`~.config.SETTINGS`, the one description of the options the
  CLI and :func:`evaluate_model` share; :mod:`.checks` -- every configuration check, before the first cell;
* :mod:`.store` -- ``results.jsonl`` (resumable, locked), provenance, shards, blocks, the worst-case examples;
* :mod:`.compute` -- the run's state (:class:`~.compute.run.Run`), the judge, the indicators, the transfer matrix;
* :mod:`.grid` -- the typed cells (clean, attack, block, indicators, transfer: key, cost, record) and the split
  of the cells across ``torchrun``'s ranks;
* :mod:`.engine` -- one process's run and the setup every run shares; :mod:`.distributed` -- the ranks' run;
  :mod:`.auto_samples` -- ``--samples auto``; :mod:`.user_model` -- ``--model``, ``--checkpoint``, ``--data``;
* :mod:`.outputs` -- the headline worst case, ``report.md``, plots, model cards, the written reading;
* :mod:`.api` -- :func:`evaluate`, the one entry point of every run, and :func:`evaluate_model`.
"""

from __future__ import annotations

from .api import Evaluation, EvaluationResult, evaluate, evaluate_model
from .compute.run import Run
from .config import DEFAULT_DEFENSES, SETTINGS, EvalConfig, base_name, build_config
from .engine import Interrupted, StaleResultsError, compute
from .grid.cells import AttackCell, BlockCell, Cell, CleanCell, IndicatorCell, TransferCell, grid

__all__ = [
    "DEFAULT_DEFENSES",
    "SETTINGS",
    "AttackCell",
    "BlockCell",
    "Cell",
    "CleanCell",
    "EvalConfig",
    "Evaluation",
    "EvaluationResult",
    "IndicatorCell",
    "Interrupted",
    "Run",
    "StaleResultsError",
    "TransferCell",
    "base_name",
    "build_config",
    "compute",
    "evaluate",
    "evaluate_model",
    "grid",
]
