""":class:`ReferenceChecksCell` (per defense, when the run's libraries include ``autoattack``): Croce & Hein's own
checks (:mod:`..compute.reference_checks`) on the model as their attacks receive it, recorded as kind
``reference-checks``; the report and the model card show them beside stochdef's indicators
(:mod:`..outputs.reference_section`), each disagreement explained.

They run only with the library ``autoattack`` (the run that installs and runs the reference), so a default run
records and spends nothing more. Without the package, or with inputs outside [0, 1] (the reference clips to the
unit box), the cell records why it did not run.

>>> from stochdef.evaluations.evaluate.config import EvalConfig
>>> [cell.defense for cell in reference_cells(EvalConfig(defenses=("a", "b"), libraries=("autoattack",)))]
['a', 'b']
>>> reference_cells(EvalConfig(defenses=("a",), libraries=("inhouse",)))
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ... import libraries
from ...libraries import AutoAttackRand
from ...libraries.reference import NAME, RAND_EOT
from ..compute.reference_checks import run_checks
from ..compute.run import Run
from ..config import EvalConfig
from ..store.results import Kind, cell_key
from .base import Cell, Weight, draws


@dataclass(frozen=True)
class ReferenceChecksCell(Cell):
    kind: ClassVar[str] = "reference-checks"
    record_kind: ClassVar[Kind] = Kind(("defense",))
    defense: str
    eps: float

    @classmethod
    def of(cls, c: EvalConfig, defense: str) -> ReferenceChecksCell:
        norm = {"norm": c.norm} if c.norm != "linf" else {}
        eps = max(c.eps)
        return cls(cell_key(kind=cls.kind, defense=defense, eps=eps, eot=RAND_EOT, **norm, **c.common()), defense, eps)

    def defenses(self) -> tuple[str, ...]:
        return (self.defense,)

    def cost(self, run: Run, weight: Weight) -> float:  # 5 + 1 + 1 passes, then APGD-DLR's 2 x eot gradients
        return weight(self.defense) * run.config.n * (8 + 4 * draws(run, self.defense, RAND_EOT))

    def compute(self, run: Run) -> dict[str, Any]:
        c, fields = run.config, {"defense": self.defense, "eps": self.eps}
        attack = c.attack(AutoAttackRand.name, self.eps, 1)
        reason = attack if isinstance(attack, str) else libraries.unsupported(NAME, attack)
        if reason is not None or isinstance(attack, str):
            return {**fields, "skipped": f"Croce & Hein's checks did not run: {reason}"}
        import pyautoattack

        model = libraries.wrap(NAME, attack, run.model(self.defense), run.x, num_classes=run.num_classes)
        eot = draws(run, self.defense, RAND_EOT)
        found = run_checks(model, run.x, run.y, eps=self.eps, norm=c.norm, eot=eot, seed=c.seed)
        return {**fields, "reference": f"pyautoattack {pyautoattack.__version__}", "checks": found}


def reference_cells(c: EvalConfig) -> list[ReferenceChecksCell]:
    """A :class:`ReferenceChecksCell` per defense when the run's libraries include ``autoattack``, else none."""
    return [ReferenceChecksCell.of(c, d) for d in c.defenses] if NAME in c.libraries else []
