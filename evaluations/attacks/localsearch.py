"""LocalSearch (Narodytska & Kasiviswanathan 2016, "Simple Black-Box Adversarial Perturbations for Deep
Networks", Algorithm LocSearchAdv), a black-box attack: it only queries the model's class scores.

Following Foolbox 2.x's ``LocalSearchAttack`` (defaults ``r=1.5, p=10, d=5, t=5, R=150``), in pixel
coordinates rescaled to ``[-1/2, 1/2]``:

1. Seeds: ``min(int(0.1 * H * W), 128)`` random pixel locations.
2. Each round, at most 128 of the current locations (a random subset) are probed: ``PERT`` sets the
   pixel (every channel) to ``p * sign(value)``, far outside the box on purpose (as in the paper and
   Foolbox 2.x; probes are scores only and are never returned). The score of a location is the
   softmax probability of the true class at its probe.
3. ``t`` locations get the cyclic perturbation ``r * v``, wrapped back into ``[-1/2, 1/2]``. Which ``t``:
   ``select="highest"`` (default) takes the highest scores, as Foolbox 2.4.0 does (the last 2.x; changed
   by bethgelab/foolbox#396 for issue #237); ``select="lowest"`` the lowest, as Foolbox before that change
   and advertorch's port. "Lowest" reads like the paper ("minimizes the probability ... of the true class"), but the
   cyclic step moves a saturated pixel to the *opposite* side of its probe (``-1/2 -> -3/4 -> +1/4``), so
   the pixels whose probe helps the true class most are the ones whose cyclic change hurts it: on a
   trained MLP "highest" succeeds on every digit in a few hundred queries where "lowest" almost never
   does (measured by the cross-check; the SDR paper reports 0% accuracy for its plain MLP, which only
   "highest" reproduces here).
4. The image is queried; success ends the search. Otherwise the next locations are the
   ``(2d+1) x (2d+1)`` squares around the ``t`` chosen pixels, clipped to the image.

Vectorized over the batch: every active example runs its round in the same model calls (one call for
all probes of a chunk of examples, one for the check), so a batch costs about ``2 * rounds`` calls.
``result.queries`` counts model evaluations per example: one for the clean input, then per round the
probes plus the check. Targeted (``targeted=True``, ``y`` the targets): the score is ``1 - p(target)``.
On a randomized model each query is one draw; wrap the model in :class:`~stochdef.adapters.EoT`
(without ``bounds``: probes leave the box) to query averages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import DEFAULT_MAX_BATCH, expectation

from ._common import AttackResult, Bounds, check_choice, check_int, check_range, empty, prepare, succeeded

MAX_SEEDS = 128
SEED_RATIO = 0.1
SELECT: tuple[str, ...] = ("highest", "lowest")


def cyclic(values: torch.Tensor, r: float, low: float = -0.5, high: float = 0.5) -> torch.Tensor:
    """The paper's cyclic perturbation: ``r * v``, shifted by ``high - low`` back into ``[low, high]``.

    >>> cyclic(torch.tensor([-0.5, 0.0, 0.2, 0.4]), 1.5)
    tensor([ 0.2500,  0.0000,  0.3000, -0.4000])
    """
    out = r * values
    out = torch.where(out < low, out + (high - low), out)
    return torch.where(out > high, out - (high - low), out)


def _query(model: nn.Module, x: torch.Tensor, max_batch: int) -> torch.Tensor:
    """One query (one draw) per row of ``x``: ``model(x)`` itself, in calls of at most ``max_batch`` rows."""
    return expectation(model, x, samples=1, max_batch=max_batch)


def _probe_scores(
    model: nn.Module,
    image: torch.Tensor,
    locations: torch.Tensor,
    valid: torch.Tensor,
    labels: torch.Tensor,
    *,
    p: float,
    centre: float,
    span: float,
    max_batch: int,
) -> torch.Tensor:
    """Probability of ``labels`` at each probe ``PERT(image, p, location)``; ``nan`` where not ``valid``."""
    batch, channels = image.shape[:2]
    flat = image.flatten(2)  # (B, C, HW)
    width = locations.shape[1]
    scores = torch.full((batch, width), float("nan"), dtype=image.dtype, device=image.device)
    chunk = max(1, max_batch // width)
    for start in range(0, batch, chunk):
        rows = slice(start, min(start + chunk, batch))
        n = rows.stop - rows.start
        index = locations[rows][:, :, None, None].expand(n, width, channels, 1)
        probes = flat[rows, None].expand(n, width, channels, flat.shape[2]).clone()
        probes.scatter_(3, index, p * probes.gather(3, index).sign())
        keep = valid[rows]
        probes = probes[keep].view(-1, *image.shape[1:]) * span + centre
        probs = F.softmax(_query(model, probes, max_batch), dim=1).gather(
            1, labels[rows, None].expand(n, width)[keep][:, None]
        )
        block = scores[rows]
        block[keep] = probs.squeeze(1)
        scores[rows] = block
    return scores


def _unscale(
    image: torch.Tensor, x: torch.Tensor, changed: torch.Tensor, centre: float, span: float, bounds: Bounds
) -> torch.Tensor:
    """Back to input coordinates: perturbed pixels from ``image``, the others exactly ``x``."""
    return torch.where(changed, torch.clamp(image * span + centre, *bounds), x)


def local_search(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    r: float = 1.5,
    p: float = 10.0,
    d: int = 5,
    t: int = 5,
    rounds: int = 150,
    bounds: Bounds = (0.0, 1.0),
    targeted: bool = False,
    select: str = "highest",
    max_batch: int = DEFAULT_MAX_BATCH,
) -> AttackResult:
    """Black-box greedy local search on images ``x`` of shape ``(B, C, H, W)``; see the module docstring.

    Rows where the search fails are returned unchanged (``success`` False), as in Foolbox 2.x.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
        >>> result = local_search(net, x, y, rounds=5)
        >>> result.queries.shape, bool((result.queries >= 1).all())
        (torch.Size([4]), True)
    """
    (low, high), _ = prepare(model, x, y, bounds)
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    r = check_range("r", r, low=0.0, high=2.0)
    p = check_range("p", p, low=0.0)
    d = check_int("d", d, minimum=0)
    t = check_int("t", t, minimum=1)
    rounds = check_int("rounds", rounds, minimum=1)
    select = check_choice("select", select, SELECT)
    if x.shape[0] == 0:
        return empty(x, queries=torch.long)
    batch, channels, height, width = x.shape
    pixels = height * width
    centre, span = (low + high) / 2, high - low
    image = (x.detach() - centre) / span
    dev = x.device
    changed = torch.zeros(batch, 1, height, width, dtype=torch.bool, device=dev)  # untouched pixels stay x's
    queries = torch.ones(batch, dtype=torch.long, device=dev)
    with torch.no_grad():
        done = succeeded(_query(model, x, max_batch), y, targeted=targeted)
        seeds = max(1, min(int(SEED_RATIO * pixels), MAX_SEEDS))
        order = torch.rand(batch, pixels, device=dev).argsort(dim=1)[:, :seeds]
        allowed = torch.zeros(batch, pixels, dtype=torch.bool, device=dev).scatter_(1, order, True)
        probes = min(MAX_SEEDS, pixels)
        for _ in range(rounds):
            active = (~done).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            img = image[active]
            keys = torch.rand(active.numel(), pixels, device=dev).masked_fill(~allowed[active], -1.0)
            top = keys.topk(probes, dim=1)
            locations, valid = top.indices, top.values >= 0
            scores = _probe_scores(
                model, img, locations, valid, y[active], p=p, centre=centre, span=span, max_batch=max_batch
            )
            queries[active] += valid.sum(dim=1)
            if targeted:
                scores = 1.0 - scores
            rank = scores if select == "highest" else -scores
            rank = rank.nan_to_num(-float("inf"))
            chosen = rank.topk(min(t, probes), dim=1).indices
            where, ok = locations.gather(1, chosen), valid.gather(1, chosen)
            flat = img.flatten(2)
            index = where[:, None, :].expand(-1, channels, -1)
            current = flat.gather(2, index)
            flat.scatter_(2, index, torch.where(ok[:, None, :], cyclic(current, r), current))
            image[active] = flat.view_as(img)
            picked = torch.zeros(active.numel(), pixels, dtype=x.dtype, device=dev).scatter_(1, where, ok.to(x.dtype))
            changed[active] |= picked.view(-1, 1, height, width) > 0
            candidate = _unscale(image[active], x[active], changed[active], centre, span, (low, high))
            done[active] = succeeded(_query(model, candidate, max_batch), y[active], targeted=targeted)
            queries[active] += 1
            grown = F.max_pool2d(picked.view(-1, 1, height, width), 2 * d + 1, stride=1, padding=d)
            allowed[active] = grown.flatten(1) > 0
    x_adv = _unscale(image, x.detach(), changed & done.view(-1, 1, 1, 1), centre, span, (low, high))
    return AttackResult(x_adv=x_adv, success=done, queries=queries)
