"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard 2016, "DeepFool: a simple and accurate method to fool
deep neural networks"), L2 or L-inf, batched.

Conventions (they are where the libraries differ; the cross-check measures the consequences):

* **Reference class**: the given label ``y``. The paper's reference is the clean prediction; the two
  coincide on every correctly classified example, and an example that is already misclassified is
  returned unchanged as a success (nothing to do).
* **Candidates**: ``y`` and the ``candidates - 1`` other classes with the highest clean logits (the
  authors' code and Foolbox 3 rank classes once, at ``x``); ``candidates=10`` is every class of a
  10-class problem.
* **Overshoot**: the authors' code and Foolbox 3's convention: after every step the *total*
  perturbation is scaled, ``x_i = clip(x + (1 + overshoot) * sum_j r_j)``, and success is tested at
  that point; each step's distance gets ``+1e-4`` so the linearized boundary is always crossed. Every
  row is re-tested at every step and only rows not adversarial at that test move, so on a randomized
  model a row whose success flickers keeps being pushed (Foolbox does the same). (ART
  scales once after its loop; torchattacks scales every single step and clips the iterate itself.)
* **Steps**: at most ``steps`` updates (50, as Foolbox and torchattacks; ART defaults to 100).

Step ``i`` linearizes the logit differences ``f_k = z_k - z_y`` around ``x_i`` and moves to the
closest linearized boundary: ``l = argmin_k |f_k| / ||w_k||_q`` (``q = 2`` for L2, ``q = 1`` for
L-inf, the dual norm), ``r_i = (|f_l| / ||w_l||_2^2) w_l`` (L2) or ``(|f_l| / ||w_l||_1) sign(w_l)``
(L-inf). With ``samples > 1``, ``f`` and ``w`` are means over ``samples`` draws (``w`` is then the
exact EoT gradient of ``f``) and success is judged on the mean logits.
"""

from __future__ import annotations

import torch
from torch import nn

from stochdef.adapters import DEFAULT_MAX_BATCH, Chunk, DrawKind, chunked_sum

from ._common import (
    AttackResult,
    Bounds,
    check_choice,
    check_int,
    check_range,
    draws_of,
    empty,
    evaluate,
    prepare,
    succeeded,
)

NORMS: tuple[str, ...] = ("l2", "linf")


def linearize(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: torch.Tensor,
    *,
    samples: int,
    max_batch: int = DEFAULT_MAX_BATCH,
    draws: DrawKind = "per-row",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean logits ``(B, K)``, logit differences ``f = z_c - z_y`` ``(B, C)`` and their gradients ``(B, C, ...)``.

    ``classes`` ``(B, C)`` lists the candidate classes per example. One forward pass per chunk of draws,
    one backward pass per candidate column (the loop runs over classes, never over examples); one call per
    draw for a ``"per-call"`` model (``draws``, DESIGN.md §C2).
    """
    batch, columns = classes.shape
    if batch == 0:  # nothing to draw: no model call
        return (
            torch.zeros(0, 0, dtype=x.dtype, device=x.device),
            torch.zeros(0, columns, dtype=x.dtype, device=x.device),
            torch.zeros(0, columns, *x.shape[1:], dtype=x.dtype, device=x.device),
        )

    def step(chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xr = chunk.replicate(x.detach()).requires_grad_(True)
        out = model(xr)
        reference = out.gather(1, chunk.replicate(y)[:, None]).squeeze(1)
        diffs, grads = [], []
        for j in range(columns):
            diff = out.gather(1, chunk.replicate(classes[:, j])[:, None]).squeeze(1) - reference
            (g,) = torch.autograd.grad(diff.sum(), xr, retain_graph=j < columns - 1)
            grads.append(chunk.fold(g))
            diffs.append(chunk.fold(diff.detach()))
        return chunk.fold(out.detach()), torch.stack(diffs, dim=1), torch.stack(grads, dim=1)

    with torch.enable_grad():
        logits, diffs, grads = chunked_sum(
            step, batch=batch, samples=samples, max_batch=max_batch, per_call=draws == "per-call"
        )
    return logits / samples, diffs / samples, grads / samples


def deepfool_step(diffs: torch.Tensor, grads: torch.Tensor, norm: str) -> torch.Tensor:
    """One DeepFool step per example towards the closest linearized boundary (Foolbox's numerics).

    >>> w = torch.tensor([[[3.0, 4.0]]])  # one example, one candidate: f = -5, ||w|| = 5, distance 1
    >>> deepfool_step(torch.tensor([[-5.0]]), w, "l2") * 5 / 1.0001  # step = (distance + 1e-4) * w / ||w||
    tensor([[3., 4.]])
    """
    flat = grads.flatten(2)
    dual = flat.square().sum(dim=2).sqrt() if norm == "l2" else flat.abs().sum(dim=2)
    distances = diffs.abs() / (dual + 1e-8)
    best = distances.argmin(dim=1)
    rows = torch.arange(grads.shape[0], device=grads.device)
    distance = distances[rows, best] + 1e-4
    w = grads[rows, best]
    shape = (-1,) + (1,) * (w.dim() - 1)
    if norm == "l2":
        return (distance / (w.flatten(1).square().sum(dim=1).sqrt() + 1e-8)).view(shape) * w
    return distance.view(shape) * w.sign()


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 50,
    overshoot: float = 0.02,
    candidates: int = 10,
    norm: str = "l2",
    bounds: Bounds = (0.0, 1.0),
    samples: int = 1,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> AttackResult:
    """Minimal-perturbation DeepFool; see the module docstring for the conventions.

    ``result.steps`` counts the updates each example used. The model is used in the mode it is in.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x = torch.rand(4, 1, 4, 4)
        >>> y = net(x).argmax(1)
        >>> result = deepfool(net, x, y, bounds=(-10.0, 10.0))
        >>> bool(result.success.all())
        True
    """
    (low, high), num_classes = prepare(model, x, y, bounds)
    steps = check_int("steps", steps, minimum=1)
    overshoot = check_range("overshoot", overshoot, low=0.0)
    candidates = check_int("candidates", candidates, minimum=2)
    norm = check_choice("norm", norm, NORMS)
    samples = check_int("samples", samples, minimum=1)
    if x.shape[0] == 0:
        return empty(x, steps=torch.long)
    if num_classes < 2:
        raise ValueError(f"model must have at least 2 classes for DeepFool, got {num_classes}")
    kind = draws_of(model, x, samples=samples, max_batch=max_batch)  # once: every call below draws alike
    clean, _ = evaluate(model, x, y, samples=samples, max_batch=max_batch, draws=kind)
    others = clean.scatter(1, y[:, None], float("-inf"))
    classes = others.topk(min(candidates, num_classes) - 1, dim=1).indices
    x_adv = x.detach().clone()
    total = torch.zeros_like(x_adv)
    used = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(steps):
        # Every row is re-tested each step (fresh draws on a randomized model); only rows not yet
        # adversarial move. On a deterministic model an adversarial row stays adversarial.
        logits, _ = evaluate(model, x_adv, y, samples=samples, max_batch=max_batch, draws=kind)
        active = (~succeeded(logits, y, targeted=False)).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        _, diffs, grads = linearize(
            model, x_adv[active], y[active], classes[active], samples=samples, max_batch=max_batch, draws=kind
        )
        total[active] += deepfool_step(diffs, grads, norm)
        x_adv[active] = torch.clamp(x[active] + (1.0 + overshoot) * total[active], min=low, max=high)
        used[active] += 1
    logits, _ = evaluate(model, x_adv, y, samples=samples, max_batch=max_batch, draws=kind)
    return AttackResult(x_adv=x_adv, success=succeeded(logits, y, targeted=False), steps=used)
