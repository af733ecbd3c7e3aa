"""AutoAttack-rand from torchattacks' port and from Croce & Hein's reference (``pyautoattack``) on one randomized
model, and why they differ: the reference's initial clean check.

F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", ICML 2020. ``AutoAttack.run_standard_evaluation`` first classifies the clean batch with one forward
pass and attacks only the examples that pass classified right; the others are returned unperturbed. On a
deterministic model they are the misclassified ones. On a random model one draw also misclassifies examples
that the model's ensemble classifies right (sap-mlp: 0.81 one draw, 0.92 ensemble), and those come back
unattacked, so stochdef's judge, the ensemble, counts them robust. torchattacks' ``MultiAttack`` has no such
check: each APGD checks the clean examples again, with a fresh draw. :func:`compare` measures the reference as
it is and with that one check answered "right" for every example (:class:`CleanCheckAnswered`), beside the port;
``python -m stochdef.evaluations.crosscheck.autoattack_ports --defense sap-mlp --eps 0.1,0.3 --seeds 4`` prints
the rows.

>>> from torch import nn
>>> net = CleanCheckAnswered(nn.Linear(2, 3), torch.zeros(1, 2), torch.tensor([2]))
>>> [int(net(torch.zeros(1, 2)).argmax()) for _ in range(4)][2]  # the third call on the clean batch
2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)
CLEAN_CHECK_CALL = 3  # run_standard_evaluation's calls on the clean batch: check_range_output, check_dynamic, check


class CleanCheckAnswered(nn.Module):
    """``net``, except that AutoAttack's clean check (its third call on the clean batch ``x``; pyautoattack 0.2.0,
    ``version="rand"``) is answered with the true labels ``y``, so that every example is attacked (with
    ``answer=False`` it is only watched); ``unattacked`` keeps what the check's own draw would have left alone."""

    def __init__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, answer: bool = True) -> None:
        super().__init__()
        self.net, self.x, self.y, self.calls, self.answer = net, x, y, 0, answer
        self.unattacked = torch.zeros_like(y, dtype=torch.bool)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if z.shape == self.x.shape and torch.equal(z, self.x):
            self.calls += 1
            if self.calls == CLEAN_CHECK_CALL:
                self.unattacked = out.argmax(1) != self.y
                if self.answer:
                    return 10.0 * nn.functional.one_hot(self.y, out.shape[1]).to(out.dtype)
        return out


def compare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int, judge: int = 16,
            num_classes: int = 10) -> dict[str, Any]:  # fmt: skip
    """Per port, the ensemble's robust accuracy (``judge`` draws) on its AutoAttack-rand examples at L-inf ``eps``;
    ``unattacked``: the examples the reference's clean check leaves alone, ``unattacked_robust``: how many of them
    the ensemble then counts robust."""
    from pyautoattack import AutoAttack

    from ..evaluate.compute.judge import Judge
    from ..libraries import AutoAttackRand, run, wrap

    attack = AutoAttackRand(eps=eps)
    wrapped = wrap("autoattack", attack, model, x, num_classes=num_classes)

    def robust(x_adv: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(seed + 1)
        return torch.tensor([c == "1" for c in Judge(model, judge)(x_adv, y)["correct"]])

    def reference(net: nn.Module) -> torch.Tensor:
        torch.manual_seed(seed)
        runner = AutoAttack(net, norm="Linf", eps=eps, version="rand", seed=seed, device=x.device)
        return runner.run_standard_evaluation(x, y, batch_size=len(x))[0]

    torch.manual_seed(seed)
    port = robust(run("torchattacks", attack, model, x, y, num_classes=num_classes))
    watched = CleanCheckAnswered(wrapped, x, y, answer=False)
    as_is = reference(watched)
    left = watched.unattacked
    every = robust(reference(CleanCheckAnswered(wrapped, x, y)))
    kept = robust(as_is)
    unperturbed = (as_is - x).flatten(1).abs().amax(1) == 0
    return {"eps": eps, "seed": seed, "port": float(port.float().mean()), "reference": float(kept.float().mean()),
            "reference_every_example_attacked": float(every.float().mean()), "unattacked": int(left.sum()),
            "unattacked_unperturbed": int((left & unperturbed).sum()),
            "unattacked_robust": int((left & kept).sum()), "perturbed": int((~unperturbed).sum())}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """Print :func:`compare`'s row per eps and seed on a zoo defense, then the means per eps."""
    from stochdef.defenses import data, zoo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--defense", default="sap-mlp")
    parser.add_argument("--eps", default="0.1,0.3")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--dataset", default="mnist5k")
    args = parser.parse_args(argv)
    model, _ = zoo.load(args.defense, dataset=args.dataset, device="cpu")
    test = data.load(args.dataset)
    x, y = test.x_test[: args.n], test.y_test[: args.n]
    for eps in (float(e) for e in args.eps.split(",")):
        rows = [compare(model, x, y, eps=eps, seed=s, num_classes=test.num_classes) for s in range(args.seeds)]
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        means = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k not in ("eps", "seed")}
        sys.stdout.write(json.dumps({"eps": eps, "mean over seeds": means}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
