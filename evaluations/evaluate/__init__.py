"""``stochdef evaluate``: every defense against every library, the naive and the EoT attack side by side.

The job's layers, each depending only on those above it (how each library runs each attack is
:mod:`stochdef.evaluations.libraries`):

* :mod:`.results` -- the resumable, locked JSONL store of cells, the cell keys and seeds, ``merge``;
* :mod:`.checks` -- the configuration's checks, all run before the first cell; :mod:`.provenance` -- what a
  cell depends on beyond its key (weights, versions, device, CPU capability);
* :mod:`.run` -- :class:`EvalConfig` (what to evaluate) and :class:`Run` (what a run has loaded);
* :mod:`.indicators`, :mod:`.diagnose`, :mod:`.transfer` -- the per-defense checks and the transfer matrix;
* :mod:`.engine` -- the grid of cells and :func:`evaluate`, which computes the missing ones;
* :mod:`.report`, :mod:`.plots` -- Markdown, console table and PNGs from a finished store;
* :mod:`.worst_case` -- the headline: per-example worst case over every attack; :mod:`.model_card` --
  ``model-card.json``; :mod:`.auto_samples` -- ``--samples auto``; :mod:`.accounting` -- forward passes;
* :mod:`.user_model` -- ``--model MODULE:ATTR``, ``--checkpoint``, ``--data``; :mod:`.api` --
  :func:`evaluate_model`, the Python entry point for your own model.
* :mod:`.shards`, :mod:`.schedule`, :mod:`.distributed` -- the same cells split across ``torchrun`` processes:
  one results shard per rank, the cost-balanced split, the ranks' run.
"""

from __future__ import annotations

from .api import EvaluationResult, evaluate_model
from .engine import Interrupted, StaleResultsError, cells, compute, evaluate
from .run import (
    DEFAULT_DEFENSES,
    EvalConfig,
    Run,
    attack_key,
    base_name,
    clean_key,
    indicator_key,
    transfer_key,
)

__all__ = [
    "DEFAULT_DEFENSES",
    "EvalConfig",
    "EvaluationResult",
    "Interrupted",
    "Run",
    "StaleResultsError",
    "attack_key",
    "base_name",
    "cells",
    "clean_key",
    "compute",
    "evaluate",
    "evaluate_model",
    "indicator_key",
    "transfer_key",
]
