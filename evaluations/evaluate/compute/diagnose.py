"""Run the gradient-obfuscation checks of :mod:`.indicators` on one defense of an evaluation run.

All attacks here are in-house L-inf attacks at the run's middle eps with the run's largest EoT sample
count (the adaptive attack), inside the run's bounds, so the checks speak about the attack an honest
evaluation relies on, in its threat model. The surrogate for transfer checks is a deterministic network of
another architecture from the zoo (:func:`surrogate_for`); the indicator cell (:mod:`..grid.defense_cells`) loads it.
On a user's own data there is no zoo surrogate: the checks that need one (:data:`NEED_SURROGATE`) do not run
and the white-box attack is compared with random noise alone; every other check runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.adapters import EoT, ensemble_accuracy, eot_gradient, eot_value_and_grad, fix_randomness

from ...attacks import fgsm, pgd
from . import indicators as ind

SURROGATES = ("vanilla-mlp", "vanilla-cnn")
#: The checks that attack a zoo surrogate, not run without one (a user's own data).
NEED_SURROGATE = ("transfer_failure", "fixed_randomness_attack_succeeds")
GRADIENT_PASSES = 3.0  # a forward and a backward pass cost about three forwards


def indicator_passes(steps: int, samples: int, judge: int, n_eps: int) -> float:
    """Forward-pass equivalents per image of :func:`diagnose`: its PGD runs (twice the steps, the unbounded one,
    one per other eps, the fixed-randomness and surrogate ones), its FGSM and about ``steps + n_eps + 6``
    ensemble verdicts.

    >>> indicator_passes(10, 1, 1, 3)
    238.0
    """
    gradient_steps = samples * (2 * steps + max(steps, 10) + (n_eps - 1) * steps + 1 + 2) + 2 * steps
    return GRADIENT_PASSES * gradient_steps + judge * (steps + n_eps + 6)


def noise_slack(n: int) -> float:
    """Two-sided 95% margin for the difference of two accuracies on ``n`` points (worst case p = 1/2)."""
    return 1.96 * math.sqrt(2 * 0.25 / n)


def surrogate_for(defense: str) -> str:
    """A deterministic zoo network other than ``defense`` to make transfer attacks on."""
    return SURROGATES[1] if defense == SURROGATES[0] else SURROGATES[0]


@dataclass(frozen=True)
class Checks:
    """The settings of one defense's checks: ``eps`` (the run's middle one), every eps of the run, the attacks'
    ``steps``, the run's ``bounds``, EoT ``samples`` per gradient and the ``judge``'s draws (1 and 1 on a
    deterministic defense, where every draw is the same), and the ``seed`` that fixes the randomness."""

    eps: float
    eps_all: tuple[float, ...]
    steps: int
    bounds: tuple[float, float]
    samples: int
    judge: int
    seed: int


def diagnose(
    model: nn.Module, surrogate: nn.Module | None, x: torch.Tensor, y: torch.Tensor, checks: Checks, *, defense: str
) -> list[dict[str, Any]]:
    """Every indicator for ``model`` (named ``defense`` in the warnings), as dicts; each fired one also raised an
    ``ObfuscationWarning`` naming it. ``surrogate`` is a deterministic model to make transfer attacks on (``None``:
    the checks of :data:`NEED_SURROGATE` do not run)."""
    with ind.about(defense):
        return _diagnose(model, surrogate, x, y, checks)


def _diagnose(
    model: nn.Module, surrogate: nn.Module | None, x: torch.Tensor, y: torch.Tensor, c: Checks
) -> list[dict[str, Any]]:
    samples, judge, eps, bounds = c.samples, c.judge, c.eps, c.bounds
    slack = noise_slack(len(x))

    def accuracy(m: nn.Module, x_adv: torch.Tensor) -> float:
        return ensemble_accuracy(m, x_adv, y, samples=judge)

    def attack(m: nn.Module, e: float, **kw: Any) -> Any:
        return pgd(
            m,
            x,
            y,
            eps=e,
            step=kw.pop("step", 2.5 * e / c.steps),
            steps=kw.pop("steps", c.steps),
            bounds=bounds,
            samples=kw.pop("samples", samples),
            **kw,
        )

    found: list[ind.Indicator] = [ind.check_randomized(model, x, y)]
    try:
        g: torch.Tensor | None = eot_gradient(model, x, y, samples=samples)
    except RuntimeError:  # the graph does not reach the input
        g = None
    found.append(ind.unavailable_gradients(g))
    if g is not None:
        found.append(ind.check_zero_gradients(g))

    # One attack of twice the steps serves the white-box attack (its iterate after ``steps`` steps: same step
    # size, no random start) and Carlini et al.'s "doubling the steps" check (its final iterate).
    losses: list[torch.Tensor] = []
    fooled: list[torch.Tensor] = []
    halfway: list[torch.Tensor] = []

    def record(x_iterate: torch.Tensor, loss: torch.Tensor) -> None:
        if len(losses) < c.steps:  # the white-box attack's path
            losses.append(loss)
            with torch.no_grad():
                fooled.append(EoT(model, samples=judge, reduce="probs")(x_iterate).argmax(1) != y)
        elif not halfway:  # its result: the iterate after ``steps`` steps
            halfway.append(x_iterate.detach().clone())

    doubled = attack(model, eps, steps=2 * c.steps, callback=record).x_adv
    white_x = halfway[0]
    with torch.no_grad():
        fooled_final = EoT(model, samples=judge, reduce="probs")(white_x).argmax(1) != y
    found.append(ind.silent_success(torch.stack(fooled), fooled_final))
    # Pintor et al.'s indicators explain failures: they look only at the points the attack failed on.
    failed = ~fooled_final
    on_surrogate = None if surrogate is None else attack(surrogate, eps, samples=1)
    if bool(failed.any()):
        found.append(ind.incomplete_optimization(torch.stack(losses)[:, failed]))
        xf, yf = x[failed], y[failed]
        found.append(_named(ind.unstable_predictions(ind.per_example_loss(model, yf), xf, radius=eps / 4), "1 draw"))

        def eot_loss(z: torch.Tensor) -> torch.Tensor:
            return eot_value_and_grad(model, z, yf, samples=samples)[0]

        found.append(_named(ind.unstable_predictions(eot_loss, xf, radius=eps / 4), f"EoT {samples}"))
    if bool(failed.any()) and on_surrogate is not None:
        with torch.no_grad():
            transferred = EoT(model, samples=judge, reduce="probs")(on_surrogate.x_adv[failed]).argmax(1)
        found.append(ind.transfer_failure(on_surrogate.success.to(y.device)[failed], transferred != yf))
    if not bool(failed.any()):
        names = (
            "incomplete_optimization",
            "unstable_predictions[1 draw]",
            f"unstable_predictions[EoT {samples}]",
            *(("transfer_failure",) if on_surrogate is not None else ()),
        )
        found += [_not_applicable(name) for name in names]

    # eps = the whole box; steps of a tenth of it reach any point of it within 10 steps
    width = bounds[1] - bounds[0]
    unbounded = attack(model, width, steps=max(c.steps, 10), step=0.1 * width)
    found.append(ind.unconstrained_attack_failure(accuracy(model, unbounded.x_adv)))

    acc_white = accuracy(model, white_x)
    acc_fgsm = accuracy(model, fgsm(model, x, y, eps=eps, bounds=bounds, samples=samples).x_adv)
    found.append(ind.iterative_beats_single_step(acc_fgsm, acc_white, slack=slack))
    by_eps = {e: (acc_white if e == eps else accuracy(model, attack(model, e).x_adv)) for e in c.eps_all}
    found.append(ind.accuracy_monotone_in_eps(by_eps, slack=slack))
    noisy = (x + eps * torch.sign(torch.randn_like(x))).clamp(*bounds)
    acc_noise = accuracy(model, noisy)
    acc_transfer = acc_noise if on_surrogate is None else accuracy(model, on_surrogate.x_adv)
    compared = ind.whitebox_beats_transfer_and_noise(acc_white, acc_transfer, acc_noise, slack=slack)
    found.append(compared if on_surrogate is not None else _named(compared, "noise only"))
    found.append(ind.more_steps_change_little(acc_white, accuracy(model, doubled), tol=slack))
    if surrogate is None or on_surrogate is None:
        return ind.summarize(found)
    fixed = fix_randomness(model, seed=c.seed)
    with torch.no_grad():
        acc_fixed = float((fixed(attack(fixed, eps, samples=1).x_adv).argmax(1) == y).float().mean())
    acc_undefended = float((surrogate(on_surrogate.x_adv).argmax(1) == y).float().mean())
    found.append(ind.fixed_randomness_attack_succeeds(acc_fixed, acc_undefended, slack=slack))
    return ind.summarize(found)


def _not_applicable(name: str) -> ind.Indicator:
    return ind.Indicator(name, "Pintor et al. 2022", False, 0.0, 0.0, "the attack succeeded on every point")


def _named(indicator: ind.Indicator, variant: str) -> ind.Indicator:
    return ind.Indicator(
        f"{indicator.name}[{variant}]",
        indicator.source,
        indicator.fired,
        indicator.value,
        indicator.threshold,
        indicator.detail,
    )
