"""``model-card.json``: one evaluated model's numbers, RobustBench-like, beside the report.

``clean_accuracy`` and ``robust_accuracy`` are plain numbers at the card's ``eps`` (the largest of the
run; the report has every eps), the robust one being the per-example worst case over every attack of every
library (:mod:`.worst_case`), with their 95% intervals. Then the threat model (norm, eps, bounds), what ran
(attacks, libraries, EoT draws and how they were taken: ``draws`` is how the model draws, per row, once per
call or not at all, and ``eot_draws`` says per sample count what the EoT attacks averaged; the ``--samples auto``
curve when the run chose them), the compute spent
(forward passes: one example through the model once), the ``--converge`` curve (``budget``, with its plot),
whether a gradient-obfuscation indicator fired, Croce & Hein's own checks beside them (``reference_checks``, with
the library ``autoattack``), and
per example (at the card's eps in ``examples``, at every eps in ``examples_by_eps``): robust or not, which
attack broke it first, the perturbation's L-inf and L2 norms. The adversarial examples themselves are in the
``.npz`` the card names, keyed by eps (``eps``; ``x``, ``y``; per eps ``x_adv``, ``broken_by``, ``robust``,
``linf``, ``l2``).

A one-defense run (a user's model) writes ``model-card.json`` and ``worst-case.npz``; a run of several
defenses writes ``model-card--DEFENSE.json`` and ``worst-case--DEFENSE.npz`` for each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stochdef.adapters import draws_taken
from stochdef.defenses.files import atomic_write_text

from ... import libraries
from ..config import EvalConfig
from ..grid.cells import CleanCell, IndicatorCell
from ..store import examples, samples_auto
from ..store.results import ResultsFile
from . import bands, flags, reference_section, worst_case

SCHEMA = "stochdef-model-card/1"


def card_path(out: Path, c: EvalConfig, defense: str) -> Path:
    return examples.output_path(out, c.defenses, defense, "model-card", ".json")


def forward_passes(store: ResultsFile, defense: str) -> int:
    """Rows through the model in the defense's clean, attack and indicator cells."""
    return sum(int(r.get("forward_passes", 0)) for r in store if r.get("defense") == defense)


def card(store: ResultsFile, c: EvalConfig, defense: str, out: Path) -> dict[str, Any]:
    """The model card of ``defense`` from a finished store and its run folder."""
    eps = max(c.eps)
    clean = CleanCell.of(c, defense).record(store) or {}
    worst = worst_case.summary(store, c, defense, eps)
    indicators = IndicatorCell.of(c, defense).record(store)
    fired = None if indicators is None else [i["name"] for i in indicators["indicators"] if i["fired"]]
    npz_path = examples.worst_case_path(out, c.defenses, defense)
    arrays = examples.read(npz_path)
    chosen = samples_auto.read(out)
    versions: dict[str, str] = next((r["versions"] for r in store if "versions" in r), {})
    return {
        "schema": SCHEMA,
        "model": defense,
        "dataset": c.dataset,
        "source": c.source or None,
        "checkpoint": c.checkpoint_of(defense),
        "n": c.n,
        "norm": c.norm,
        "eps": eps,
        "bounds": list(c.bounds),
        "clean_accuracy": clean.get("acc_ensemble"),
        "clean_accuracy_ci": clean.get("acc_ensemble_ci"),
        "robust_accuracy": None if worst is None else worst["robust_accuracy"],
        "robust_accuracy_ci": None if worst is None else worst["robust_accuracy_ci"],
        "robust_accuracy_rule": "per-example worst case over every attack, library and EoT count at eps",
        "best_single_attack": None if worst is None else worst["best_single"],
        "best_single_attack_accuracy": None if worst is None else worst["best_single_accuracy"],
        **bands.card_fields(store, c, defense, eps, worst),
        "robust_accuracy_by_eps": {
            str(e): (s["robust_accuracy"] if (s := worst_case.summary(store, c, defense, e)) else None)
            for e in sorted(c.eps)
        },
        "random": clean.get("random"),
        "draws": clean.get("draws"),
        "judge": f"softmax average of {clean.get('judge_draws', f'{c.judge_samples} draws')}"
        if clean.get("random")
        else "one forward pass",
        "attacks": list(c.attacks),
        "libraries": list(c.libraries),
        "eot_samples": list(c.samples),
        "eot_draws": {str(s): draws_taken(clean.get("draws"), s) for s in c.samples},
        "samples_auto": None if chosen is None else chosen["defenses"].get(defense),
        "budget": budget_of(out, defense),
        "steps": c.steps,
        "restarts": c.restarts,
        **budgets(c),
        "forward_passes": forward_passes(store, defense),
        "unchanged_attack_cells": [flags.unchanged_text(f) for f in flags.unchanged(store, c, defense)],
        "indicator_fired": None if fired is None else bool(fired),
        "indicators_fired": fired,
        "indicators_run": None if indicators is None else [i["name"] for i in indicators["indicators"]],
        **reference_section.card_fields(store, c, defense),
        "seed": c.seed,
        "versions": versions,
        "worst_case_file": npz_path.name if arrays is not None else None,
        "examples": [] if arrays is None else per_example(arrays, eps),
        "examples_by_eps": {} if arrays is None else {str(e): per_example(arrays, e) for e in sorted(c.eps)},
    }


def budget_of(out: Path, defense: str) -> dict[str, Any] | None:
    """The ``--converge`` curve of ``defense``, its verdict and the plot that draws it (``plot``: None before the
    plots are written); None when its budget was not doubled."""
    from ..store.budgets import read, verdict
    from .convergence_plot import FILE

    data = read(out)
    entry = None if data is None else data["defenses"].get(defense)
    plot = FILE if (Path(out) / FILE).exists() else None
    return None if entry is None else {**entry, "verdict": verdict(entry), "plot": plot}


def budgets(c: EvalConfig) -> dict[str, Any]:
    """The budgets the run's attacks took (``restarts``; ``square_queries`` when an attack takes queries)."""
    takes_queries = any(libraries.get(name).takes_queries for name in c.attacks)
    return {"square_queries": c.queries if takes_queries else None}


def per_example(arrays: dict[str, Any], eps: float) -> list[dict[str, Any]]:
    """Each example at ``eps`` (a row of the worst-case file, :mod:`..store.examples`); none when the file has no
    such eps."""
    rows = [k for k, e in enumerate(arrays["eps"].tolist()) if e == float(eps)] if "eps" in arrays else []
    if not rows:
        return []
    k = rows[0]
    return [
        {
            "index": i,
            "label": int(arrays["y"][i]),
            "robust": bool(arrays["robust"][k][i]),
            "broken_by": str(arrays["broken_by"][k][i]) or None,
            "linf": float(arrays["linf"][k][i]),
            "l2": float(arrays["l2"][k][i]),
        }
        for i in range(len(arrays["y"]))
    ]


def write_cards(store: ResultsFile, c: EvalConfig, out: Path) -> list[Path]:
    """Write the card of every defense of the run; return their paths."""
    paths = []
    for d in c.defenses:
        path = card_path(out, c, d)
        atomic_write_text(path, json.dumps(card(store, c, d, out), indent=2) + "\n")
        paths.append(path)
    return paths
