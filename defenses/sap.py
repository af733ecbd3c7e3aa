"""Stochastic Activation Pruning (Dhillon et al., "Stochastic Activation Pruning for Robust Adversarial
Defense", ICLR 2018), applied post hoc to a trained network.

Algorithm 1, per example and per activation map ``h`` with ``a`` entries (a conv map counts all of its
``C x H x W`` entries, as in the authors' MXNet operator): ``p_j = |h_j| / sum_k |h_k|``; draw
``r = round(fraction * a)`` indices *with replacement* from ``categorical(p)``; zero every entry never
drawn; divide every drawn one by its keep probability ``1 - (1 - p_j)^r``, so ``E[SAP(h)] = h``.
"SAP-100" is ``fraction=1.0``; ``fraction`` may exceed 1. The rescaled mask is a constant of the backward
pass (the authors' operator passes ``grad * mask`` back and nothing through ``p``), which makes the
gradient unbiased for the Jacobian of ``E[SAP(h)] = h``.

:func:`pruning_mask` samples "drawn at least once" for every row at once, exactly, by either method:

* ``"direct"``: Algorithm 1 literally: ``r`` inverse-CDF draws per row (one ``searchsorted``) scattered
  into a mask. Memory ``B x r`` indices (never a ``r x a`` one-hot); time ``O(B r log a)``.
* ``"poisson"``: the same law in ``O(B a)`` cheap elementwise work plus ``O(B sqrt(r))`` draws. Run a
  Poisson process of total rate ``s = r - 3 sqrt(r)`` whose arrivals carry i.i.d. ``categorical(p)``
  labels. By Poisson splitting, unit ``j`` is hit by an independent process of rate ``s p_j``, first hit
  at ``E_j / (s p_j)``, ``E_j ~ Exp(1)``: unit ``j`` is hit in ``[0, 1]`` iff ``E_j < s p_j``. The
  repeat hits of the units hit (after their first) are independent Poisson counts of means
  ``s p_j - E_j``; their sum, all we need of them, is ONE Poisson draw per row. Given the total count
  ``T = t``, the labels are ``t`` i.i.d. categorical draws (a Poisson process conditioned on its count),
  so adding ``r - t`` fresh inverse-CDF draws gives exactly the hit set of ``r`` i.i.d. draws (those
  ``r - t`` uniforms are generated already sorted, as normalised sums of exponentials, which speeds up the
  search and leaves the hit set's law unchanged). A row with ``T > r`` (probability about 1e-3) is redrawn
  with ``"direct"``; that rejection depends on ``T`` alone, so the result is exact. ``"auto"`` (the
  default) takes ``"poisson"`` for ``r >= 40``.

Both are exact up to float32 rounding of ``p`` and its cumulative sum. A map that is all zeros passes
through unchanged (no NaN). Every row is an independent draw, in ``train()`` and ``eval()`` alike;
``torch.manual_seed`` (or ``generator``) makes it repeat (DESIGN.md, §C1, §C2, §C4).

Example:
    >>> import torch
    >>> from stochdef.defenses.models import mlp
    >>> net = apply_sap(mlp((64, 32, 10)), fraction=1.0).eval()
    >>> x = torch.rand(2, 1, 8, 8)
    >>> bool((net(x) != net(x)).any())  # random in eval mode
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from .validation import check_choice, check_int, check_range

__all__ = [
    "StochasticActivationPruning",
    "apply_sap",
    "dense_view",
    "insert_after",
    "keep_probability",
    "prune",
    "pruning_mask",
    "replace_modules",
    "sample_count",
    "scale_factors",
]


Method = Literal["auto", "direct", "poisson"]
METHODS: tuple[str, ...] = ("auto", "direct", "poisson")
POISSON_MIN_DRAWS = 40  # below this, "auto" draws directly (measured crossover on a CPU: 32-50 draws)
_SLACK_SIGMAS = 3.0  # s = r - 3 sqrt(r): P(T > r) ~ 1e-3, so about one row in a thousand is redrawn


def sample_count(fraction: float, size: int) -> int:
    """``r = round(fraction * size)`` (halves round up), at least 1: the number of draws per map.

    Example:
        >>> sample_count(1.0, 100), sample_count(0.25, 10), sample_count(3.0, 4)
        (100, 3, 12)
    """
    check_range("fraction", fraction, low=0.0, low_open=True)
    return max(1, math.floor(fraction * size + 0.5))


def keep_probability(p: torch.Tensor, draws: int) -> torch.Tensor:
    """``1 - (1 - p)^draws``: the chance that a unit of probability ``p`` is drawn at least once.

    Computed as ``-expm1(draws * log1p(-p))``, accurate for tiny ``p`` too (where ``1 - p`` rounds to 1).

    Example:
        >>> keep_probability(torch.tensor([0.0, 0.5, 1.0]), 2)
        tensor([0.0000, 0.7500, 1.0000])
    """
    return -torch.expm1(draws * torch.log1p(-p))


def _draw_indices(cdf: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` inverse-CDF draws per row of unnormalised ``cdf``; an all-zero row gives the index ``a``."""
    u = torch.rand((cdf.shape[0], count), dtype=cdf.dtype, device=cdf.device, generator=generator)
    # right=True: a zero-width bin (p_j = 0) is never hit; u * total rounding up to total gives the dummy a.
    return torch.searchsorted(cdf, u.mul_(cdf[:, -1:]), right=True)


