"""stochdef.evaluations: everything that attacks or measures a defense, one sub-package per job.

* :mod:`.attacks` -- the in-house reference attacks (FGSM, PGD/BIM, DeepFool, LocalSearch);
* :mod:`.libraries` -- every attack as one object (its settings, cost, and how each library, ``inhouse``,
  Foolbox 3, ART or torchattacks, runs it, or why it has no counterpart) and the registry of them;
* :mod:`.evaluate` -- ``stochdef evaluate``: every defense x library x attack, naive and EoT, with the
  gradient-obfuscation checks, the transfer matrix, the report and plots;
* :mod:`.crosscheck` -- ``stochdef crosscheck``: the in-house attacks against the libraries;
* :mod:`.reproduce` -- ``stochdef reproduce``: each paper's headline table, its numbers beside ours;
* :mod:`.bench` -- ``stochdef bench``; :mod:`.cli` -- the command line;
* :mod:`.stats` (binomial intervals, tolerances) and :mod:`.figures` (headless matplotlib) serve them all.

:func:`evaluate_model` (from :mod:`.evaluate.api`) evaluates your own model; it is imported on first use:
this package imports nothing itself, so that ``stochdef --help`` stays fast (DESIGN.md, "Layout").
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate_model"]


def __getattr__(name: str) -> Any:
    if name == "evaluate_model":
        from .evaluate.api import evaluate_model

        return evaluate_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
