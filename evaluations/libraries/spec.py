"""One attack's configuration, as :mod:`stochdef.evaluations.libraries` runs it in every library.

The attacks: FGSM (Goodfellow et al. 2015) and its minimal-eps grid search (Foolbox 2.x), BIM (Kurakin et
al. 2017), PGD (Madry et al. 2018; ``pgd-rs``: with a random start and restarts), DeepFool (Moosavi-Dezfooli et
al. 2016), LocalSearch (Narodytska & Kasiviswanathan 2016), APGD with the cross-entropy or the DLR loss (Croce &
Hein 2020), Square (Andriushchenko et al. 2020: score-based, needs no gradient) and AutoAttack's ``rand``
version (APGD-CE + APGD-DLR, 20 EoT draws each; torchattacks' ``AutoAttack(version="rand")``).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from stochdef.defenses.validation import check_bounds, check_choice, check_int, check_range

ATTACKS: tuple[str, ...] = (
    "fgsm", "fgsm-minimal", "bim", "pgd", "deepfool", "localsearch",
    "pgd-rs", "apgd-ce", "apgd-dlr", "square", "autoattack-rand",
)  # fmt: skip
# what ``stochdef evaluate`` can run (``DEFAULT_EVAL_ATTACKS`` by default)
EVAL_ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "pgd-rs", "apgd-ce", "apgd-dlr", "square", "autoattack-rand")
DEFAULT_EVAL_ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "apgd-ce")
NORMS: tuple[str, ...] = ("linf", "l2")
# the attacks with a fixed radius ``eps``
EPS_ATTACKS: tuple[str, ...] = ("fgsm", "bim", "pgd", "pgd-rs", "apgd-ce", "apgd-dlr", "square", "autoattack-rand")
RESTART_ATTACKS: tuple[str, ...] = ("pgd-rs", "apgd-ce", "apgd-dlr", "square")  # the attacks with ``restarts``


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")


@dataclass(frozen=True)
class AttackSpec:
    """One attack's configuration; only ``attack`` and ``eps`` may be positional.

    ``eps`` (required for fgsm, bim, pgd) is the radius in ``norm``; ``steps`` steps of ``step`` (default
    ``2.5 * eps / steps``) for bim and pgd, or DeepFool's iterations; ``samples`` EoT draws per gradient
    (1 = the naive attack); ``overshoot`` and ``candidates`` for DeepFool; ``epsilons`` grid points up to
    ``max_eps`` (and ``refine``) for fgsm-minimal; ``rounds`` and ``select`` for LocalSearch; ``restarts``
    (random restarts, kept per example where one succeeds) for pgd-rs, APGD and Square; ``queries`` for
    Square. pgd-rs starts from a uniform random point of the ball, pgd never does.

    >>> AttackSpec("pgd-rs", 0.1, restarts=3).random_start
    True
    >>> AttackSpec("apgd-ce", 0.5, norm="l2").norm
    'l2'
    """

    attack: str
    eps: float | None = None
    _: KW_ONLY
    norm: str = "linf"
    steps: int = 10
    step: float | None = None
    targeted: bool = False
    samples: int = 1
    bounds: tuple[float, float] = (0.0, 1.0)
    overshoot: float = 0.02
    candidates: int = 10
    epsilons: int = 1000
    max_eps: float = 1.0
    refine: bool = False
    rounds: int = 150
    select: str = "highest"
    restarts: int = 1
    queries: int = 1000

    def __post_init__(self) -> None:
        check_choice("attack", self.attack, ATTACKS)
        check_choice("norm", self.norm, NORMS)
        if self.eps is not None:
            check_range("eps", self.eps, low=0.0)
        elif self.attack in EPS_ATTACKS:
            raise ValueError(f"eps must be given for {self.attack}")
        if self.norm != "linf" and self.attack in ("fgsm", "fgsm-minimal"):
            raise ValueError(f"norm must be 'linf' for {self.attack} (the sign step), got {self.norm!r}")
        check_int("steps", self.steps)
        if self.step is not None:
            check_range("step", self.step, low=0.0)
        _check_bool("targeted", self.targeted)
        if self.targeted and self.attack == "deepfool":
            raise ValueError("targeted must be False for deepfool (an untargeted attack)")
        check_int("samples", self.samples)
        object.__setattr__(self, "bounds", check_bounds("bounds", self.bounds))
        check_range("overshoot", self.overshoot, low=0.0)
        check_int("candidates", self.candidates, minimum=2)
        check_int("epsilons", self.epsilons)
        check_range("max_eps", self.max_eps, low=0.0, low_open=True)
        _check_bool("refine", self.refine)
        check_int("rounds", self.rounds)
        check_choice("select", self.select, ("highest", "lowest"))
        check_int("restarts", self.restarts)
        if self.restarts > 1 and self.attack not in RESTART_ATTACKS:
            raise ValueError(f"restarts must be 1 for {self.attack} (only {', '.join(RESTART_ATTACKS)} restart)")
        check_int("queries", self.queries)
        if self.targeted and self.attack in ("apgd-ce", "apgd-dlr", "autoattack-rand"):
            raise ValueError(f"targeted must be False for {self.attack} (an untargeted attack)")

    @property
    def random_start(self) -> bool:
        """Whether the attack starts from a random point of the ball (pgd-rs; APGD and Square always do)."""
        return self.attack == "pgd-rs"

    @property
    def radius(self) -> float:
        """``eps`` as a number (0 for the attacks without a fixed radius)."""
        return 0.0 if self.eps is None else float(self.eps)

    @property
    def step_size(self) -> float:
        return self.step if self.step is not None else 2.5 * self.radius / self.steps
