"""The cells of one defense (or a pair) beside its attack cells: what the report adds to the robust accuracies.

* :class:`IndicatorCell` (per defense): the gradient-obfuscation checks (:mod:`..compute.diagnose`);
* :class:`CertificateCell` (defense x eps, for the defenses with a certificate, ``config.certificates``): the
  examples a certificate proves right on the whole ball (:mod:`..compute.certify`);
* :class:`TransferCell` (defense pairs): accuracy of B on adversarial examples made on A (Adv-BNN eq. 14).

>>> from stochdef.evaluations.evaluate.config import EvalConfig
>>> TransferCell.of(EvalConfig(defenses=("vanilla-mlp", "adv-bnn")), "adv-bnn", "vanilla-mlp").defenses()
('adv-bnn', 'vanilla-mlp')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...libraries import PGD, Attack
from ..compute.certify import DESCRIPTIONS, certify_examples, method
from ..compute.diagnose import Checks, diagnose, indicator_passes, surrogate_for
from ..compute.judge import accuracy_fields, bits
from ..compute.run import Run, seed_everything
from ..compute.transfer import source_examples, transfer_accuracy
from ..config import EvalConfig
from ..store.results import Kind, cell_key, cell_seed
from .base import Cell, Weight, draws, taken


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
        return PGD(eps=c.eps_mid, steps=c.steps, samples=self.source_draws(run), bounds=c.bounds)

    def source_draws(self, run: Run) -> int:
        """The EoT draws of the source's attack: the run's largest count, 1 on a deterministic source."""
        return draws(run, self.source, max(run.config.samples))

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
            run.transfer_sources[self.source] = source_examples(
                run.model(self.source), run.x, run.y, eps=c.eps_mid, steps=c.steps, bounds=c.bounds,
                samples=self.source_draws(run),
            )  # fmt: skip

    def compute(self, run: Run) -> dict[str, Any]:
        self.before(run)
        judge = draws(run, self.target, run.config.judge_samples)
        acc = transfer_accuracy(run.model(self.target), run.transfer_sources[self.source], run.y, judge=judge)
        source = taken(run, self.source, self.source_draws(run))["draws"]
        target = taken(run, self.target, judge)["draws"]
        return {"source": self.source, "target": self.target, "eps": run.config.eps_mid, "acc_ensemble": acc,
                "source_draws": source, "judge_draws": target}  # fmt: skip
