"""Gradient-obfuscation indicators: small functions that return data and warn when they fire.

Three sources, each check named after it:

* AutoAttack (Croce & Hein 2020, ``autoattack/checks.py``): :func:`check_randomized` (5 passes; predictions
  or L2-normalised logits differ) and :func:`check_zero_gradients`.
* Pintor et al. 2022, "Indicators of Attack Failure": :func:`silent_success`, :func:`incomplete_optimization`,
  :func:`transfer_failure`, :func:`unconstrained_attack_failure`, :func:`unavailable_gradients`,
  :func:`unstable_predictions`.
* Carlini et al. 2019, "On Evaluating Adversarial Robustness": :func:`iterative_beats_single_step`,
  :func:`accuracy_monotone_in_eps`, :func:`whitebox_beats_transfer_and_noise`, :func:`more_steps_change_little`,
  :func:`fixed_randomness_attack_succeeds`.

A fired indicator is not a verdict: it says where to look. ``randomized`` fires on every random defense by
design (it tells the evaluator that single-draw attacks are not enough). Each ``detail`` reads true whether
or not the indicator fired. Warnings name the model they are about when the caller says which, with
:func:`about` (``diagnose`` does), and the check they come from ("after AutoAttack's check"): AutoAttack
itself does not run here.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stochdef.defenses.validation import check_int, check_range


class ObfuscationWarning(UserWarning):
    """Raised (as a warning) when an indicator of gradient obfuscation or attack failure fires."""


@dataclass(frozen=True)
class Indicator:
    """One check's outcome: ``value`` compared with ``threshold`` decides ``fired``."""

    name: str
    source: str
    fired: bool
    value: float
    threshold: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# How a warning names where a check comes from: the checks are re-implemented here, the tools do not run.
AFTER: dict[str, str] = {
    "AutoAttack": "after AutoAttack's check",
    "Pintor et al. 2022": "after Pintor et al. 2022's indicators of attack failure",
    "Carlini et al. 2019": "after Carlini et al. 2019's checklist",
}
_SUBJECT: ContextVar[str] = ContextVar("subject", default="")


@contextlib.contextmanager
def about(subject: str) -> Iterator[None]:
    """Name ``subject`` (a defense) in the warnings of the indicators computed inside the block.

    >>> with about("sap-mlp"), warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = unconstrained_attack_failure(0.4)
    >>> message = str(caught[0].message)
    >>> message.split(" (")[0]
    'sap-mlp: accuracy 0.400 under an unbounded attack, more than 0.05'
    >>> message.split(" (")[1]
    "unconstrained_attack_failure, after Pintor et al. 2022's indicators of attack failure)"
    """
    token = _SUBJECT.set(subject)
    try:
        yield
    finally:
        _SUBJECT.reset(token)


def warning_text(indicator: Indicator, subject: str = "") -> str:
    """The one-line warning of a fired indicator: the model, what was seen, which check and whose."""
    where = AFTER.get(indicator.source, f"after {indicator.source}")
    return f"{subject + ': ' if subject else ''}{indicator.detail} ({indicator.name}, {where})"


def _count(k: int, n: int) -> str:
    """``"none of 5"``, ``"all 5"`` or ``"2 of 5"`` (``"1 of 1"``, not "all 1")."""
    return f"none of {n}" if k == 0 else (f"all {n}" if k == n > 1 else f"{k} of {n}")


def _report(name: str, source: str, fired: bool, value: float, threshold: float, detail: str) -> Indicator:
    indicator = Indicator(name, source, bool(fired), float(value), float(threshold), detail)
    if indicator.fired:
        warnings.warn(warning_text(indicator, _SUBJECT.get()), ObfuscationWarning, stacklevel=3)
    return indicator


# ---- AutoAttack --------------------------------------------------------------------------------------


@torch.no_grad()
def check_randomized(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, passes: int = 5, alpha: float = 1e-4
) -> Indicator:
    """AutoAttack's check: over ``passes`` forward passes, do correct counts or normalised logits differ?"""
    check_int("passes", passes, minimum=2)
    model.eval()
    outputs = [model(x) for _ in range(passes)]
    correct = [int((o.argmax(1) == y).sum()) for o in outputs]
    normed = [o / (o.flatten(1).norm(dim=1).view(-1, *([1] * (o.dim() - 1))) + 1e-10) for o in outputs]
    diff = max(float((a - b).flatten(1).norm(dim=1).max()) for i, a in enumerate(normed) for b in normed[i + 1 :])
    fired = len(set(correct)) > 1 or diff > alpha
    if fired:
        detail = (
            f"outputs differ across {passes} passes (max normalised-logit distance {diff:.3g} > {alpha:g}, "
            f"correct counts {sorted(set(correct))}); single-draw attacks underestimate it: attack with EoT"
        )
    else:
        detail = (
            f"outputs agree across {passes} passes (max normalised-logit distance {diff:.3g} <= {alpha:g}, "
            f"{correct[0]} correct each time): deterministic as far as this check sees"
        )
    return _report("randomized", "AutoAttack", fired, diff, alpha, detail)


