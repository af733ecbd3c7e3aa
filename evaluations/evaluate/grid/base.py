"""What every cell shares: the :class:`Cell` base type, the clean cell (the others read its record) and the
helpers that read it (:func:`is_random`, :func:`draws`, :func:`taken`, ...).

A cell's key holds every setting that changes its numbers (:func:`..store.results.cell_key`); its seed derives
from the run's seed and the key, so a cell computes the same whatever ran before it. Each type registers its
record kind with the store (:func:`..store.results.register_kind`), so no other module spells a kind.
The other kinds: :mod:`.cells` (attack and block cells, and the grid), :mod:`.defense_cells` (indicator,
certificate and transfer cells).

>>> from stochdef.evaluations.evaluate.config import EvalConfig
>>> CleanCell.of(EvalConfig(defenses=("vanilla-mlp",)), "vanilla-mlp").defenses()
('vanilla-mlp',)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from stochdef.adapters import DrawKind, draws_taken
from stochdef.adapters import is_random as draws_differ
from stochdef.adapters.draws import PROBE_DRAWS, probe

from ... import libraries
from ...libraries import Attack
from ..compute.judge import Judge
from ..compute.run import Run
from ..config import EvalConfig
from ..store import examples
from ..store.blocks import parse_block_key
from ..store.results import JUDGED, Kind, ResultsFile, cell_key, register_kind

Weight = Callable[[str], float]  # a defense's seconds per forward pass of one image (schedule.forward_seconds)


@dataclass(frozen=True)
class Cell:
    """One unit of an evaluation, computed once and recorded under ``key``."""

    kind: ClassVar[str]
    record_kind: ClassVar[Kind]
    folds: ClassVar[bool] = False  # folds its examples into the worst-case file (the fixed part of its time)
    key: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_kind(cls.kind, cls.record_kind)

    def defenses(self) -> tuple[str, ...]:
        """The defenses whose models the cell uses (its provenance records their weights)."""
        raise NotImplementedError

    def cost(self, run: Run, weight: Weight) -> float:
        """Expected seconds of its model passes: passes x images x ``weight`` (a defense's seconds per forward pass
        of one image; with a weight of 1, the count of images through the forward). The schedule adds a fixed part
        per cell (:class:`.schedule.Weights`)."""
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
    block = parse_block_key(key)
    position = run.order.get(key if block is None else block[0])  # a block comes where its cell does
    examples.update(path, key, label, eps, run.x, run.y, x_adv, correct, all_eps=run.config.eps, position=position)


@dataclass(frozen=True)
class CleanCell(Cell):
    kind: ClassVar[str] = "clean"
    record_kind: ClassVar[Kind] = Kind(("random", *JUDGED))
    folds: ClassVar[bool] = True
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
