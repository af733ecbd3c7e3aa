"""What an evaluation runs: :class:`EvalConfig`, and :data:`SETTINGS`, the one description of its options.

Every way into a run builds its config here: the CLI (``stochdef evaluate``, zoo defenses or ``--model``),
:func:`~.api.evaluate_model` and the ranks of a ``torchrun`` sweep call :func:`build_config` with the same
keywords, and :func:`own_model_config` for a caller's own model. :data:`SETTINGS` names each keyword once, with
its CLI option and whether :func:`~.api.evaluate_model` takes it; the CLI builds its options from it and
``tests/evaluations/evaluate/test_settings.py`` fails when the CLI or the API gains an option the other lacks
(or one the description does not explain).

>>> config = build_config(attacks=("pgd",), eps=(0.1,), samples="auto")
>>> config.samples, config.samples_cap
((1,), 32)
>>> config.attack("fgsm", 0.1, 1).name, EvalConfig(norm="l2").attack("fgsm", 1.0, 1)
('fgsm', 'FGSM is L-inf only (the sign step)')
>>> c = build_config(attacks=("Square", "APGD-CE"), libraries=("ART",), norm="L2", eps=(0.5,))
>>> c.attacks, c.libraries, c.norm
(('square', 'apgd-ce'), ('art',), 'l2')
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stochdef.defenses.validation import check_bounds, check_choice, check_int

from .. import libraries
from ..libraries import Attack
from .checks import check_config

# One shipped MNIST-5k checkpoint per paper, and the undefended MLP (the papers' baselines -- dropconnect,
# rse, bnn, madry, adv-mlp, relu-256, ... -- are a --defense away; MWD is the shipped 256-wide net).
DEFAULT_DEFENSES: tuple[str, ...] = ("vanilla-mlp", "sdr-learnable", "adv-bnn", "sap-mlp", "noise-gaussian", "mwd-256")
DEFAULT_SAMPLES_CAP = 32
PSEUDO = "[psd]"


def base_name(defense: str) -> str:
    """The zoo name of ``defense`` (``"mwd-256[psd]"`` is ``mwd-256`` attacked through its pseudogradient)."""
    return defense.removesuffix(PSEUDO)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate; every field that changes a number is part of each cell's key (:mod:`.grid.cells`)."""

    dataset: str = "mnist5k"
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    attacks: tuple[str, ...] = libraries.DEFAULT_ATTACKS
    libraries: tuple[str, ...] = libraries.DEFAULT_LIBRARIES
    eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    samples: tuple[int, ...] = (1, 8)
    n: int = 100
    steps: int = 10
    judge_samples: int = 16
    seed: int = 0
    device: str = "cpu"
    indicators: bool = True
    transfer: bool = True
    # threat model and the stronger attacks' budgets (see :meth:`attack`)
    norm: str = "linf"
    bounds: tuple[float, float] = (0.0, 1.0)
    restarts: int = 1
    queries: int = 1000
    # ``--samples auto``: double the draws up to this cap (0: run ``samples`` as given)
    samples_cap: int = 0
    # a state dict that replaces the zoo's checkpoint of the (single) defense; for a caller's own models, the files
    # loaded into them, one per model, comma-separated (recorded and keyed beside their fingerprint)
    checkpoint: str | None = None
    # identity of a user's model and data (fingerprints), part of every key; "" for zoo runs
    source: str = ""
    # attack cells in blocks of this many examples, each seeded on its own (0: the whole batch; store/blocks.py)
    block: int = 0
    # --converge: double the strongest attack's budget until the worst case settles ("off", "auto", "all")
    converge: str = "off"
    # (defense, surrogate gradient) pairs the defenses declare, attacked adaptively (adaptive.py; derived)
    surrogates: tuple[tuple[str, str], ...] = ()
    # the defenses a certificate exists for (adaptive.py; derived): their certificate cells
    certificates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_config(self)  # every field, before anything runs (evaluate/checks.py)
        check_choice("norm", self.norm, libraries.NORMS)
        object.__setattr__(self, "bounds", check_bounds("bounds", tuple(self.bounds)))
        check_int("restarts", self.restarts)
        check_int("queries", self.queries)
        if self.samples_cap:
            check_int("samples_cap", self.samples_cap)
        check_int("block", self.block, minimum=0)
        check_choice("converge", self.converge, ("off", "auto", "all"))
        if self.checkpoint is not None and len(self.checkpoints()) != len(self.defenses):
            raise ValueError(
                f"checkpoint {self.checkpoint!r} needs one file per "
                + (f"model, got {len(self.checkpoints())} for {len(self.defenses)}" if self.source
                   else f"defense: exactly one defense, got {list(self.defenses)}")
            )  # fmt: skip

    def checkpoints(self) -> tuple[str, ...]:
        """The checkpoint files, in the order of the defenses: one for the one zoo defense, or one per own model
        (comma-separated in ``checkpoint``)."""
        if self.checkpoint is None:
            return ()
        return tuple(self.checkpoint.split(",")) if self.source else (self.checkpoint,)

    def checkpoint_of(self, defense: str) -> str | None:
        """The checkpoint file loaded into ``defense`` (``None``: the zoo's, or the caller's model as it came)."""
        files = self.checkpoints()
        return files[self.defenses.index(defense)] if files and defense in self.defenses else None

    @property
    def eps_mid(self) -> float:
        """The eps the per-defense checks and the transfer matrix use (the middle of the sweep)."""
        ordered = sorted(self.eps)
        return ordered[len(ordered) // 2]

    def common(self) -> dict[str, Any]:
        """The key fields every cell shares."""
        return {"dataset": self.dataset, "n": self.n, "seed": self.seed, "judge": self.judge_samples, **self.identity()}

    def identity(self) -> dict[str, Any]:
        """The key fields of a run that is not a plain zoo run (empty for one, so old keys stay valid)."""
        extra: dict[str, Any] = {}
        if self.bounds != (0.0, 1.0):
            extra["bounds"] = list(self.bounds)
        if self.source:
            extra["fingerprint"] = self.source
        if self.checkpoint is not None:
            extra["checkpoint"] = ",".join(file_digest(f) for f in self.checkpoints())
        if self.block:
            extra["block"] = self.block
        return extra

    def attack(self, name: str, eps: float, samples: int) -> Attack | str:
        """The attack of one cell of the grid, or why this threat model has no such cell (FGSM under L2)."""
        return libraries.get(name).for_grid(
            eps=eps, samples=samples, norm=self.norm, bounds=self.bounds, steps=self.steps, restarts=self.restarts,
            queries=self.queries,
        )  # fmt: skip


def file_digest(path: str) -> str:
    """The first 16 hex digits of the SHA-256 of a file (cached per path, size and modification time)."""
    stat = os.stat(path)
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


# ---- the one description of the options ----------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One option of an evaluation: the keyword of :func:`build_config` (and of ``evaluate_model`` when ``api``),
    its CLI option strings (none: not on the CLI), its help, and ``why`` it is on one side only."""

    name: str
    flags: tuple[str, ...]
    help: str
    api: bool = True
    why: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("defenses", ("--defense",), "comma-separated zoo names (`stochdef train` lists them all; a name without "
            "a shipped checkpoint is trained first, and the run says how long that took when the zoo recorded it); "
            "append [psd] to an MWD net (mwd-256[psd]) to attack it through its pseudogradient", api=False,
            why="evaluate_model takes the model itself"),
    Setting("attacks", ("--attack",), "comma-separated attacks (`stochdef evaluate --help` lists each with the "
            "libraries that run it and its cost)"),
    Setting("libraries", ("--library",), "comma-separated libraries"),
    Setting("eps", ("--eps",), "comma-separated radii in --norm"),
    Setting("samples", ("--samples",), "comma-separated EoT draws per gradient: 1 is the naive attack, the largest "
            "the EoT one; 'auto' doubles them until the worst case settles (up to --samples-cap)"),
    Setting("samples_cap", ("--samples-cap",), "the most draws --samples auto tries"),
    Setting("dataset", ("--dataset",), "embedded data set (with your own data: the zoo data set it comes from, for "
            "the indicators' surrogates)"),
    Setting("n", ("--examples", "--n"), "test images attacked (--n is an alias; torchrun refuses --n, so spell it "
            "--examples there)", api=False, why="evaluate_model attacks every row of x"),
    Setting("steps", ("--steps",), "steps of the iterative attacks (PGD, APGD)"),
    Setting("block", ("--block",), "attack each cell's examples in blocks of this many, each seeded on its own, so "
            "that torchrun's ranks can share a long cell (0: the whole batch at once; the numbers depend on it)"),
    Setting("converge", ("--converge",), "double the strongest attack's steps (and restarts) per defense until the "
            "worst case settles, up to 8 times: 'all' defenses, 'auto' (those whose attack-failure indicators fired) "
            "or 'off'; each doubling is one more cell of that attack (budgets.json, the report and the card say where "
            "it converged)"),
    Setting("judge_samples", ("--judge-samples",), "draws in the random defenses' ensemble prediction that judges "
            "every cell (cost grows with it)"),
    Setting("seed", ("--seed",), "run seed (each cell's seed derives from it)"),
    Setting("device", ("--device",), "torch device (default: cuda when a GPU is available, else cpu)", api=False,
            why="evaluate_model runs where x and the model are"),
    Setting("indicators", ("--no-indicators",), "run the gradient-obfuscation checks (--no-indicators skips "
            "them: about 30% of a default run)"),
    Setting("transfer", ("--no-transfer",), "run the transfer matrix between the defenses (--no-transfer skips "
            "it: about 5% of a default run)", api=False, why="evaluate_model evaluates one model"),
    Setting("norm", ("--norm",), "threat model"),
    Setting("bounds", ("--bounds",), "input range LOW,HIGH"),
    Setting("restarts", ("--restarts",), "random restarts of the attacks that take them (pgd-rs, APGD, Square)"),
    Setting("queries", ("--queries",), "query budget per example of the score-based attacks (Square)"),
    Setting("checkpoint", ("--checkpoint",), "a state dict for --model or the one --defense (always wins over the "
            "zoo's); with several --model entries, one file per entry, comma-separated, in their order"),
    Setting("out", ("--out",), "folder for results and report"),
    Setting("recompute_stale", ("--recompute-stale",), "recompute the cells of --out computed with other weights, "
            "library versions, device or CPU capability (their old records move to results.stale.jsonl); without "
            "it such a run is refused"),
    Setting("model", ("--model",), "your own model: an nn.Module, or a zero-argument callable returning one, "
            "importable from the current directory (replaces --defense); several, comma-separated, are evaluated "
            "side by side in one report (a defense beside its undefended baseline)"),
    Setting("data", ("--data",), "test data: a .pt or .npz holding x (inputs in --bounds) and y (int64 labels); "
            "default: the --dataset test split", api=False, why="evaluate_model takes the tensors x and y"),
)  # fmt: skip
#: evaluate_model's keywords that are no option of the CLI, and why.
API_ONLY: dict[str, str] = {
    "x": "the CLI reads x and y from --data",
    "y": "the CLI reads x and y from --data",
    "name": "the CLI names a model by its MODULE:ATTR",
    "progress": "the CLI always shows its progress bars",
}
FIELDS = frozenset(f.name for f in dataclasses.fields(EvalConfig))


# The libraries' own spellings of a name that differ from ours by more than case and separators.
ALIASES: dict[str, dict[str, str]] = {
    "attacks": {"apgd": "apgd-ce", "apgdt": "apgd-t", "pgdl2": "pgd", "autoattack": "autoattack-rand"},
    "libraries": {"adversarialrobustnesstoolbox": "art", "foolbox3": "foolbox", "stochdef": "inhouse"},
    "norm": {"inf": "linf", "linfinity": "linf", "2": "l2"},
}


def _squeezed(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def canonical(setting: str, value: object, choices: Sequence[str]) -> object:
    """``value`` as one of ``choices``, whatever its case and separators (``APGD-CE``, ``Square``, ``ART``,
    ``L2``, ``L-inf``) or a library's own spelling of it (:data:`ALIASES`); anything else unchanged, to be refused
    by the check that names the choices.

    >>> canonical("attacks", "APGD_CE", ("pgd", "apgd-ce")), canonical("norm", "L-inf", ("linf", "l2"))
    ('apgd-ce', 'linf')
    """
    if not isinstance(value, str):
        return value
    squeezed = _squeezed(value)
    by_squeezed = {_squeezed(c): c for c in choices}
    return by_squeezed.get(squeezed) or ALIASES.get(setting, {}).get(squeezed, value)


def build_config(
    *, samples: Sequence[int] | str = EvalConfig.samples, samples_cap: int = DEFAULT_SAMPLES_CAP, **fields: Any
) -> EvalConfig:
    """The :class:`EvalConfig` of the settings ``fields`` (keywords of :data:`SETTINGS` that are config fields);
    ``samples="auto"`` doubles the draws up to ``samples_cap`` (:mod:`.auto_samples`)."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(FIELDS))}")
    for setting, choices in (("attacks", libraries.names(evaluate=True)), ("libraries", libraries.LIBRARIES)):
        if isinstance(fields.get(setting), (tuple, list)):
            fields[setting] = tuple(canonical(setting, v, choices) for v in fields[setting])
    if "norm" in fields:
        fields["norm"] = canonical("norm", fields["norm"], libraries.NORMS)
    if samples == "auto":
        return EvalConfig(**fields, samples=(1,), samples_cap=samples_cap)
    if isinstance(samples, str):
        raise ValueError(f"samples must be counts or 'auto', got {samples!r}")
    return EvalConfig(**fields, samples=tuple(samples), samples_cap=0)


def own_model_config(
    config: EvalConfig, *, name: str | Sequence[str], n: int, source: str, zoo_data: bool,
    checkpoint: str | None = None,
) -> EvalConfig:  # fmt: skip
    """``config`` for a caller's own model ``name`` (or several, side by side) on ``n`` examples (``source``: the
    fingerprint of their weights and data); without a zoo data set (``zoo_data``) the dataset is ``custom`` and the
    indicators run without the checks that attack a zoo surrogate. ``checkpoint``: the state dict(s) the caller
    loaded into the model(s), recorded (the model card names it) and keyed besides the weights' fingerprint."""
    return dataclasses.replace(
        config, defenses=(name,) if isinstance(name, str) else tuple(name), n=n, source=source, transfer=False,
        checkpoint=checkpoint,
        dataset=config.dataset if zoo_data else "custom",
    )  # fmt: skip
