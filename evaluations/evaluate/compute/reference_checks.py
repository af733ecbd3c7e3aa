"""Croce & Hein's own checks (``pyautoattack.checks``, the code AutoAttack runs before its attacks) on one model,
their outcomes recorded, beside stochdef's indicators (:mod:`.indicators` re-implements two of them).

F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", ICML 2020, and the package's ``flags_doc.md``. Each check warns and returns nothing; here it is handed
a logger that keeps its message, so that a check *fired* when it spoke. They run on the model as the reference's
attacks receive it (:func:`stochdef.evaluations.libraries.wrapping.wrap` for the library ``autoattack``, one
draw per call) and as AutoAttack calls them, with two differences, both stated in the records:

* ``check_randomized`` runs on every model (AutoAttack's ``rand`` version skips it: it is the check that says a
  model needs that version), 5 passes, ``alpha=1e-4``, on the run's test examples;
* ``check_zero_gradients`` sees the gradient AutoAttack's APGD-DLR checks, computed by the reference's own
  ``APGDAttack`` (DLR loss at its random start in the eps-ball, averaged over ``eot_iter`` draws, on the points
  the model classifies right), stopped after one iteration; ``check_dynamic`` counts calls to the autograd
  functions during one forward pass (the reference keeps its counters module-wide and never resets them, so a
  second model would inherit the first's count: they are reset before each model);
* ``check_n_classes`` for AutoAttack-rand's attacks (APGD-CE, APGD-DLR); ``check_square_sr`` needs the
  attacks' accuracies, so it runs on the recorded cells when the report is written (:func:`square_check`).

>>> sorted(CHECKS)
['check_dynamic', 'check_n_classes', 'check_randomized', 'check_range_output', 'check_zero_gradients']
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

CHECKS = ("check_randomized", "check_range_output", "check_dynamic", "check_zero_gradients", "check_n_classes")
RAND_ATTACKS = ["apgd-ce", "apgd-dlr"]  # AutoAttack(version="rand")
TARGETS = 9  # AutoAttack's default n_target_classes (APGD-T, FAB-T): what check_n_classes is handed


class Heard:
    """A logger for the reference's checks: keeps every warning it is handed."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, message: str) -> None:
        self.messages.append(str(message))

    def info(self, message: str) -> None:  # APGD's verbose lines: not a check's
        pass

    debug = log = info


def outcome(name: str, heard: Heard, detail: str) -> dict[str, Any]:
    """One check's record: ``fired`` when the reference spoke, its message, and how it was run."""
    message = " ".join(heard.messages) or None
    return {"name": name, "fired": message is not None, "message": message, "how": detail}


def heard(call: Callable[[Heard], Any]) -> Heard:
    logger = Heard()
    call(logger)
    return logger


@contextmanager
def _counting() -> Iterator[None]:
    """The reference's trace of autograd calls, its counters reset first and the caller's tracer restored."""
    from pyautoattack import checks

    for key in checks.funcs:
        checks.funcs[key] = 0
    tracer = sys.gettrace()
    try:
        yield
    finally:
        sys.settrace(tracer)


def apgd_dlr_gradient_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                            eot: int, seed: int) -> Heard:  # fmt: skip
    """The reference's APGD-DLR, one iteration of ``eot`` draws: what its ``check_zero_gradients`` said."""
    from pyautoattack.autopgd_base import APGDAttack

    logger = Heard()
    apgd = APGDAttack(model, n_iter=1, norm="L2" if norm == "l2" else "Linf", eps=eps, seed=seed, loss="dlr",
                      eot_iter=eot, device=x.device, logger=logger)  # fmt: skip
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        apgd.perturb(x, y)
    return logger


def run_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str, eot: int,
               seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """Every check of :data:`CHECKS` on ``model`` (as the reference's attacks receive it), in that order."""
    from pyautoattack import checks

    classes: list[int] = []
    randomized = heard(lambda log: checks.check_randomized(model, x, y, logger=log))
    ranged = heard(lambda log: classes.append(checks.check_range_output(model, x, logger=log)))
    with _counting():
        dynamic = heard(lambda log: checks.check_dynamic(model, x, logger=log))
    zero = apgd_dlr_gradient_check(model, x, y, eps=eps, norm=norm, eot=eot, seed=seed)
    n_classes = heard(lambda log: checks.check_n_classes(classes[0], RAND_ATTACKS, TARGETS, TARGETS, logger=log))
    return [
        outcome(
            "check_randomized", randomized, "5 passes on the run's examples, alpha 1e-4 (AutoAttack-rand skips it)"
        ),
        outcome("check_range_output", ranged, "one forward pass: are the outputs a probability distribution?"),
        outcome("check_dynamic", dynamic, "one forward pass traced for calls to autograd's grad / backward"),
        outcome(
            "check_zero_gradients",
            zero,
            f"APGD-DLR's gradient at its random start, eps {eps:g}, {eot} EoT draws, on the points classified right",
        ),  # fmt: skip
        outcome("check_n_classes", n_classes, f"{classes[0]} classes for AutoAttack-rand's APGD-CE and APGD-DLR"),
    ]


def square_check(acc: dict[str, float]) -> dict[str, Any]:
    """``check_square_sr`` on ``acc`` (``clean``, the gradient attacks' worst case, ``square`` the worst case with
    Square's examples added: AutoAttack's cumulative robust accuracies).

    >>> square_check({"clean": 0.9, "gradient attacks": 0.5, "square": 0.5})["fired"]
    False
    >>> square_check({"clean": 0.9, "gradient attacks": 0.5, "square": 0.4})["fired"]
    True
    """
    from pyautoattack import checks

    spoke = heard(lambda log: checks.check_square_sr(acc, logger=log))
    return outcome("check_square_sr", spoke, "on the recorded cells: the gradient attacks' worst case, then Square's")
