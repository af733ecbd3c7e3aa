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
design (it tells the evaluator that single-draw attacks are not enough).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
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


def _report(name: str, source: str, fired: bool, value: float, threshold: float, detail: str) -> Indicator:
    indicator = Indicator(name, source, bool(fired), float(value), float(threshold), detail)
    if indicator.fired:
        warnings.warn(f"[{source}] {name}: {detail}", ObfuscationWarning, stacklevel=3)
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
    return _report(
        "randomized",
        "AutoAttack",
        fired,
        diff,
        alpha,
        f"outputs differ across {passes} passes (max normalised-logit distance {diff:.3g}); "
        "single-draw attacks underestimate it: attack with EoT",
    )


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
        f"{int(zero.sum())} of {len(zero)} points have an all-zero gradient",
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
        f"{int(silent.sum())} points were adversarial along the path but not at the end",
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
        f"{int(moving.sum())} points' attack loss still moved > {tol} in the last {window} steps",
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
        f"{int(failed.sum())} adversarial examples fooled the surrogate but not the defense",
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
        f"accuracy {accuracy_unbounded:.3f} under an unbounded attack",
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
        f"{int(bad.sum())} points have a zero or non-finite gradient",
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
    return _report(
        "unstable_predictions",
        "Pintor et al. 2022",
        value > threshold,
        value,
        threshold,
        f"the attack loss changes by {value:.1%} on average under noise of radius {radius}",
    )


def per_example_loss(model: nn.Module, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Cross-entropy of ``model`` per example (for :func:`unstable_predictions`)."""
    return lambda x: F.cross_entropy(model(x), y, reduction="none")


# ---- Carlini et al. 2019 -----------------------------------------------------------------------------


def iterative_beats_single_step(acc_single: float, acc_iterative: float, *, slack: float = 0.0) -> Indicator:
    """An iterative attack should leave no more accuracy than a single step (FGSM) at the same eps."""
    gap = acc_iterative - acc_single
    return _report(
        "iterative_beats_single_step",
        "Carlini et al. 2019",
        gap > slack,
        gap,
        slack,
        f"PGD leaves {acc_iterative:.3f}, FGSM {acc_single:.3f}",
    )


def accuracy_monotone_in_eps(accuracy_by_eps: Mapping[float, float], *, slack: float = 0.0) -> Indicator:
    """Accuracy must not rise as eps grows; ``value`` is the largest rise between consecutive eps."""
    items = sorted(accuracy_by_eps.items())
    rises = [b[1] - a[1] for a, b in itertools.pairwise(items)]
    worst = max(rises, default=0.0)
    return _report(
        "accuracy_monotone_in_eps",
        "Carlini et al. 2019",
        worst > slack,
        worst,
        slack,
        f"accuracy rises by up to {worst:.3f} as eps grows: { {e: round(a, 3) for e, a in items} }",
    )


def whitebox_beats_transfer_and_noise(
    acc_whitebox: float, acc_transfer: float, acc_noise: float, *, slack: float = 0.0
) -> Indicator:
    """A white-box attack should beat both a transfer attack and random noise of the same size."""
    gap = acc_whitebox - min(acc_transfer, acc_noise)
    return _report(
        "whitebox_beats_transfer_and_noise",
        "Carlini et al. 2019",
        gap > slack,
        gap,
        slack,
        f"white-box {acc_whitebox:.3f}, transfer {acc_transfer:.3f}, random noise {acc_noise:.3f}",
    )


def more_steps_change_little(acc_steps: float, acc_double: float, *, tol: float = 0.05) -> Indicator:
    """Doubling the attack's steps should lower accuracy by at most ``tol``; more means it had not converged."""
    drop = acc_steps - acc_double
    return _report(
        "more_steps_change_little",
        "Carlini et al. 2019",
        drop > tol,
        drop,
        tol,
        f"doubling the steps lowers accuracy from {acc_steps:.3f} to {acc_double:.3f}",
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
        f"with randomness fixed the attack leaves {acc_fixed:.3f} (undefended model: {acc_undefended:.3f})",
    )


def summarize(indicators: Sequence[Indicator]) -> list[dict[str, Any]]:
    """The indicators as plain dicts (for JSON and reports)."""
    return [i.to_dict() for i in indicators]
