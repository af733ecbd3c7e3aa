"""Croce & Hein's own AutoAttack (``pyautoattack``, the code RobustBench runs) as the library ``autoattack``:
AutoAttack-rand and its components APGD-CE and APGD-DLR, beside torchattacks' port of them.

F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", ICML 2020. The ``rand`` version runs APGD-CE then APGD-DLR with 100 iterations and 20 EoT draws per
gradient (``eot_iter=20``) of its own, so it runs at ``samples=1``; the components run at the attack object's
``steps`` and ``restarts``, differentiating the stochdef EoT module (``samples`` draws, logits averaged). The
package is an extra (``pip install 'stochdef[autoattack]'``); without it every cell of this library is skipped
with that reason. The model is handed over as torchattacks' adapter returns it (a module returning logits).

>>> MISSING[1]
"Croce & Hein's package is not installed: pip install 'stochdef[autoattack]' (pyautoattack)"
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .base import Attack, Limit
from .calls import library_seed

Tensor = torch.Tensor
NAME = "autoattack"
NOT_INSTALLED = "Croce & Hein's package is not installed: pip install 'stochdef[autoattack]' (pyautoattack)"
RAND_STEPS, RAND_EOT = 100, 20  # version="rand": APGD's n_iter and eot_iter


def installed() -> bool:
    """Whether ``pyautoattack`` can be imported."""
    return importlib.util.find_spec("pyautoattack") is not None


MISSING: Limit = (lambda a: not installed(), NOT_INSTALLED)
UNIT_BOX: Limit = (lambda a: a.bounds != (0.0, 1.0), "Croce & Hein's AutoAttack clips to inputs in [0, 1]")


def _norm(attack: Attack) -> str:
    return "L2" if attack.norm == "l2" else "Linf"


def reference_rand(attack: Attack, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """AutoAttack(version="rand") on ``(x, y)``: its adversarial examples."""
    from pyautoattack import AutoAttack

    runner = AutoAttack(model, norm=_norm(attack), eps=attack.radius, version="rand", seed=library_seed(),
                        device=x.device)  # fmt: skip
    x_adv, _ = runner.run_standard_evaluation(x, y, batch_size=len(x))
    return x_adv


def reference_apgd(loss: str) -> Callable[[Any, nn.Module, Tensor, Tensor], Tensor]:
    """A runner of Croce & Hein's APGD on ``loss`` (``"ce"`` or ``"dlr"``) at the attack's steps and restarts."""

    def run(attack: Any, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        from pyautoattack import AutoAttack

        runner = AutoAttack(model, norm=_norm(attack), eps=attack.radius, version="custom", attacks=[f"apgd-{loss}"],
                            seed=library_seed(), device=x.device)  # fmt: skip
        runner.apgd.n_iter, runner.apgd.n_restarts, runner.apgd.eot_iter = attack.steps, attack.restarts, 1
        x_adv, _ = runner.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv

    return run
