"""What every attack shares: the threat model, checked at construction, and how a library runs it.

An attack is one frozen dataclass (a subclass of :class:`Attack`), as in Foolbox 3 (an attack object knows
its own settings) and torchattacks (one attack per file): its class variables say what it is (its name, the
norms it supports, whether it takes a radius, steps, restarts or queries, whether it needs gradients, how
each library runs it or why that library has none); its fields are its settings, keyword-only, checked in
``__post_init__`` with messages that name the argument. The base holds the threat model every attack
shares (``eps``, ``norm``, ``samples`` EoT draws per gradient, ``bounds``, ``targeted``); a subclass adds
only its own settings.

A :class:`Runner` is how one library runs one attack: ``fn(attack, wrapped_model, x, y)``, unless one of
its limits holds for the attack object (then the limit's reason says why that library cannot run it).

>>> from stochdef.evaluations.libraries import PGD
>>> attack = PGD(eps=0.1, steps=4, samples=8)
>>> attack.step_size, attack.key_fields(), attack.passes(10)
(0.0625, {}, 96.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from stochdef.defenses.validation import check_bounds, check_choice, check_int, check_range

Tensor = torch.Tensor
LIBRARIES: tuple[str, ...] = ("inhouse", "foolbox", "art", "torchattacks", "autoattack")
#: the libraries a run uses unless told (Croce & Hein's reference AutoAttack, ``autoattack``, is an extra and costs
#: 10 times torchattacks' port of AutoAttack-rand: ``--library`` adds it)
DEFAULT_LIBRARIES: tuple[str, ...] = ("inhouse", "foolbox", "art", "torchattacks")
NORMS: tuple[str, ...] = ("linf", "l2")
ESTIMATORS: dict[str, str] = {
    "inhouse": "exact mean of per-draw loss gradients (eot_gradient)",
    "art": "exact mean of per-draw loss gradients (EoTClassifier.loss_gradient)",
    "foolbox": "gradient of the mean logits (EoT module)",
    "torchattacks": "gradient of the mean logits (EoT module)",
    "autoattack": "gradient of the mean logits (EoT module)",
}
GRADIENT_PASSES = 3.0  # a forward and a backward pass cost about three forwards

Limit = tuple[Callable[[Any], bool], str]


@dataclass(frozen=True)
class Runner:
    """How one library runs one attack: ``fn(attack, wrapped_model, x, y)``, unless a limit's test holds for
    the attack object (its reason then says why the library cannot run it)."""

    fn: Callable[[Any, Any, Tensor, Tensor], Any]
    limits: tuple[Limit, ...] = ()


# ---- limits and reasons several attacks share ---------------------------------------------------------------

UNIT_BOX: Limit = (lambda a: a.bounds != (0.0, 1.0), "torchattacks assumes inputs in [0, 1]")
NOT_INHOUSE = "not written in-house: stochdef runs the libraries' implementation"
NOT_AUTOATTACK = "stochdef runs only AutoAttack-rand, APGD-CE and APGD-DLR from Croce & Hein's package"


def is_l2(attack: Attack) -> bool:
    return attack.norm == "l2"


def is_linf(attack: Attack) -> bool:
    return attack.norm == "linf"


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")


# ---- the base class -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Attack:
    """One attack's configuration: the threat model every attack shares; subclasses add their own settings.

    ``eps`` is the radius in ``norm`` (required by the attacks with a fixed radius, ``None`` for the others);
    ``samples`` EoT draws per gradient (1 = the naive attack); inputs in ``bounds``; ``targeted``: ``y``
    holds the targets. Every argument is keyword-only.
    """

    name: ClassVar[str]
    rank: ClassVar[int]  # the position in the registry's order (the order of ``stochdef evaluate --help``)
    norms: ClassVar[tuple[str, ...]] = NORMS
    why_norms: ClassVar[str] = ""  # why the attack supports only ``norms`` (the reason of a missing grid cell)
    takes_eps: ClassVar[bool] = True
    takes_steps: ClassVar[bool] = False
    takes_restarts: ClassVar[bool] = False
    takes_queries: ClassVar[bool] = False
    targets: ClassVar[bool] = True  # has a targeted mode
    gradients: ClassVar[bool] = True
    in_evaluate: ClassVar[bool] = False
    default: ClassVar[bool] = False
    art_output: ClassVar[str] = "probs"  # what to_art's classifier returns for this attack: "probs" or "logits"
    runners: ClassVar[Mapping[str, Runner | str]]

    eps: float | None = None
    norm: str = "linf"
    samples: int = 1
    bounds: tuple[float, float] = (0.0, 1.0)
    targeted: bool = False

    def __post_init__(self) -> None:
        check_choice("norm", self.norm, NORMS)
        if self.norm not in self.norms:
            allowed = " or ".join(repr(n) for n in self.norms)
            why = f": {self.why_norms}" if self.why_norms else ""
            raise ValueError(f"norm must be {allowed} for {self.name}{why}; got {self.norm!r}")
        if self.takes_eps:
            if self.eps is None:
                raise ValueError(f"eps must be given for {self.name}")
            check_range("eps", self.eps, low=0.0)
        elif self.eps is not None:
            raise ValueError(f"eps must be None for {self.name} (it has no fixed radius), got {self.eps!r}")
        check_int("samples", self.samples)
        object.__setattr__(self, "bounds", check_bounds("bounds", self.bounds))
        check_bool("targeted", self.targeted)
        if self.targeted and not self.targets:
            raise ValueError(f"targeted must be False for {self.name} (an untargeted attack)")

    # ---- what the evaluation asks of an attack -------------------------------------------------------------

    @classmethod
    def for_grid(
        cls, *, eps: float, samples: int, norm: str, bounds: tuple[float, float], steps: int, restarts: int,
        queries: int,
    ) -> Attack | str:  # fmt: skip
        """The attack of one ``stochdef evaluate`` cell, given only the options the class takes; a string says
        why the threat model has no such cell (an attack that does not support ``norm``)."""
        if norm not in cls.norms:
            return cls.why_norms or f"{cls.name} supports {', '.join(cls.norms)} only"
        settings: dict[str, Any] = {"eps": eps, "samples": samples, "norm": norm, "bounds": bounds}
        if cls.takes_steps:
            settings["steps"] = steps
        if cls.takes_restarts:
            settings["restarts"] = restarts
        if cls.takes_queries:
            settings["queries"] = queries
        return cls(**settings)

    def settings(self) -> dict[str, Any]:
        """Every field and its value."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def key_fields(self) -> dict[str, Any]:
        """The settings that enter a cell key when not their defaults (so the L-inf keys stay as they were)."""
        extra: dict[str, Any] = {}
        if self.norm != "linf":
            extra["norm"] = self.norm
        restarts = getattr(self, "restarts", 1)
        if restarts != 1:
            extra["restarts"] = restarts
        if self.takes_queries:
            extra["queries"] = getattr(self, "queries")  # noqa: B009  (the subclass's field)
        return extra

    def record_fields(self) -> dict[str, Any]:
        """The settings a record adds, only where they apply: the norm of L2 runs, the restarts of an attack
        that restarts, the queries of a score-based one."""
        out: dict[str, Any] = {}
        if self.norm != "linf":
            out["norm"] = self.norm
        restarts = getattr(self, "restarts", 1)
        if restarts != 1 or self.takes_restarts:
            out["restarts"] = restarts
        if self.takes_queries:
            out["queries"] = getattr(self, "queries")  # noqa: B009
        return out

    def gradient_steps(self, num_classes: int) -> float:
        """Gradients per image per EoT draw of one run (one per step; a subclass says otherwise)."""
        return float(getattr(self, "steps", 1))

    def passes(self, num_classes: int) -> float:
        """Expected forward-pass equivalents per image of one run: ``3`` per gradient (a forward and a
        backward) per EoT draw, times the restarts."""
        return GRADIENT_PASSES * self.gradient_steps(num_classes) * self.samples * getattr(self, "restarts", 1)

    def estimator(self, library: str) -> str:
        """What the attack differentiates (or scores) in ``library``: DESIGN.md, §C3."""
        check_choice("library", library, LIBRARIES)
        return "one draw per gradient (naive)" if self.samples == 1 else ESTIMATORS[library]

    def unsupported(self, library: str) -> str | None:
        """Why ``library`` cannot run this attack (it has no counterpart), or ``None`` when it can."""
        entry = self.runners[check_choice("library", library, LIBRARIES)]
        if isinstance(entry, str):
            return entry
        return next((reason for applies, reason in entry.limits if applies(self)), None)

    @property
    def radius(self) -> float:
        """``eps`` as a number (0 for the attacks without a fixed radius)."""
        return 0.0 if self.eps is None else float(self.eps)


@dataclass(frozen=True, kw_only=True)
class Iterative(Attack):
    """An attack of ``steps`` gradient steps of size ``step`` (default ``2.5 * eps / steps``)."""

    takes_steps: ClassVar[bool] = True

    steps: int = 10
    step: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps)
        if self.step is not None:
            check_range("step", self.step, low=0.0)

    @property
    def step_size(self) -> float:
        return self.step if self.step is not None else 2.5 * self.radius / self.steps


@dataclass(frozen=True, kw_only=True)
class Restarting(Iterative):
    """An iterative attack with ``restarts`` random restarts, kept per example where one succeeds."""

    takes_restarts: ClassVar[bool] = True

    restarts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("restarts", self.restarts)
