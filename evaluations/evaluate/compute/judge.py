"""The defense's own inference rule, which judges every cell: one draw, and the softmax average of many.

Beside the verdicts: 95% Wilson intervals (:mod:`stochdef.evaluations.stats`), reliability-diagram counts on the
model's own confidence (:func:`output_kind`), and the per-example verdicts as a 0/1 string (:func:`bits`), which
the worst case over every attack reads (:mod:`..outputs.worst_case`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stochdef.adapters import DrawKind, EoT
from stochdef.defenses.mwd import MWDLayer

from ...stats import wilson_interval

CALIBRATION_BINS = 10


def output_kind(model: nn.Module) -> str:
    """``"scores"`` for a network whose outputs are per-class scores in [0, 1] (an MWD net, or sigmoid outputs:
    Agrawal et al. train both on the square error), else ``"logits"``; decided by the network's last layer.

    >>> output_kind(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())), output_kind(nn.Linear(4, 3))
    ('scores', 'logits')
    """
    last = [m for m in model.modules() if not list(m.children())][-1:]
    return "scores" if last and isinstance(last[0], (MWDLayer, nn.Sigmoid)) else "logits"


@dataclass
class Judge:
    """The defense's own inference rule: one draw, and the softmax average of ``samples`` draws.

    Calibration uses the model's own confidence: the softmax of logits, or for a network with scores in
    [0, 1] (:func:`output_kind`) the largest mean score itself (a softmax of such scores would put the top
    confidence near 0.2 on ten classes whatever the network says).

    The ensemble averages real draws whatever the model's kind (DESIGN.md, §C2): one call per draw for a model
    that draws once per call, one replicated call for one that draws per row. ``draws`` is that kind (the clean
    cell's probe), or ``None`` to let the ``EoT`` module find it at its first call.
    """

    model: nn.Module
    samples: int
    draws: DrawKind | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, not_broken: torch.Tensor | None = None) -> dict[str, Any]:
        """The verdicts on ``x``; an example marked in ``not_broken`` (one outside the threat model,
        :mod:`.validity`) counts as correct whatever the model says."""
        single = (self.model(x).argmax(1) == y).cpu()
        probs = EoT(self.model, samples=self.samples, reduce="probs", draws=self.draws)(x).exp().cpu()
        ensemble = probs.argmax(1) == y.cpu()
        if not_broken is not None:
            single, ensemble = single | not_broken.cpu(), ensemble | not_broken.cpu()
        kind = output_kind(self.model)
        confidence = probs if kind == "logits" else EoT(self.model, samples=self.samples, draws=self.draws)(x).cpu()
        return {
            **accuracy_fields("single", single),
            **accuracy_fields("ensemble", ensemble),
            "calibration": {**calibration_bins(confidence, y.cpu()), "output": kind},
            "correct": bits(ensemble),  # per example, for the worst case over attacks (worst_case.py)
        }


def bits(correct: torch.Tensor) -> str:
    """A bool vector as a string of 0s and 1s (one character per example, compact in JSON).

    >>> bits(torch.tensor([True, False, True]))
    '101'
    """
    return "".join("1" if v else "0" for v in correct.tolist())


def accuracy_fields(name: str, correct: torch.Tensor) -> dict[str, Any]:
    hits, total = int(correct.sum()), len(correct)
    return {f"acc_{name}": hits / total, f"acc_{name}_ci": list(wilson_interval(hits, total))}


def calibration_bins(probs: torch.Tensor, y: torch.Tensor, bins: int = CALIBRATION_BINS) -> dict[str, list[float]]:
    """Reliability-diagram counts: per confidence bin, the number of points, correct ones and summed confidence.

    ``probs`` are per-class confidences in [0, 1] (a softmax, or a network's own scores).
    """
    confidence, pred = probs.clamp(0.0, 1.0).max(1)
    index = (confidence * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).tolist()
    correct = torch.bincount(index, weights=(pred == y).double(), minlength=bins).tolist()
    conf = torch.bincount(index, weights=confidence.double(), minlength=bins).tolist()
    return {"count": count, "correct": correct, "confidence": conf}
