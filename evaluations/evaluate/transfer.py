"""The transfer-attack matrix between defenses (Liu et al., Adv-BNN, eq. 14 and Fig. 3).

``rho_{A->B} = (Acc[B] - Acc[B|A]) / (Acc[B] - Acc[B|B])``: how much of the damage a white-box attack on B
does is done by adversarial examples made on A. ``Acc[B]`` is B's clean accuracy, ``Acc[B|A]`` its accuracy
on examples made on A (in-house EoT-PGD at the run's middle eps and largest sample count), all judged by
B's n-draw ensemble.
"""

from __future__ import annotations

from typing import Any

import torch

from stochdef.adapters import EoT

from ..attacks import pgd
from .results import cell_seed
from .run import Run, seed_everything


def source_examples(run: Run, source: str) -> torch.Tensor:
    """Adversarial examples made on ``source`` (seeded by the source alone, cached for the run)."""
    cache = run.transfer_sources
    if source not in cache:
        c = run.config
        seed_everything(cell_seed(c.seed, f"transfer-source|{source}"))
        cache[source] = pgd(
            run.model(source),
            run.x,
            run.y,
            eps=c.eps_mid,
            step=2.5 * c.eps_mid / c.steps,
            steps=c.steps,
            bounds=(0.0, 1.0),
            samples=run.draws(source, max(c.samples)),
        ).x_adv
    return cache[source]


def transfer_cell(run: Run, source: str, target: str) -> dict[str, Any]:
    """Accuracy of ``target``'s ensemble on adversarial examples made on ``source``."""
    x_adv = source_examples(run, source)
    with torch.no_grad():
        probs = EoT(run.model(target), samples=run.draws(target, run.config.judge_samples), reduce="probs")(x_adv)
    return {
        "source": source,
        "target": target,
        "eps": run.config.eps_mid,
        "acc_ensemble": float((probs.argmax(1) == run.y).float().mean()),
    }


def rho(clean: float, transferred: float, whitebox: float) -> float:
    """``(Acc[B] - Acc[B|A]) / (Acc[B] - Acc[B|B])``; nan when the white-box attack did no damage.

    Example:
        >>> rho(0.9, 0.6, 0.3)
        0.5
    """
    damage = clean - whitebox
    return (clean - transferred) / damage if damage > 0 else float("nan")
