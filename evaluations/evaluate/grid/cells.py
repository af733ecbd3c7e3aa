"""The cells of an evaluation, one small type per kind: its key, its expected cost and what its record holds.

* :class:`CleanCell` (per defense): accuracy of the defense's own inference rule, one draw and an n-draw
  ensemble; whether the defense is random at all (the other cells read it: :func:`is_random`);
* :class:`AttackCell` (defense x attack x eps x samples x library): robust accuracy under that library's attack,
  ``samples=1`` being the naive single-draw attack and ``samples>1`` the EoT attack (skipped, with the reason,
  for a deterministic defense, where EoT equals naive, and where the library has no counterpart);
* :class:`BlockCell`: rows ``start:end`` of an attack cell, seeded on their own (``--block``, :mod:`..store.blocks`);
* :class:`CertificateCell` (defense x eps, for the defenses with a certificate, ``config.certificates``): the
  examples a certificate proves right on the whole ball (:mod:`..compute.certify`);
* :class:`IndicatorCell` (per defense): the gradient-obfuscation checks (:mod:`..compute.diagnose`);
* :class:`TransferCell` (defense pairs): accuracy of B on adversarial examples made on A (Adv-BNN eq. 14).

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
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from stochdef.adapters import DrawKind, draws_taken
from stochdef.adapters import is_random as draws_differ
from stochdef.adapters.draws import PROBE_DRAWS, probe
from stochdef.defenses.surrogate import surrogate_gradient

from ... import libraries
from ...libraries import PGD, Attack
from ..compute.accounting import count_forward
from ..compute.certify import DESCRIPTIONS, certify_examples, method
from ..compute.diagnose import Checks, diagnose, indicator_passes, surrogate_for
from ..compute.judge import Judge, accuracy_fields, bits
from ..compute.run import Run, seed_everything
from ..compute.transfer import source_examples, transfer_accuracy
from ..compute.validity import merged, screen
from ..config import EvalConfig
from ..store import examples
from ..store.blocks import block_bits, block_key, block_rows, combine, full_rows
from ..store.results import JUDGED, Kind, ResultsFile, cell_key, cell_seed, register_kind

Weight = Callable[[str], float]  # a defense's cost per forward pass of one image (schedule.forward_seconds)


@dataclass(frozen=True)
class Cell:
    """One unit of an evaluation, computed once and recorded under ``key``."""

    kind: ClassVar[str]
    record_kind: ClassVar[Kind]
    key: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_kind(cls.kind, cls.record_kind)

    def defenses(self) -> tuple[str, ...]:
        """The defenses whose models the cell uses (its provenance records their weights)."""
        raise NotImplementedError

    def cost(self, run: Run, weight: Weight) -> float:
        """Expected cost: forward passes x images x the defense's ``weight`` (arbitrary units)."""
        raise NotImplementedError

    def before(self, run: Run) -> None:
        """Work the cell reuses from other cells, done before its seed, timer and pass count start."""

    def compute(self, run: Run) -> dict[str, Any]:
        """The cell's record fields (the engine adds forward passes, seconds, versions and provenance)."""
        raise NotImplementedError

    def record(self, store: ResultsFile) -> dict[str, Any] | None:
        """The cell's record in ``store``, if computed."""
        return store.get(self.key)


def is_random(run: Run, defense: str) -> bool:
    """Whether ``defense``'s clean cell found it random (True before that cell is recorded)."""
    record = CleanCell.of(run.config, defense).record(run.store)
    return bool(record["random"]) if record else True


def draws(run: Run, defense: str, samples: int) -> int:
    """``samples``, or 1 for a deterministic defense (every draw would be the same)."""
    return samples if is_random(run, defense) else 1


def draw_kind_of(run: Run, defense: str) -> DrawKind | None:
    """How ``defense`` draws (``"per-row"``, ``"per-call"``, ``"deterministic"``: its clean cell's ``draws``);
    ``None`` before that cell is recorded."""
    record = CleanCell.of(run.config, defense).record(run.store)
    return None if record is None else record.get("draws")


def taken(run: Run, defense: str, samples: int, judge: int | None = None) -> dict[str, str]:
    """How the cell's ``samples`` draws of ``defense`` (and its judge's, unless ``judge`` is ``None``) were taken,
    in words (:func:`stochdef.adapters.draws_taken`): the record's ``draws`` and ``judge_draws``."""
    kind = draw_kind_of(run, defense)
    fields = {"draws": draws_taken(kind, samples)}
    if judge is not None:
        fields["judge_draws"] = draws_taken(kind, judge)
    return fields


def estimator(run: Run, defense: str, library: str, attack: Attack) -> str:
    """What ``attack`` averaged in ``library`` on ``defense``: the library's estimator and how its draws were
    taken (one call per draw for a per-call model, one replicated call for a per-row one)."""
    text = libraries.estimator(library, attack)
    return text if attack.samples == 1 else f"{text}; {taken(run, defense, attack.samples)['draws']}"


