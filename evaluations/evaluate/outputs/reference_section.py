"""Croce & Hein's checks (:class:`..grid.reference_cell.ReferenceChecksCell`) beside stochdef's indicators: per
defense a row per reference check, the stochdef check that asks the same question (if any), whether the two
agree, and in words why they differ where they do (what each measures).

The pairs: ``check_randomized`` with the clean cell's ``random`` (and the indicator ``randomized``, stochdef's
re-implementation of the same rule); ``check_range_output`` with the output kind stochdef's judge chose;
``check_zero_gradients`` with the indicators ``zero_gradients`` and ``unavailable_gradients``;
``check_square_sr`` (on the recorded cells, with Square in the run) with the worst case, which counts Square's
examples; ``check_dynamic`` and ``check_n_classes`` have no stochdef counterpart.

>>> explain("check_range_output", True, False)[:40]
'the reference fires on outputs that are '
"""

from __future__ import annotations

from typing import Any

from ..compute.reference_checks import square_check
from ..config import EvalConfig
from ..grid.cells import CleanCell, IndicatorCell
from ..grid.reference_cell import ReferenceChecksCell
from ..store.results import ResultsFile
from .worst_case import cells_at, summary_of

NO_COUNTERPART = {
    "check_dynamic": "none: stochdef does not trace the forward pass for autograd calls (a defense that optimises "
    "at test time is not among its checks)",
    "check_n_classes": "none: stochdef's attacks run on any number of classes (torchattacks' APGD-DLR, like the "
    "reference's, needs at least 3)",
}
WHY = {  # (check, reference fired, stochdef fired) -> why the two differ
    ("check_randomized", True, False): "the reference fires when the correct count or the L2-normalised outputs "
    "differ across 5 passes on every example of the run; stochdef's clean cell compares 3 passes on the first 32 "
    "examples: randomness that shows only on the later examples, or rarely, is seen by the reference alone",
    ("check_randomized", False, True): "stochdef counts any difference between passes as random; the reference "
    "needs the L2-normalised outputs to move by more than 1e-4 (or a prediction to change): the randomness is too "
    "small for it, so to the reference the model is deterministic while stochdef runs its EoT attacks",
    ("check_range_output", True, False): "the reference fires on outputs that are a probability distribution (in "
    "[0, 1], summing to 1); stochdef's judge decides by the last layer (MWD or a sigmoid give scores) and reads "
    "these outputs as logits: the attacks' losses then take a softmax of probabilities, which flattens gradients",
    ("check_range_output", False, True): "stochdef reads the outputs as scores in [0, 1] (an MWD or sigmoid last "
    "layer) and judges with them; the reference fires only when they also sum to 1, which such scores do not: "
    "its CE and DLR losses treat the scores as logits",
    ("check_zero_gradients", True, False): "the reference differentiates the DLR loss at a random start in the "
    "eps-ball (APGD-DLR's first step) on the points classified right; stochdef's zero_gradients the EoT "
    "cross-entropy at the clean inputs on every point: a DLR loss is flat where the top-3 outputs are flat, the "
    "cross-entropy is not, so only the reference's loss lost its gradient here",
    ("check_zero_gradients", False, True): "stochdef differentiates the EoT cross-entropy at the clean inputs (or "
    "found no gradient at all: unavailable_gradients); the reference the DLR loss at a random start in the eps-ball "
    "on the points classified right: a saturated softmax zeroes the cross-entropy's gradient but not DLR's, and the "
    "points stochdef saw may be among those the reference skips",
    ("check_square_sr", True, False): "Square (black-box) broke examples no gradient attack broke: the reference "
    "reads it as a sign of masked gradients; stochdef's worst case already counts those examples (the headline "
    "is not raised by them), and its closest indicator compares the white-box attack with transfer and noise, "
    "not with Square",
}


#: under the table of a model the reference found randomized: why its robust accuracy can read higher than the port's
CLEAN_CHECK = (
    "On a randomized model, the reference's `autoattack-rand` leaves unattacked every example one clean draw "
    "misclassifies (its initial check); the ensemble that judges here classifies many of those right, so they count "
    "robust. torchattacks' port has no such check. `python -m stochdef.evaluations.crosscheck.autoattack_ports` "
    "measures the reference with that check answered for every example."
)


def explain(check: str, reference: bool, stochdef: bool | None) -> str:
    """Why ``check`` and its stochdef counterpart differ (empty when they agree or there is no counterpart)."""
    if stochdef is None or reference == stochdef:
        return ""
    return WHY.get((check, reference, stochdef), "")


def _indicators(store: ResultsFile, c: EvalConfig, defense: str) -> dict[str, dict[str, Any]]:
    record = IndicatorCell.of(c, defense).record(store)
    return {} if record is None else {i["name"]: i for i in record["indicators"]}


