"""The cross-check's statistical comparisons: LocalSearch against advertorch, and robust accuracy of each
library's attack on randomized models (through the EoT adapters) against the in-house attack.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from stochdef.adapters import expectation

from .. import libraries
from ..libraries import PGD, DeepFool, LocalSearch, unsupported
from ..stats import intervals_overlap, median_interval, two_proportion_tolerance, wilson_interval
from . import references
from .checks import CONFIDENCE, LIBRARIES, Z_RATES, Row, Setting, n_a, predict, reseed, stall_share, timed
from .models import Trained

RETESTS = 8  # fresh tests of a DeepFool point in the "left on the boundary" diagnosis

# What each library differentiates on a randomized model (DESIGN.md, §C3).
ESTIMATORS: dict[str, str] = {
    "inhouse": "exact E[grad L] over the draws, batched",
    "foolbox": "grad of L(mean logits): EoT module (to_foolbox)",
    "art": "exact E[grad L] (to_art's EoTClassifier overrides)",
    "torchattacks": "grad of L(mean logits): EoT module (to_torchattacks)",
    "torchattacks-eotpgd": "exact E[grad L], a Python loop of eot_iter draws (EOTPGD on the raw model)",
    "advertorch": "scores of the EoT module (mean logits over the draws)",
}


def localsearch_rows(trained: Trained, setting: Setting, x: torch.Tensor, y: torch.Tensor, seed: int) -> list[Row]:
    """Success rate and median queries of in-house LocalSearch against advertorch's, on correct examples."""
    model, spec = trained.model, setting.attack
    assert isinstance(spec, LocalSearch)
    keep = predict(model, x) == y
    x, y = x[keep], y[keep]
    row = Row(
        trained.case.name, setting.label, "advertorch", "localsearch", len(x), "success rate; median queries", "", None
    )
    cls, reason = references.import_advertorch()
    if cls is None:
        row.value, row.note = "skipped", reason
        return [row]
    reseed(seed)
    ours, t_ours = timed(lambda: libraries.run_inhouse(spec, model, x, y), x.device)
    reseed(seed)
    out, t_lib = timed(lambda: references.advertorch_local_search(spec, model, x, y), x.device)
    assert out is not None
    adv, queries = out
    theirs = predict(model, adv) != y
    our_queries = (ours.queries - 1).float()  # the in-house count includes its one query of the clean input
    s1, s2, n = int(ours.success.sum()), int(theirs.sum()), len(x)
    tol = two_proportion_tolerance(s1, n, s2, n, z=Z_RATES)
    gap = abs(s1 - s2) / n
    m1, m2 = (
        median_interval(our_queries.tolist(), confidence=CONFIDENCE),
        median_interval(queries.tolist(), confidence=CONFIDENCE),
    )
    row.passed = gap <= tol and intervals_overlap(m1, m2)
    row.value = (
        f"{s1}/{n} vs {s2}/{n} (|diff| {gap:.3f} <= {tol:.3f}); median queries "
        f"{float(our_queries.median()):.0f} vs {float(queries.float().median()):.0f}"
    )
    row.seconds = {"inhouse": t_ours, "advertorch": t_lib}
    row.note = f"select={spec.select}, rounds={spec.rounds}; advertorch as Foolbox 2.x (comply_with_foolbox=True)" + (
        ", its ranking flipped to Foolbox 2.4's" if spec.select == "highest" else ""
    )
    row.details = {
        "success_inhouse": s1,
        "success_advertorch": s2,
        "tolerance": tol,
        "median_queries_inhouse": float(our_queries.median()),
        "median_queries_advertorch": float(queries.float().median()),
        "median_interval_inhouse": m1,
        "median_interval_advertorch": m2,
    }
    return [row]


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, samples: int, seed: int) -> torch.Tensor:
    """Per example: is the ensemble prediction (logits averaged over ``samples`` draws, fixed seed) correct."""
    torch.manual_seed(seed)
    with torch.no_grad():
        logits = expectation(model, x, samples=samples)
    return logits.argmax(1) == y