def track(run: Run, key: str, label: str, defense: str, eps: float | None, x_adv: torch.Tensor, correct: str) -> None:
    """Fold a cell at ``eps`` (``None``: the clean cell, at every eps) into the defense's worst-case examples
    (:mod:`..store.examples`, keyed by eps)."""
    path = examples.worst_case_path(run.store.path.parent, run.config.defenses, defense)
    examples.update(path, key, label, eps, run.x, run.y, x_adv, correct, all_eps=run.config.eps)


@dataclass(frozen=True)
class CleanCell(Cell):
    kind: ClassVar[str] = "clean"
    record_kind: ClassVar[Kind] = Kind(("random", *JUDGED))
    defense: str

    @classmethod
    def of(cls, c: EvalConfig, defense: str) -> CleanCell:
        return cls(cell_key(kind=cls.kind, defense=defense, **c.common()), defense)

    def defenses(self) -> tuple[str, ...]:
        return (self.defense,)

    def cost(self, run: Run, weight: Weight) -> float:
        return weight(self.defense) * run.config.n * (1 + run.config.judge_samples)

    def compute(self, run: Run) -> dict[str, Any]:
        model = run.model(self.defense)
        random = draws_differ(model, run.x[:32], passes=3)
        # how it draws: a probe that leaves no trace (the judge's draws are those it made without it)
        kind: DrawKind = probe(model, run.x, samples=PROBE_DRAWS, max_batch=PROBE_DRAWS) if random else "deterministic"
        judge = run.config.judge_samples if random else 1
        judged = Judge(model, judge, draws=kind)(run.x, run.y)
        track(run, self.key, self.kind, self.defense, None, run.x, judged["correct"])
        return {"defense": self.defense, "random": random, "draws": kind, "judge_draws": draws_taken(kind, judge),
                **judged}  # fmt: skip