def counterparts(store: ResultsFile, c: EvalConfig, defense: str) -> dict[str, tuple[str, bool | None]]:
    """Per reference check, stochdef's counterpart in words and whether it fired (``None``: none, or not run)."""
    clean = CleanCell.of(c, defense).record(store) or {}
    found = _indicators(store, c, defense)
    kind = (clean.get("calibration") or {}).get("output")
    random = clean.get("random")
    indicator = found.get("randomized")
    also = f"; indicator randomized {'fired' if indicator['fired'] else 'quiet'}" if indicator else ""
    pairs: dict[str, tuple[str, bool | None]] = {
        "check_randomized": (f"clean cell: {'random' if random else 'deterministic'}{also}", random),
        "check_range_output": (f"judge reads the outputs as {kind}", None if kind is None else kind == "scores"),
    }
    zero, unavailable = found.get("zero_gradients"), found.get("unavailable_gradients")
    if zero is None and unavailable is None:
        pairs["check_zero_gradients"] = ("indicators zero_gradients, unavailable_gradients: not run", None)
    else:
        hit = any(i is not None and i["fired"] for i in (zero, unavailable))
        pairs["check_zero_gradients"] = (f"indicators zero_gradients / unavailable_gradients: "
                                         f"{'fired' if hit else 'quiet'}", hit)  # fmt: skip
    pairs.update({name: (text, None) for name, text in NO_COUNTERPART.items()})
    pairs["check_square_sr"] = ("worst case counts Square's examples (no indicator compares Square)", False)
    return pairs


def square_outcome(store: ResultsFile, c: EvalConfig, defense: str) -> dict[str, Any] | None:
    """``check_square_sr`` on the recorded cells at the card's eps (None without Square or its cells)."""
    records = cells_at(store, c, defense, max(c.eps))
    square = [r["correct"] for r in records if r["attack"] == "square"]
    others = [r["correct"] for r in records if r["attack"] != "square"]
    clean = CleanCell.of(c, defense).record(store)
    if not square or not others or clean is None or "correct" not in clean:
        return None
    n = len(clean["correct"])
    acc = {"clean": summary_of([clean["correct"]])[0] / n, "gradient attacks": summary_of(others)[0] / n,
           "square": summary_of([*others, *square])[0] / n}  # fmt: skip
    return {**square_check(acc), "accuracies": acc}


def rows(store: ResultsFile, c: EvalConfig, defense: str) -> list[dict[str, Any]] | str | None:
    """Each reference check beside its counterpart, or why the checks did not run (None: not part of this run)."""
    record = ReferenceChecksCell.of(c, defense).record(store)
    if record is None:
        return None
    if "skipped" in record:
        return str(record["skipped"])
    checks = list(record["checks"])
    if (square := square_outcome(store, c, defense)) is not None:
        checks.append(square)
    pairs = counterparts(store, c, defense)
    found = []
    for check in checks:
        text, theirs = pairs.get(check["name"], ("none", None))
        agree = None if theirs is None else check["fired"] == theirs
        found.append({**check, "stochdef": text, "agree": agree, "why": explain(check["name"], check["fired"], theirs)})
    return found


def section(store: ResultsFile, c: EvalConfig) -> list[str]:
    """The report's section: per defense, the reference's checks beside stochdef's (empty when none ran)."""
    found = {d: r for d in c.defenses if (r := rows(store, c, d)) is not None}
    if not found:
        return []
    out = ["## Croce & Hein's checks beside stochdef's", "",
           "AutoAttack's own checks (`pyautoattack.checks`) on each model as its attacks receive it; where stochdef "
           "asks the same question, its answer beside, and why the two differ where they do.", ""]  # fmt: skip
    for d, r in found.items():
        out += [f"### {d}", ""]
        if isinstance(r, str):
            out += [r + ".", ""]
            continue
        out += ["| reference check | fired | stochdef | agree | why they differ |", "| --- | --- | --- | --- | --- |"]
        for k in r:
            agree = "—" if k["agree"] is None else ("yes" if k["agree"] else "**no**")
            out.append(f"| {k['name']} | {'**yes**' if k['fired'] else 'no'} | {k['stochdef']} | {agree} | "
                       f"{k['why'] or '—'} |")  # fmt: skip
        out += ["", CLEAN_CHECK, ""] if any(k["name"] == "check_randomized" and k["fired"] for k in r) else [""]
    return out


def card_fields(store: ResultsFile, c: EvalConfig, defense: str) -> dict[str, Any]:
    """The model card's ``reference_checks``: the rows, why they did not run, or None (not part of the run)."""
    r = rows(store, c, defense)
    return {"reference_checks": {"not_run": r} if isinstance(r, str) else r}
