"""The cells of an evaluation, one small type per kind: its key, its expected cost and what its record holds.

* :class:`CleanCell` (per defense, :mod:`.base`): accuracy of the defense's own inference rule, one draw and an
  n-draw ensemble; whether the defense is random at all (the other cells read it: :func:`is_random`);
* :class:`AttackCell` (defense x attack x eps x samples x library): robust accuracy under that library's attack,
  ``samples=1`` being the naive single-draw attack and ``samples>1`` the EoT attack (skipped, with the reason,
  for a deterministic defense, where EoT equals naive, and where the library has no counterpart);
* :class:`BlockCell`: rows ``start:end`` of an attack cell, seeded on their own (``--block``, :mod:`..store.blocks`);
* :class:`CertificateCell`, :class:`IndicatorCell`, :class:`TransferCell` (:mod:`.defense_cells`): the
  certified examples, the gradient-obfuscation checks and the transfer matrix.

A cell's key holds every setting that changes its numbers (:func:`..store.results.cell_key`); its seed derives
from the run's seed and the key, so a cell computes the same whatever ran before it. Each type registers its
record kind with the store (:func:`..store.results.register_kind`), so no other module spells a kind.
:func:`grid` lists a run's cells in order (clean cells first: the others read their records).

>>> from stochdef.evaluations.evaluate.config import EvalConfig
>>> cells = grid(EvalConfig(defenses=("vanilla-mlp",), attacks=("fgsm",), eps=(0.1,), libraries=("inhouse",)))
>>> [type(cell).__name__ for cell in cells]
['CleanCell', 'AttackCell', 'AttackCell', 'IndicatorCell']
"""

from __future__ import annotations

import contextlib
import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from stochdef.defenses.surrogate import surrogate_gradient

from ... import libraries
from ...libraries import Attack
from ..compute.accounting import count_forward
from ..compute.judge import Judge
from ..compute.run import Run, seed_everything
from ..compute.validity import merged, screen
from ..config import EvalConfig
from ..store.blocks import block_bits, block_key, block_rows, combine, full_rows
from ..store.results import Kind, cell_key, cell_seed
from .base import Cell, CleanCell, Weight, draw_kind_of, draws, estimator, is_random, taken, track
from .defense_cells import CertificateCell, IndicatorCell, TransferCell