def weaker_by_design(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, spec: DeepFool, *, seed: int
) -> dict[str, int]:
    """Diagnose DeepFool points of a library that a randomized model still classifies correctly.

    * ``stalled``: the per-step clip keeps less than ``1 / (1 + overshoot)`` of the EoT-averaged step
      (:func:`~stochdef.evaluations.crosscheck.checks.stall_share`): the iterates cannot cross.
    * ``on_boundary``: the point is a coin flip for the attack's own test: among :data:`RETESTS` fresh tests
      with ``samples`` draws each, some call it adversarial and some do not. A library that stops an example
      at its first adversarial test (torchattacks) leaves such points.
    """
    share, _ = stall_share(model, x_adv, y, spec.bounds, samples=spec.samples)
    stalled = (1 + spec.overshoot) * share < 1
    torch.manual_seed(seed)
    with torch.no_grad():
        hits = sum((expectation(model, x_adv, samples=spec.samples).argmax(1) != y).long() for _ in range(RETESTS))
    on_boundary = (hits > 0) & (hits < RETESTS)
    return {"stalled": int(stalled.sum()), "on_boundary": int((on_boundary & ~stalled).sum()),
            "explained": int((stalled | on_boundary).sum())}  # fmt: skip


def randomized_rows(
    trained: Trained, setting: Setting, x: torch.Tensor, y: torch.Tensor, *, seed: int, eval_samples: int
) -> list[Row]:
    """Robust accuracy (Wilson interval) of each library's attack vs in-house at equal ``samples``.

    Agreement is overlapping intervals. For DeepFool (a minimal-perturbation attack whose stopping rule
    differs between implementations) a library that is *weaker* also passes when every example it leaves
    correct but in-house does not is diagnosed by :func:`weaker_by_design`; an in-house attack weaker than a
    library is never excused.
    """
    model, n, spec = trained.model, len(x), setting.attack
    name = setting.label
    reseed(seed)
    ours, t_ours = timed(lambda: libraries.run_inhouse(spec, model, x, y).x_adv, x.device)
    ours_correct = robust_accuracy(model, ours, y, samples=eval_samples, seed=seed + 1)
    base = int(ours_correct.sum())
    base_ci = wilson_interval(base, n, confidence=CONFIDENCE)
    candidates: list[str] = ["advertorch"] if isinstance(spec, LocalSearch) else list(LIBRARIES)
    if isinstance(spec, PGD):
        candidates.append("torchattacks-eotpgd")
    rows = []
    for lib in candidates:
        row = Row(trained.case.name, name, lib, "randomized", n, "robust accuracy (99% Wilson)", "", None)
        reason = None if lib in ("advertorch", "torchattacks-eotpgd") else unsupported(lib, spec)
        if reason is not None:
            rows.append(n_a(row, reason))
            continue
        reseed(seed)
        if lib == "advertorch":
            if references.import_advertorch()[0] is None:
                row.value, row.note = "skipped", references.import_advertorch()[1]
                rows.append(row)
                continue
            assert isinstance(spec, LocalSearch)
            out, t_lib = timed(lambda: references.advertorch_local_search(spec, model, x, y), x.device)
            assert out is not None
            theirs = out[0]
        elif lib == "torchattacks-eotpgd":
            assert isinstance(spec, PGD)
            theirs, t_lib = timed(lambda: references.eotpgd(spec, model, x, y), x.device)
        else:
            theirs, t_lib = timed(
                partial(libraries.run, lib, spec, model, x, y, num_classes=trained.data.num_classes), x.device
            )
        correct = robust_accuracy(model, theirs, y, samples=eval_samples, seed=seed + 1)
        count = int(correct.sum())
        ci = wilson_interval(count, n, confidence=CONFIDENCE)
        row.passed = intervals_overlap(base_ci, ci)
        row.value = f"{base / n:.3f} [{base_ci[0]:.3f}, {base_ci[1]:.3f}] vs {count / n:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        row.seconds = {"inhouse": t_ours, lib: t_lib}
        row.note = f"samples={spec.samples}; {lib}: {ESTIMATORS.get(lib, '')}"
        row.details = {"inhouse": base, "library": count, "interval_inhouse": base_ci, "interval_library": ci}
        weaker = (correct & ~ours_correct).nonzero().squeeze(1)
        if not row.passed and isinstance(spec, DeepFool) and count > base and weaker.numel():
            why = weaker_by_design(model, theirs[weaker], y[weaker], spec, seed=seed + 2)
            row.passed = why["explained"] == weaker.numel()
            row.note += (
                f"; weaker by design on {why['explained']}/{weaker.numel()} examples it leaves correct: "
                f"{why['stalled']} stalled at the box edge, {why['on_boundary']} left on the boundary "
                "(stopped at a first noisy success)"
            )
            row.details.update(why, weaker=int(weaker.numel()))
        rows.append(row)
    return rows