def check_zero_gradients(grad: torch.Tensor) -> Indicator:
    """AutoAttack's check: the fraction of points whose loss gradient is exactly zero."""
    zero = grad.flatten(1).abs().sum(1) == 0
    frac = float(zero.float().mean())
    return _report(
        "zero_gradients",
        "AutoAttack",
        frac > 0,
        frac,
        0.0,
        f"{_count(int(zero.sum()), len(zero))} points have an all-zero gradient",
    )


# ---- Pintor et al. 2022 ------------------------------------------------------------------------------


def silent_success(success_along_path: torch.Tensor, success_final: torch.Tensor) -> Indicator:
    """Points where some iterate was adversarial but the returned point is not.

    ``success_along_path`` is ``(steps, B)`` (misclassified at each iterate), ``success_final`` is ``(B,)``.
    """
    silent = success_along_path.any(0) & ~success_final
    frac = float(silent.float().mean())
    return _report(
        "silent_success",
        "Pintor et al. 2022",
        frac > 0,
        frac,
        0.0,
        f"{_count(int(silent.sum()), len(silent))} points were adversarial along the path but not at the end",
    )


def incomplete_optimization(loss_trace: torch.Tensor, *, window: int = 10, tol: float = 0.05) -> Indicator:
    """Points whose attack loss had not converged: over the last ``window`` steps the rescaled loss moved > ``tol``.

    ``loss_trace`` is ``(steps, B)`` of the attacker's objective to *maximise*; as in Pintor et al.'s code it
    is negated into a loss to minimise, rescaled to [0, 1] per point, made monotone (running minimum),
    and its range over the last ``window`` steps compared with ``tol``.
    """
    check_int("window", window)
    loss = -loss_trace.detach().double()
    low, high = loss.min(0).values, loss.max(0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    scaled = torch.cummin((loss - low) / span, dim=0).values
    last = scaled[-window:]
    moving = (last.max(0).values - last.min(0).values) > tol
    frac = float(moving.float().mean())
    return _report(
        "incomplete_optimization",
        "Pintor et al. 2022",
        frac > 0,
        frac,
        0.0,
        f"{_count(int(moving.sum()), len(moving))} points' attack loss still moved > {tol} in the last {window} steps",
    )


def transfer_failure(success_on_surrogate: torch.Tensor, success_on_target: torch.Tensor) -> Indicator:
    """Points whose adversarial example fools the surrogate it was made on but not the target."""
    failed = success_on_surrogate & ~success_on_target
    frac = float(failed.float().mean())
    return _report(
        "transfer_failure",
        "Pintor et al. 2022",
        frac > 0,
        frac,
        0.0,
        f"{_count(int(failed.sum()), len(failed))} adversarial examples fooled the surrogate but not the defense",
    )


def unconstrained_attack_failure(accuracy_unbounded: float, *, tol: float = 0.05) -> Indicator:
    """With no perturbation bound an attack must reach ~0% accuracy; more than ``tol`` left means it is broken."""
    check_range("tol", tol, low=0.0, high=1.0)
    return _report(
        "unconstrained_attack_failure",
        "Pintor et al. 2022",
        accuracy_unbounded > tol,
        accuracy_unbounded,
        tol,
        f"accuracy {accuracy_unbounded:.3f} under an unbounded attack, "
        + (f"more than {tol:g}" if accuracy_unbounded > tol else f"at most {tol:g} as it should be"),
    )


def unavailable_gradients(grad: torch.Tensor | None) -> Indicator:
    """The loss gradient is missing, non-finite, or zero for some point."""
    if grad is None:
        return _report("unavailable_gradients", "Pintor et al. 2022", True, 1.0, 0.0, "no gradient reached the input")
    bad = ~torch.isfinite(grad).flatten(1).all(1) | (grad.flatten(1).abs().sum(1) == 0)
    frac = float(bad.float().mean())
    return _report(
        "unavailable_gradients",
        "Pintor et al. 2022",
        frac > 0,
        frac,
        0.0,
        f"{_count(int(bad.sum()), len(bad))} points have a zero or non-finite gradient",
    )


@torch.no_grad()
def unstable_predictions(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    radius: float,
    draws: int = 10,
    threshold: float = 0.1,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Indicator:
    """Mean relative change of the attack loss under uniform noise in ``[-radius/2, radius/2]`` (capped at 1).

    ``loss_fn(x)`` returns per-example losses (the objective the attack follows: one draw for a naive
    attack, an EoT average for an adaptive one). Fires when the mean exceeds ``threshold``.
    """
    check_range("radius", radius, low=0.0)
    check_int("draws", draws)
    reference = loss_fn(x)
    scale = torch.where(reference.abs() > 0, reference.abs(), torch.ones_like(reference))
    changes = torch.stack(
        [
            (loss_fn((x + (torch.rand_like(x) - 0.5) * radius).clamp(*bounds)) - reference).abs() / scale
            for _ in range(draws)
        ]
    )
    value = min(float(changes.mean()), 1.0)
    fired = value > threshold
    return _report(
        "unstable_predictions",
        "Pintor et al. 2022",
        fired,
        value,
        threshold,
        f"the attack loss changes by {value:.1%} on average under noise of radius {radius:g} "
        f"({'more' if fired else 'no more'} than {threshold:.0%})",
    )


def per_example_loss(model: nn.Module, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Cross-entropy of ``model`` per example (for :func:`unstable_predictions`)."""
    return lambda x: F.cross_entropy(model(x), y, reduction="none")


# ---- Carlini et al. 2019 -----------------------------------------------------------------------------


def iterative_beats_single_step(acc_single: float, acc_iterative: float, *, slack: float = 0.0) -> Indicator:
    """An iterative attack should leave no more accuracy than a single step (FGSM) at the same eps."""
    gap = acc_iterative - acc_single
    verdict = (
        f"PGD is weaker than FGSM by {gap:.3f} (more than the slack {slack:.3f})"
        if gap > slack
        else ("PGD is at least as strong as FGSM" if gap <= 0 else f"PGD is within the slack {slack:.3f} of FGSM")
    )
    return _report(
        "iterative_beats_single_step",
        "Carlini et al. 2019",
        gap > slack,
        gap,
        slack,
        f"PGD leaves {acc_iterative:.3f}, FGSM {acc_single:.3f}: {verdict}",
    )


def accuracy_monotone_in_eps(accuracy_by_eps: Mapping[float, float], *, slack: float = 0.0) -> Indicator:
    """Accuracy must not rise as eps grows; ``value`` is the largest rise between consecutive eps."""
    items = sorted(accuracy_by_eps.items())
    rises = [b[1] - a[1] for a, b in itertools.pairwise(items)]
    worst = max(rises, default=0.0)
    curve = ", ".join(f"{e:g}: {a:.3f}" for e, a in items)
    if worst > slack:
        verdict = f"accuracy rises by up to {worst:.3f} as eps grows (more than the slack {slack:.3f})"
    elif worst > 0:
        verdict = f"accuracy rises by at most {worst:.3f} as eps grows, within the slack {slack:.3f}"
    else:
        verdict = "accuracy never rises as eps grows"
    return _report(
        "accuracy_monotone_in_eps", "Carlini et al. 2019", worst > slack, worst, slack, f"{verdict} ({curve})"
    )


def whitebox_beats_transfer_and_noise(
    acc_whitebox: float, acc_transfer: float, acc_noise: float, *, slack: float = 0.0
) -> Indicator:
    """A white-box attack should beat both a transfer attack and random noise of the same size."""
    gap = acc_whitebox - min(acc_transfer, acc_noise)
    if gap > slack:
        verdict = f"the white-box attack is weaker by {gap:.3f} (more than the slack {slack:.3f})"
    elif gap > 0:
        verdict = f"the white-box attack is within the slack {slack:.3f} of the strongest"
    else:
        verdict = "the white-box attack is the strongest"
    return _report(
        "whitebox_beats_transfer_and_noise",
        "Carlini et al. 2019",
        gap > slack,
        gap,
        slack,
        f"white-box {acc_whitebox:.3f}, transfer {acc_transfer:.3f}, random noise {acc_noise:.3f}: {verdict}",
    )


def more_steps_change_little(acc_steps: float, acc_double: float, *, tol: float = 0.05) -> Indicator:
    """Doubling the attack's steps should lower accuracy by at most ``tol``; more means it had not converged."""
    drop = acc_steps - acc_double
    if drop > tol:
        verdict = f"lowers accuracy from {acc_steps:.3f} to {acc_double:.3f}, by more than {tol:.3f}: not converged"
    elif drop > 0:
        verdict = f"lowers accuracy from {acc_steps:.3f} to {acc_double:.3f}, within {tol:.3f}"
    elif drop == 0:
        verdict = f"leaves accuracy at {acc_steps:.3f}"
    else:  # a random defense's accuracy moves with the draws; a rise is noise, not a failure
        verdict = f"changes accuracy from {acc_steps:.3f} to {acc_double:.3f} (no drop)"
    return _report(
        "more_steps_change_little", "Carlini et al. 2019", drop > tol, drop, tol, f"doubling the steps {verdict}"
    )


def fixed_randomness_attack_succeeds(acc_fixed: float, acc_undefended: float, *, slack: float = 0.1) -> Indicator:
    """With the randomness fixed to one draw, a white-box attack must do about as well as on a plain network."""
    gap = acc_fixed - acc_undefended
    return _report(
        "fixed_randomness_attack_succeeds",
        "Carlini et al. 2019",
        gap > slack,
        gap,
        slack,
        f"with randomness fixed the attack leaves {acc_fixed:.3f} (undefended model: {acc_undefended:.3f}), "
        + (f"more than {slack:.3f} above it" if gap > slack else f"within {slack:.3f} of it"),
    )


def summarize(indicators: Sequence[Indicator]) -> list[dict[str, Any]]:
    """The indicators as plain dicts (for JSON and reports)."""
    return [i.to_dict() for i in indicators]
