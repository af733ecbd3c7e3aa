"""Whether an adversarial example lies inside the run's threat model (DESIGN.md, §C7), before it can count.

Whatever a library returns is checked: finite, inside the input bounds, and inside the eps-ball of the run's norm
around its clean example. An example that fails is *invalid*: it is judged on its clean input and counted as not
broken whatever the defense says of it (a library bug, a wrong step or an ``eps`` in another scale must not lower a
headline), and the cell records how many failed and why (:meth:`Validity.fields`).

Tolerances (float32 arithmetic, inputs of magnitude up to ``s = max(|low|, |high|, 1)``, ``u = 2**-23`` the float32
machine epsilon): the ball holds a perturbation up to ``eps * (1 + 1e-6) + u * s`` in L-inf and
``eps * (1 + 1e-6) + u * s * sqrt(d)`` in L2 (``d`` input values, each rounded once), the bounds hold values in
``[low - u * s, high + u * s]`` (the bounds themselves rounded to float32).

>>> x = torch.zeros(3, 4)
>>> x_adv = torch.stack([torch.full((4,), 0.1), torch.full((4,), 0.2), torch.tensor([0.1, float("nan"), 0, 0])])
>>> v = check_examples(x, x_adv, eps=0.1, norm="linf", bounds=(0.0, 1.0))
>>> v.valid.tolist(), v.fields()
([True, False, False], {'invalid': 2, 'invalid_reasons': {'non-finite': 1, 'outside the eps-ball': 1}})
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

RELATIVE = 1e-6  # of eps
ULP = float(torch.finfo(torch.float32).eps)  # 2**-23, per unit of the inputs' magnitude
NON_FINITE, SHAPE, BOUNDS, BALL = "non-finite", "wrong shape", "outside the bounds", "outside the eps-ball"


@dataclass(frozen=True)
class Validity:
    """Per example, whether it is inside the threat model (``valid``), and how many failed for each reason."""

    valid: torch.Tensor
    reasons: dict[str, int]

    @property
    def invalid(self) -> int:
        return int((~self.valid).sum())

    def fields(self) -> dict[str, Any]:
        """The record's fields: ``invalid`` (a count) and ``invalid_reasons`` (reason -> count, sorted)."""
        return {"invalid": self.invalid, "invalid_reasons": dict(sorted(self.reasons.items()))}

    def counted(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """The examples as they count: ``x_adv`` where valid, the clean ``x`` where not."""
        if x_adv.shape != x.shape:
            return x.clone()
        keep = self.valid.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(keep, x_adv.to(x.dtype), x)


def tolerance(eps: float, norm: str, bounds: tuple[float, float], dim: int) -> float:
    """The largest perturbation accepted inside the ball of radius ``eps`` (see the module's docstring).

    >>> round(tolerance(0.3, "linf", (0.0, 1.0), 784) - 0.3, 9), round(tolerance(1.0, "l2", (0.0, 1.0), 784) - 1.0, 8)
    (4.19e-07, 4.34e-06)
    """
    scale = max(abs(bounds[0]), abs(bounds[1]), 1.0)
    rounding = ULP * scale * (math.sqrt(dim) if norm == "l2" else 1.0)
    return eps * (1.0 + RELATIVE) + rounding


def check_examples(
    x: torch.Tensor, x_adv: torch.Tensor, *, eps: float | None, norm: str, bounds: tuple[float, float]
) -> Validity:
    """The :class:`Validity` of ``x_adv`` against clean ``x`` (``eps=None``: an attack without a radius, whose
    examples are checked for the bounds and finiteness only). Each invalid example counts under its first failed
    check, in the order: shape, non-finite, bounds, ball."""
    n = len(x)
    if x_adv.shape != x.shape:
        return Validity(torch.zeros(n, dtype=torch.bool), {SHAPE: n})
    flat_adv = x_adv.detach().flatten(1).to(torch.float64).cpu()
    flat = x.detach().flatten(1).to(torch.float64).cpu()
    finite = torch.isfinite(flat_adv).all(1)
    slack = ULP * max(abs(bounds[0]), abs(bounds[1]), 1.0)
    inside = ((flat_adv >= bounds[0] - slack) & (flat_adv <= bounds[1] + slack)).all(1)
    delta = torch.nan_to_num(flat_adv - flat, nan=math.inf)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    within = torch.ones(n, dtype=torch.bool) if eps is None else size <= tolerance(eps, norm, bounds, flat.shape[1])
    reasons: dict[str, int] = {}
    seen = torch.zeros(n, dtype=torch.bool)
    for reason, ok in ((NON_FINITE, finite), (BOUNDS, inside), (BALL, within)):
        failed = ~ok & ~seen
        if failed.any():
            reasons[reason] = int(failed.sum())
        seen |= failed
    return Validity(~seen, reasons)


def merged(partials: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The validity fields of a cell from its blocks' (summed).

    >>> merged([{"invalid": 1, "invalid_reasons": {"non-finite": 1}}, {"invalid": 0, "invalid_reasons": {}}])
    {'invalid': 1, 'invalid_reasons': {'non-finite': 1}}
    """
    total, reasons = 0, dict[str, int]()
    for p in partials:
        total += int(p.get("invalid", 0))
        for reason, count in p.get("invalid_reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + int(count)
    return {"invalid": total, "invalid_reasons": dict(sorted(reasons.items()))}


def message(label: str, defense: str, eps: float | None, validity: Validity, n: int) -> str:
    """The console's warning for a cell with invalid examples (names the attack and library).

    >>> v = Validity(torch.tensor([True, False]), {"outside the eps-ball": 1})
    >>> message("pgd/torchattacks/samples 1", "mwd-256", 0.3, v, 2)  # doctest: +NORMALIZE_WHITESPACE
    'pgd/torchattacks/samples 1 on mwd-256 at eps 0.3: 1 of 2 adversarial examples outside the threat model
    (outside the eps-ball: 1); they count as not broken'
    """
    why = ", ".join(f"{reason}: {count}" for reason, count in sorted(validity.reasons.items()))
    return (
        f"{label} on {defense} at eps {eps}: {validity.invalid} of {n} adversarial examples outside the threat model "
        f"({why}); they count as not broken"
    )


def screen(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    eps: float | None,
    norm: str,
    bounds: tuple[float, float],
    label: str,
    defense: str,
) -> tuple[torch.Tensor, Validity]:
    """The examples as they count (:meth:`Validity.counted`) and their :class:`Validity`; warns (naming the cell's
    attack and library, ``label``) when any is invalid."""
    validity = check_examples(x, x_adv, eps=eps, norm=norm, bounds=bounds)
    if validity.invalid:
        logger.warning(message(label, defense, eps, validity, len(x)))
    return validity.counted(x, x_adv), validity