@dataclass(frozen=True)
class AttackCell(Cell):
    kind: ClassVar[str] = "attack"
    record_kind: ClassVar[Kind] = Kind(judged=True)
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
        reason = libraries.unsupported(self.library, a)
        if reason is not None:
            fields["skipped"] = f"{self.library} has no counterpart: {reason}"
        elif a.samples > 1 and not is_random(run, self.defense):
            fields["skipped"] = "deterministic defense: the EoT attack equals the naive one"
        return fields

    def cost(self, run: Run, weight: Weight) -> float:
        return self.rows_cost(run, weight, run.config.n)

    def rows_cost(self, run: Run, weight: Weight, rows: int) -> float:
        if "skipped" in self.header(run):
            return 0.0
        judge = draws(run, self.defense, run.config.judge_samples)
        return weight(self.defense) * rows * (self.attack.passes(run.num_classes) + 1 + judge)

    def blocks(self, run: Run) -> list[BlockCell] | None:
        """The cell's blocks when it runs in blocks (``--block``); ``None`` when it runs whole or is skipped."""
        if not run.config.block or "skipped" in self.header(run):
            return None
        return [BlockCell(block_key(self.key, a, b), self, a, b) for a, b in block_rows(len(run.x), run.config.block)]

    def combined(self, run: Run, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """The cell's record fields from its blocks' (in row order)."""
        fields = {**self.header(run), "estimator": estimator(run, self.defense, self.library, self.attack)}
        return {**fields, **combine(partials), **merged(partials)}

    def compute(self, run: Run) -> dict[str, Any]:
        fields = self.header(run)
        if "skipped" in fields:
            return fields
        blocks = self.blocks(run)
        if blocks is not None:  # the same blocks, in order, as ranks sharing the cell compute
            return self.combined(run, [block.part(run) for block in blocks])
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


@dataclass(frozen=True)
class IndicatorCell(Cell):
    kind: ClassVar[str] = "indicators"
    record_kind: ClassVar[Kind] = Kind(("indicators",))
    defense: str
    surrogate: bool = True  # a zoo surrogate for the transfer checks (none on a user's own data set)

    @classmethod
    def of(cls, c: EvalConfig, defense: str) -> IndicatorCell:
        key = cell_key(
            kind=cls.kind, defense=defense, eps=c.eps_mid, eps_all=sorted(c.eps), samples=max(c.samples),
            steps=c.steps, **c.common(),
        )  # fmt: skip
        return cls(key, defense, surrogate=c.dataset != "custom")

    def defenses(self) -> tuple[str, ...]:  # the transfer indicator attacks from a zoo surrogate, if there is one
        return (self.defense, surrogate_for(self.defense)) if self.surrogate else (self.defense,)

    def checks(self, run: Run) -> Checks:
        c = run.config
        samples, judge = draws(run, self.defense, max(c.samples)), draws(run, self.defense, c.judge_samples)
        return Checks(eps=c.eps_mid, eps_all=c.eps, steps=c.steps, bounds=c.bounds, samples=samples, judge=judge,
                      seed=c.seed)  # fmt: skip

    def cost(self, run: Run, weight: Weight) -> float:
        checks = self.checks(run)
        passes = indicator_passes(checks.steps, checks.samples, checks.judge, len(checks.eps_all))
        return weight(self.defense) * run.config.n * passes

    def compute(self, run: Run) -> dict[str, Any]:
        model = run.model(self.defense)
        surrogate = run.model(surrogate_for(self.defense)) if self.surrogate else None
        checks = self.checks(run)
        found = diagnose(model, surrogate, run.x, run.y, checks, defense=self.defense)
        return {"defense": self.defense, **taken(run, self.defense, checks.samples, checks.judge), "indicators": found}


@dataclass(frozen=True)
class CertificateCell(Cell):
    """Per defense and eps: the examples a certificate proves right on the whole ball (:mod:`..compute.certify`),
    the lower side of the band whose upper side is the empirical worst case."""

    kind: ClassVar[str] = "certificate"
    record_kind: ClassVar[Kind] = Kind(("defense", "eps"))
    defense: str
    eps: float

    @classmethod
    def of(cls, c: EvalConfig, defense: str, eps: float) -> CertificateCell:
        norm = {"norm": c.norm} if c.norm != "linf" else {}
        return cls(cell_key(kind=cls.kind, defense=defense, eps=eps, **norm, **c.common()), defense, eps)

    def defenses(self) -> tuple[str, ...]:
        return (self.defense,)

    def cost(self, run: Run, weight: Weight) -> float:  # interval bounds: about 4 passes (the Renyi draws: more)
        return weight(self.defense) * run.config.n * 4

    def compute(self, run: Run) -> dict[str, Any]:
        model, fields = run.model(self.defense), {"defense": self.defense, "eps": self.eps}
        kind = method(model)
        if kind is None:
            return {**fields, "skipped": "no certificate (no MWD layer, no noise on the input)"}
        c = run.config
        found = certify_examples(model, run.x, run.y, eps=self.eps, norm=c.norm, bounds=c.bounds)
        return {**fields, "method": DESCRIPTIONS[kind], **accuracy_fields("certified", found), "certified": bits(found)}


@dataclass(frozen=True)
class TransferCell(Cell):
    kind: ClassVar[str] = "transfer"
    record_kind: ClassVar[Kind] = Kind(("acc_ensemble",))
    source: str
    target: str

    @classmethod
    def of(cls, c: EvalConfig, source: str, target: str) -> TransferCell:
        key = cell_key(
            kind=cls.kind, source=source, target=target, eps=c.eps_mid, samples=max(c.samples), steps=c.steps,
            **c.common(),
        )  # fmt: skip
        return cls(key, source, target)

    def defenses(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.source, self.target)))

    def source_attack(self, run: Run) -> Attack:
        """The in-house EoT-PGD that makes the source's examples (its cost; :func:`..compute.transfer.source_examples`
        runs it)."""
        c = run.config
        samples = draws(run, self.source, max(c.samples))
        return PGD(eps=c.eps_mid, steps=c.steps, samples=samples, bounds=c.bounds)

    def source_cost(self, run: Run, weight: Weight) -> float:
        """The cost of the source's examples, shared by every transfer cell of that source."""
        return weight(self.source) * run.config.n * self.source_attack(run).passes(run.num_classes)

    def cost(self, run: Run, weight: Weight) -> float:
        return weight(self.target) * run.config.n * draws(run, self.target, run.config.judge_samples)

    def before(self, run: Run) -> None:
        """Make (or reuse) the source's examples, seeded by the source alone: the cell's own draws then start from
        its own seed whether or not an earlier cell of this process had made them."""
        if self.source not in run.transfer_sources:
            c = run.config
            seed_everything(cell_seed(c.seed, f"transfer-source|{self.source}"))
            attack = self.source_attack(run)
            run.transfer_sources[self.source] = source_examples(
                run.model(self.source), run.x, run.y, eps=c.eps_mid, steps=c.steps, bounds=c.bounds,
                samples=attack.samples,
            )  # fmt: skip

    def compute(self, run: Run) -> dict[str, Any]:
        self.before(run)
        judge = draws(run, self.target, run.config.judge_samples)
        acc = transfer_accuracy(run.model(self.target), run.transfer_sources[self.source], run.y, judge=judge)
        source = taken(run, self.source, self.source_attack(run).samples)["draws"]
        target = taken(run, self.target, judge)["draws"]
        return {"source": self.source, "target": self.target, "eps": run.config.eps_mid, "acc_ensemble": acc,
                "source_draws": source, "judge_draws": target}  # fmt: skip


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
]
