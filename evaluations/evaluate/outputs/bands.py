"""What the headline's worst case is read beside: the certified accuracy below it (:class:`CertificateCell`, where
a certificate exists) and the gradient-obfuscation indicators that fired on its defense (:class:`IndicatorCell`),
either a warning that the worst case may still overstate the defense.

>>> from stochdef.evaluations.evaluate.store.results import ResultsFile
>>> import tempfile, pathlib
>>> store = ResultsFile(pathlib.Path(tempfile.mkdtemp()) / "r.jsonl")
>>> certified(store, EvalConfig(), "mwd-256", 0.3) is None, fired(store, EvalConfig(), "mwd-256")
(True, [])
"""

from __future__ import annotations

from typing import Any

from ..config import EvalConfig
from ..grid.cells import CertificateCell, IndicatorCell
from ..store.results import ResultsFile

MARK = "†"  # beside a worst case whose defense fired an indicator


def certified(store: ResultsFile, c: EvalConfig, defense: str, eps: float) -> dict[str, Any] | None:
    """The certificate record of ``defense`` at ``eps`` (None: not computed, or no certificate exists)."""
    record = CertificateCell.of(c, defense, eps).record(store)
    return None if record is None or "skipped" in record else record


def fired(store: ResultsFile, c: EvalConfig, defense: str) -> list[str]:
    """The names of the indicators that fired on ``defense`` (empty when none did or none ran)."""
    record = IndicatorCell.of(c, defense).record(store)
    return [] if record is None else [i["name"] for i in record["indicators"] if i["fired"]]


def marks(store: ResultsFile, c: EvalConfig, defense: str, eps: float) -> str:
    """What follows a headline number: `` · certified 0.29`` where a certificate exists, and :data:`MARK` when the
    defense fired an indicator."""
    cert = certified(store, c, defense, eps)
    text = f" · certified {cert['acc_certified']:.2f}" if cert else ""
    return text + (f" {MARK}" if fired(store, c, defense) else "")


def notes(store: ResultsFile, c: EvalConfig) -> list[str]:
    """The lines under the headline table: which indicators fired per marked defense, and which certificates."""
    out = []
    for d in c.defenses:
        names = fired(store, c, d)
        if names:
            record = IndicatorCell.of(c, d).record(store)
            total = len(record["indicators"]) if record else len(names)
            out.append(f"- {MARK} {d}: {len(names)} of {total} indicators fired ({', '.join(names)}; at eps "
                       f"{c.eps_mid}): the worst case may still overstate its robustness.")  # fmt: skip
    methods = sorted({r["method"] for d in c.defenses for e in c.eps if (r := certified(store, c, d, e))})
    if methods:
        out.append(
            "- certified: the share of examples a certificate proves right on the whole ball ("
            + "; ".join(methods)
            + "), a lower bound on the robust accuracy: the true value lies between it and the worst case."
        )
    return [*out, ""] if out else []


def card_fields(
    store: ResultsFile, c: EvalConfig, defense: str, eps: float, worst: dict[str, Any] | None
) -> dict[str, Any]:
    """The model card's fields on the band at ``eps``: the certified accuracy and its certificate (None where none
    exists), the adaptive attacks that joined the worst case, and the adversarial examples that did not count."""
    cert = certified(store, c, defense, eps)
    invalid = [r for r in store if r.get("kind") == "attack" and r.get("defense") == defense and r.get("invalid")]
    return {
        "certified_accuracy": None if cert is None else cert["acc_certified"],
        "certified_accuracy_ci": None if cert is None else cert["acc_certified_ci"],
        "certificate": None if cert is None else cert["method"],
        "adaptive_attacks": None if worst is None else worst["adaptive"],
        "surrogate_gradients": [s for d, s in c.surrogates if d == defense],
        "invalid_examples": sum(int(r["invalid"]) for r in invalid),
    }
