"""Certified accuracy, the other side of the empirical worst case (DESIGN.md, §C8): per example, whether a
certificate proves the defense right on the whole eps-ball, for the defenses whose papers give one.

* ``interval``: a network with MWD layers (Agrawal et al., "Reaching Adversarial Robustness through Max-of-
  Weighted-Distance units", 2019, Corollary 1): interval bounds (:mod:`stochdef.defenses.intervals`) over the
  L-inf box of radius eps, which holds the L2 ball of the same radius too. Exact, deterministic.
* ``renyi``: noise injected on the input (Pinot et al., "Theoretical evidence for adversarial robustness through
  randomization", NeurIPS 2019, Theorems 1 and 3) for the averaged classifier (the softmax average: the judge's
  ensemble rule with infinitely many draws). Its expected scores are estimated from :data:`DRAWS` draws and
  corrected by Hoeffding's bound (all classes together at level :data:`ALPHA` per example); the best of
  :data:`LAMBDAS` orders is taken, with Theorem 3's ``delta* =`` :data:`DELTA`. Against L-inf attacks on 784
  inputs its level ``epsilon = lambda d eps^2 / (2 std^2)`` is far beyond any margin: it certifies nothing there.

Every other defense has no certificate (``method`` None).

>>> from stochdef.defenses.mwd import MWDLayer
>>> net = nn.Sequential(MWDLayer(4, 3, generator=torch.Generator().manual_seed(0)), nn.Linear(3, 2))
>>> x = torch.rand(8, 4)
>>> method(net), certify_examples(net, x, net(x).argmax(1), eps=0.0, norm="linf", bounds=(0.0, 1.0)).all().item()
('interval', True)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stochdef.defenses.intervals import certified
from stochdef.defenses.mwd import mwd_layers
from stochdef.defenses.noise import NoiseInjection
from stochdef.defenses.renyi import certify, input_epsilon

DRAWS = 1000
ALPHA = 1e-3
DELTA = 1e-3
LAMBDAS = (1.5, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
DESCRIPTIONS = {
    "interval": "interval bounds (Agrawal et al. 2019, Corollary 1)",
    "renyi": f"Renyi certificate of input noise (Pinot et al. 2019, Theorem 3; {DRAWS} draws, Hoeffding at {ALPHA})",
}


def input_noise(model: nn.Module) -> NoiseInjection | None:
    """The model's noise layer when it is its first layer (noise on the input), else None."""
    leaves = [m for m in model.modules() if not list(m.children())]
    return leaves[0] if leaves and isinstance(leaves[0], NoiseInjection) else None


def method(model: nn.Module) -> str | None:
    """``"interval"``, ``"renyi"`` or None: the certificate that exists for ``model``."""
    if mwd_layers(model):
        return "interval"
    noise = input_noise(model)
    return "renyi" if noise is not None and noise.std > 0 else None


@torch.no_grad()
def mean_scores(model: nn.Module, x: torch.Tensor, draws: int, *, chunk: int = 100) -> torch.Tensor:
    """The mean softmax over ``draws`` draws per row of ``x`` (float64)."""
    total = torch.zeros(len(x), 0, dtype=torch.float64)
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        out = model(x.repeat_interleave(k, dim=0)).softmax(1).double().view(len(x), k, -1).sum(1).cpu()
        total = out if total.shape[1] == 0 else total + out
    return total / draws


def renyi_certified(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str, draws: int = DRAWS
) -> torch.Tensor:
    """Per example: the averaged classifier is right and Theorem 3 certifies it on the ``norm`` ball of ``eps``."""
    noise = input_noise(model)
    assert noise is not None, "renyi_certified needs noise on the input"
    slack = math.sqrt(math.log(2 * 10 / ALPHA) / (2 * draws))  # 10 classes or more: no smaller
    # the runner-up's upper bound is at least ``slack``, so Theorem 3 needs e^{2 epsilon'} slack < 1
    levels = []
    for lam in LAMBDAS:
        level = input_epsilon(eps, distribution=noise.distribution, std=noise.std, norm=norm, dim=x[0].numel(),
                              lambda_=lam)  # fmt: skip
        if level + math.log(1 / DELTA) / (lam - 1) < 0.5 * math.log(1 / slack):
            levels.append((lam, level))
    if not levels:  # nothing can be certified at this radius: no draws needed
        return torch.zeros(len(x), dtype=torch.bool)
    scores = mean_scores(model, x, draws)
    slack = math.sqrt(math.log(2 * scores.shape[1] / ALPHA) / (2 * draws))
    true = scores.gather(1, y.cpu()[:, None]).squeeze(1)
    other = scores.scatter(1, y.cpu()[:, None], -1.0).amax(1)
    low, high = (true - slack).clamp(0, 1), (other + slack).clamp(0, 1)
    pair = torch.stack([low, high], 1)
    right = low > high
    found = torch.zeros(len(x), dtype=torch.bool)
    for lam, level in levels:
        found |= right & certify(pair, epsilon=level, lambda_=lam, delta=DELTA)
    return found


def certify_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str, bounds: tuple[float, float]
) -> torch.Tensor:
    """Per example, certified at ``eps`` in ``norm`` by :func:`method`'s certificate (ValueError without one)."""
    kind = method(model)
    if kind == "interval":
        return certified(model, x, y, eps, input_range=bounds).cpu()
    if kind == "renyi":
        return renyi_certified(model, x, y, eps=eps, norm=norm)
    raise ValueError(f"model has no certificate (no MWD layer, no noise on the input): {type(model).__name__}")