@dataclass(frozen=True)
class AttackCell(Cell):
    kind: ClassVar[str] = "attack"
    record_kind: ClassVar[Kind] = Kind(judged=True)
    folds: ClassVar[bool] = True
    defense: str
    library: str
    attack: Attack
    surrogate: str = ""  # a surrogate gradient the defense declares (adaptive.py); "": its own gradient

    @classmethod
    def of(cls, c: EvalConfig, defense: str, library: str, attack: Attack, surrogate: str = "") -> AttackCell:
        adaptive = {"surrogate": surrogate} if surrogate else {}
        key = cell_key(
            kind=cls.kind, defense=defense, library=library, attack=attack.name, eps=attack.eps,
            samples=attack.samples, steps=c.steps, **attack.key_fields(), **adaptive, **c.common(),
        )  # fmt: skip
        return cls(key, defense, library, attack, surrogate)

    @property
    def label(self) -> str:
        via = f"/{self.surrogate} gradient" if self.surrogate else ""
        return f"{self.attack.name}/{self.library}/samples {self.attack.samples}{via}"

    def gradient(self, model: torch.nn.Module) -> AbstractContextManager[Any]:
        """The context the attack runs in: the declared surrogate gradient switched on, if the cell has one."""
        return surrogate_gradient(model, self.surrogate) if self.surrogate else contextlib.nullcontext()

    def defenses(self) -> tuple[str, ...]:
        return (self.defense,)

    def threat(self) -> dict[str, Any]:
        """The threat model its examples are checked against (:mod:`..compute.validity`)."""
        return {"eps": self.attack.eps, "norm": self.attack.norm, "bounds": self.attack.bounds}

    def header(self, run: Run) -> dict[str, Any]:
        """The cell's settings, and ``skipped`` (why) when it does not run."""
        a, steps = self.attack, run.config.steps
        fields: dict[str, Any] = {"defense": self.defense, "library": self.library, "attack": a.name, "eps": a.eps}
        fields.update(samples=a.samples, steps=steps, step=2.5 * a.radius / steps, bounds=a.bounds)
        fields.update(a.record_fields(), **({"surrogate": self.surrogate} if self.surrogate else {}))
        fields.update(taken(run, self.defense, a.samples, draws(run, self.defense, run.config.judge_samples)))
        reason = self.skipped(run)
        return fields if reason is None else {**fields, "skipped": reason}

    def skipped(self, run: Run) -> str | None:
        """Why the cell does not run (its record's ``skipped``), or None when it runs."""
        reason = libraries.unsupported(self.library, self.attack)
        if reason is not None:
            return f"{self.library} has no counterpart: {reason}"
        if self.attack.samples > 1 and not is_random(run, self.defense):
            return "deterministic defense: the EoT attack equals the naive one"
        return None

    def cost(self, run: Run, weight: Weight) -> float:
        return self.rows_cost(run, weight, run.config.n)

    def rows_cost(self, run: Run, weight: Weight, rows: int) -> float:
        if self.skipped(run) is not None:
            return 0.0
        judge = draws(run, self.defense, run.config.judge_samples)
        return weight(self.defense) * rows * (self.attack.passes(run.num_classes) + 1 + judge)

    def blocks(self, run: Run) -> list[BlockCell] | None:
        """The cell's blocks when it runs in blocks (``--block``); ``None`` when it runs whole or is skipped."""
        if not run.config.block or self.skipped(run) is not None:
            return None
        return self._blocks(run)

    def _blocks(self, run: Run) -> list[BlockCell]:
        return [BlockCell(block_key(self.key, a, b), self, a, b) for a, b in block_rows(len(run.x), run.config.block)]

    def combined(
        self, run: Run, partials: list[dict[str, Any]], header: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The cell's record fields from its blocks' (in row order); ``header``: :meth:`header`, if already built."""
        fields = {**(self.header(run) if header is None else header)}
        fields["estimator"] = estimator(run, self.defense, self.library, self.attack)
        return {**fields, **combine(partials), **merged(partials)}

    def compute(self, run: Run) -> dict[str, Any]:
        fields = self.header(run)
        if "skipped" in fields:
            return fields
        if run.config.block:  # the same blocks, in order, as ranks sharing the cell compute
            return self.combined(run, [block.part(run) for block in self._blocks(run)], fields)
        model = run.model(self.defense)
        with self.gradient(model):
            x_adv = libraries.run(self.library, self.attack, model, run.x, run.y, num_classes=run.num_classes)
        x_adv, valid = screen(run.x, x_adv, **self.threat(), label=self.label, defense=self.defense)
        delta = (x_adv - run.x).flatten(1)
        judge = Judge(model, draws(run, self.defense, run.config.judge_samples), draws=draw_kind_of(run, self.defense))
        judged = judge(x_adv, run.y, not_broken=~valid.valid)
        fields.update(estimator=estimator(run, self.defense, self.library, self.attack))
        fields.update(linf=float(delta.abs().max()), l2=float(delta.norm(dim=1).max()), **judged, **valid.fields())
        track(run, self.key, self.label, self.defense, self.attack.radius, x_adv, judged["correct"])
        return fields


@dataclass(frozen=True)
class BlockCell(Cell):
    kind: ClassVar[str] = "block"
    record_kind: ClassVar[Kind] = Kind(("cell",), transient=True)
    folds: ClassVar[bool] = True
    cell: AttackCell
    start: int
    end: int

    def defenses(self) -> tuple[str, ...]:
        return self.cell.defenses()

    def cost(self, run: Run, weight: Weight) -> float:
        return self.cell.rows_cost(run, weight, self.end - self.start)

    def part(self, run: Run) -> dict[str, Any]:
        """Rows ``start:end`` of the attack cell, seeded from the block's key alone (see :mod:`..store.blocks`)."""
        seed_everything(cell_seed(run.config.seed, self.key))
        cell, (a, b) = self.cell, (self.start, self.end)
        model = run.model(cell.defense)
        x, y = run.x[a:b], run.y[a:b]
        with count_forward(run.models) as passes:
            with cell.gradient(model):
                x_adv = libraries.run(cell.library, cell.attack, model, x, y, num_classes=run.num_classes)
            x_adv, valid = screen(x, x_adv, **cell.threat(), label=cell.label, defense=cell.defense)
            delta = (x_adv - x).flatten(1)
            judge = Judge(
                model, draws(run, cell.defense, run.config.judge_samples), draws=draw_kind_of(run, cell.defense)
            )
            judged = judge(x_adv, y, not_broken=~valid.valid)
        everywhere = block_bits(judged["correct"], a, b, len(run.x))
        track(run, self.key, cell.label, cell.defense, cell.attack.radius, full_rows(run.x, x_adv, a, b), everywhere)
        linf, l2 = float(delta.abs().max()), float(delta.norm(dim=1).max())
        return {"linf": linf, "l2": l2, **judged, "forward_passes": passes.total, **valid.fields()}

    def compute(self, run: Run) -> dict[str, Any]:
        return {"cell": self.cell.key, "defense": self.cell.defense, **self.part(run)}


def attack_cells(c: EvalConfig, defense: str, eps: float, samples: int) -> list[AttackCell]:
    """The attack cells of ``defense`` at ``eps`` with ``samples`` draws, in grid order (every attack of the run
    that exists in its threat model, every library)."""
    found = []
    for name in c.attacks:
        attack = c.attack(name, eps, samples)
        if isinstance(attack, str):  # no such attack in this threat model (FGSM under L2)
            continue
        found += [AttackCell.of(c, defense, library, attack) for library in c.libraries]
    return found


def adaptive_cells(c: EvalConfig, defense: str, eps: float | None = None) -> list[AttackCell]:
    """The attack cells through each surrogate gradient ``defense`` declares (``c.surrogates``), at ``eps`` or at
    every eps: every gradient-based attack of the run, every library and number of draws (DESIGN.md, §C8)."""
    found = []
    for d, surrogate in c.surrogates:
        if d != defense:
            continue
        for name in c.attacks:
            for e in c.eps if eps is None else (eps,):
                for samples in c.samples:
                    attack = c.attack(name, e, samples)
                    if not isinstance(attack, str) and attack.gradients:
                        found += [AttackCell.of(c, d, library, attack, surrogate) for library in c.libraries]
    return found


BUDGET_FACTORS = (2, 4, 8)  # --converge: the strongest attack at these times the run's steps (and restarts)


def budget_cell(c: EvalConfig, record: dict[str, Any], factor: int) -> tuple[EvalConfig, AttackCell] | None:
    """The config and the cell of attack cell ``record`` at ``factor`` times the run's steps (and restarts, where
    the attack has them): a cell of ``--converge`` (:mod:`..converge`); None when the attack has no steps."""
    kind = libraries.get(record["attack"])
    if not kind.takes_steps:
        return None
    restarts = c.restarts * factor if kind.takes_restarts else c.restarts
    bigger = dataclasses.replace(c, steps=c.steps * factor, restarts=restarts)
    attack = bigger.attack(record["attack"], record["eps"], record["samples"])
    if isinstance(attack, str):
        return None
    return bigger, AttackCell.of(bigger, record["defense"], record["library"], attack, record.get("surrogate", ""))


def linf_only(c: EvalConfig) -> bool:
    """Whether the run skips its indicators and transfer matrix because they are L-inf checks and the run is not."""
    return c.norm != "linf" and (c.indicators or c.transfer)


def grid(c: EvalConfig) -> list[Cell]:
    """Every cell of the run of ``c``, in order (the clean cells first)."""
    cells: list[Cell] = [CleanCell.of(c, d) for d in c.defenses]
    for d in c.defenses:
        for name in c.attacks:
            for eps in c.eps:
                for samples in c.samples:
                    attack = c.attack(name, eps, samples)
                    if not isinstance(attack, str):
                        cells += [AttackCell.of(c, d, library, attack) for library in c.libraries]
        cells += adaptive_cells(c, d)
    cells += [CertificateCell.of(c, d, e) for d in c.certificates for e in c.eps]
    from .reference_cell import reference_cells  # Croce & Hein's checks, with the library autoattack

    cells += reference_cells(c)
    if linf_only(c):
        return cells
    if c.indicators:
        cells += [IndicatorCell.of(c, d) for d in c.defenses]
    if c.transfer and len(c.defenses) > 1:
        cells += [TransferCell.of(c, a, b) for a in c.defenses for b in c.defenses]
    return cells


__all__ = [
    "AttackCell",
    "BlockCell",
    "Cell",
    "CertificateCell",
    "CleanCell",
    "adaptive_cells",
    "budget_cell",
    "IndicatorCell",
    "TransferCell",
    "attack_cells",
    "draw_kind_of",
    "draws",
    "estimator",
    "grid",
    "is_random",
    "linf_only",
    "taken",
    "track",
    "Weight",
]