def _scatter_hits(indices: torch.Tensor, size: int) -> torch.Tensor:
    """A ``(B, size)`` mask of the indices; index ``size`` (a dummy column) marks "no hit"."""
    hits = torch.zeros((indices.shape[0], size + 1), dtype=torch.bool, device=indices.device)
    return hits.scatter_(1, indices, True)[:, :size]


def _draw_sorted(
    cdf: torch.Tensor, counts: torch.Tensor, width: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``counts[b]`` inverse-CDF draws for row ``b`` in ``width >= counts.max()`` columns (the rest give ``a``).

    The uniforms come sorted (Renyi: ``S_i / S_{m+1}``, ``S`` the cumulative sums of ``m + 1`` Exp(1)
    variables, are the order statistics of ``m`` uniforms), which makes the search faster; the set of
    units hit does not depend on the order of the draws. Columns ``i >= m`` get ``S_i / S_{m+1} >= 1``,
    so they land past the last bin, on the dummy index ``a``.
    """
    spacing = torch.rand((cdf.shape[0], width + 1), dtype=cdf.dtype, device=cdf.device, generator=generator)
    # -log(1 - U) ~ Exp(1), finite; kept >= tiny so that no normaliser S_{m+1} is 0 (no 0/0).
    total = spacing.neg_().log1p_().neg_().clamp_min_(torch.finfo(cdf.dtype).tiny).cumsum_(1)
    u = total[:, :width] / total.gather(1, counts[:, None])
    return torch.searchsorted(cdf, u.mul_(cdf[:, -1:]), right=True)


def _poisson_mask(w: torch.Tensor, neg_p: torch.Tensor, draws: int, generator: torch.Generator | None) -> torch.Tensor:
    """The ``"poisson"`` method; ``neg_p = -w / w.sum(1)`` (0 on all-zero rows), shared with the caller."""
    size = w.shape[1]
    rate = max(0.0, draws - _SLACK_SIGMAS * math.sqrt(draws))
    # slack_j = s p_j - E_j with E_j = -log(U_j) ~ Exp(1): unit j is hit iff slack_j > 0, and then its
    # repeat hits are Poisson(slack_j). (log of a uniform: Tensor.exponential_ is far slower on CPU.)
    slack = torch.rand(w.shape, dtype=w.dtype, device=w.device, generator=generator).log_()
    slack.add_(neg_p, alpha=-rate)
    mask = slack > 0
    repeats = torch.poisson(slack.relu_().sum(1), generator=generator)
    kept = slack.sign_().sum(1)  # a float sum of 0/1 (exact below 2^24): far cheaper than a bool sum
    cdf = w.cumsum(1)
    missing = (draws - (kept + repeats)).long()
    missing = torch.where(cdf[:, -1] > 0, missing, 0)  # an all-zero row draws nothing
    extra = int(missing.max())
    if extra > 0:  # T < r: add r - T fresh draws
        mask |= _scatter_hits(_draw_sorted(cdf, missing.clamp_min(0), extra, generator), size)
    over = (missing < 0).nonzero()[:, 0]
    if len(over):  # T > r: redraw those rows directly (a rejection on T alone keeps the law exact)
        mask[over] = _scatter_hits(_draw_indices(cdf[over], draws, generator), size)
    return mask


def _negated_probabilities(w: torch.Tensor) -> torch.Tensor:
    total = w.sum(1, keepdim=True)
    return w * (-1.0 / torch.where(total > 0, total, 1.0))


def _mask(
    w: torch.Tensor, neg_p: torch.Tensor, draws: int, method: str, generator: torch.Generator | None
) -> torch.Tensor:
    if w.shape[0] == 0 or w.shape[1] == 0:
        return torch.zeros(w.shape, dtype=torch.bool, device=w.device)
    if method == "poisson" or (method == "auto" and draws >= POISSON_MIN_DRAWS):
        return _poisson_mask(w, neg_p, draws, generator)
    return _scatter_hits(_draw_indices(w.cumsum(1), draws, generator), w.shape[1])


def _as_weights(x: torch.Tensor) -> torch.Tensor:
    x = x.detach()
    return x.float() if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16) else x


def pruning_mask(
    weights: torch.Tensor, draws: int, *, method: Method = "auto", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Which units of each row are drawn at least once in ``draws`` categorical draws with replacement.

    ``weights`` is ``(B, a)``, non-negative; row ``b`` draws unit ``j`` with probability
    ``weights[b, j] / weights[b].sum()``. A row of zeros draws nothing. See the module docstring for
    the two exact ``method``\\ s.

    Example:
        >>> mask = pruning_mask(torch.tensor([[0.0, 1.0, 3.0]]).expand(1000, 3), 2)
        >>> mask[:, 0].any().item(), round(mask.float().mean(0)[2].item(), 1)  # 1 - (1/4)^2 = 0.94
        (False, 0.9)
    """
    check_choice("method", method, METHODS)
    check_int("draws", draws)
    if weights.dim() != 2:
        raise ValueError(f"weights must have shape (batch, units), got {tuple(weights.shape)}")
    w = _as_weights(weights)
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("weights must be finite and non-negative")
    return _mask(w, _negated_probabilities(w), draws, method, generator)


def scale_factors(
    w: torch.Tensor, draws: int, *, method: Method = "auto", generator: torch.Generator | None = None
) -> torch.Tensor:
    """SAP's random multiplier ``m``: ``1 / (1 - (1 - p_j)^r)`` where unit ``j`` was drawn, else 0.

    ``w`` is ``(B, a)`` and non-negative (``|h|``); ``p`` its rows normalised. ``E[m_j] = 1`` where ``w_j > 0``.
    """
    neg_p = _negated_probabilities(w)
    mask = _mask(w, neg_p, draws, method, generator)
    # In place on -p: x = expm1(r * log1p(-p)) = -(keep probability), in [-1, 0) once clamped away from
    # 0 (p = 0 units are never drawn); then mask / x is -1/keep where drawn and -0 elsewhere.
    x = neg_p.log1p_().mul_(draws).expm1_().clamp_max_(-torch.finfo(w.dtype).tiny)
    return torch.div(mask, x).neg_()


def prune(
    h: torch.Tensor, *, fraction: float = 1.0, method: Method = "auto", generator: torch.Generator | None = None
) -> torch.Tensor:
    """SAP of ``h`` (``(B, ...)``, one activation map per row): prune, then rescale the survivors.

    Example:
        >>> h = torch.tensor([[0.0, 2.0, 0.0, 0.0]])
        >>> prune(h, fraction=1.0)  # a single non-zero unit (p = 1) is always kept, scale 1
        tensor([[0., 2., 0., 0.]])
    """
    check_range("fraction", fraction, low=0.0, low_open=True)
    check_choice("method", method, METHODS)
    if h.dim() < 2:
        raise ValueError(f"h must have a batch dimension and at least one more, got shape {tuple(h.shape)}")
    if h.numel() == 0:
        return h
    with torch.no_grad():
        w = _as_weights(h).reshape(h.shape[0], -1).abs()
        scale = scale_factors(w, sample_count(fraction, w.shape[1]), method=method, generator=generator)
    return h * scale.view(h.shape).to(h.dtype)


class StochasticActivationPruning(nn.Module):
    """SAP as a layer: :func:`prune` with ``fraction`` (``1.0`` is SAP-100), random in eval mode too.

    Example:
        >>> sap = StochasticActivationPruning(fraction=1.0).eval()
        >>> sap(torch.zeros(3, 4, 2, 2)).abs().sum().item()  # all-zero maps pass through
        0.0
    """

    def __init__(
        self, *, fraction: float = 1.0, method: Method = "auto", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.fraction = check_range("fraction", fraction, low=0.0, low_open=True)
        check_choice("method", method, METHODS)
        self.method: Method = method
        self.generator = generator

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, method={self.method!r}"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return prune(h, fraction=self.fraction, method=self.method, generator=self.generator)


def insert_after(model: nn.Module, make: Callable[[], nn.Module], *, after: type[nn.Module] = nn.ReLU) -> nn.Module:
    """A deep copy of ``model`` with every ``after`` module ``m`` replaced by ``nn.Sequential(m, make())``.

    Raises ``ValueError`` if ``model`` has no ``after`` module (e.g. it calls ``F.relu`` in ``forward``).

    Example:
        >>> insert_after(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Identity)[1]
        Sequential(
          (0): ReLU()
          (1): Identity()
        )
    """
    return replace_modules(model, after, lambda m: nn.Sequential(m, make()), what=f"{after.__name__} module")


def replace_modules(
    model: nn.Module,
    match: type[nn.Module] | tuple[type[nn.Module], ...],
    replace: Callable[[nn.Module], nn.Module],
    *,
    what: str,
) -> nn.Module:
    """A deep copy of ``model`` with every ``match`` module ``m`` (outermost first) replaced by ``replace(m)``.

    Raises ``ValueError`` naming ``what`` was looked for if ``model`` has none.

    Example:
        >>> replace_modules(nn.Sequential(nn.Linear(2, 2)), nn.Linear, lambda m: nn.Identity(), what="linear")
        Sequential(
          (0): Identity()
        )
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, match):
        return replace(copy.deepcopy(model))
    model = copy.deepcopy(model)
    count = 0

    def visit(parent: nn.Module) -> None:
        nonlocal count
        for name, child in parent.named_children():
            if isinstance(child, match):
                setattr(parent, name, replace(child))
                count += 1
            else:
                visit(child)

    visit(model)
    if count == 0:
        raise ValueError(f"model has no {what} to insert after or replace ({type(model).__name__})")
    return model


def apply_sap(
    model: nn.Module, *, fraction: float = 1.0, method: Method = "auto", generator: torch.Generator | None = None
) -> nn.Module:
    """A copy of ``model`` with SAP after every ``nn.ReLU``; no fine-tuning (the paper's post-hoc use).

    Example:
        >>> from stochdef.defenses.models import SmallResNet
        >>> net = apply_sap(SmallResNet(units=1, width=4), fraction=1.0)
        >>> sum(isinstance(m, StochasticActivationPruning) for m in net.modules())  # stem + 2 per unit
        7
    """
    check_range("fraction", fraction, low=0.0, low_open=True)
    check_choice("method", method, METHODS)
    return insert_after(
        model, lambda: StochasticActivationPruning(fraction=fraction, method=method, generator=generator)
    )


def dense_view(model: nn.Module) -> nn.Module:
    """``model`` with its SAP layers replaced by ``nn.Identity``, *sharing* its parameters and buffers.

    Training the view trains ``model`` (the zoo trains SAP specs' dense weights this way).

    Example:
        >>> sap = apply_sap(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> dense_view(sap)[0].weight is sap[0].weight
        True
    """
    memo: dict[int, object] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    for m in model.modules():
        if isinstance(m, StochasticActivationPruning) and m.generator is not None:
            memo[id(m.generator)] = m.generator
    view = copy.deepcopy(model, memo)

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, StochasticActivationPruning):
                setattr(parent, name, nn.Identity())
            else:
                visit(child)

    visit(view)
    return view
