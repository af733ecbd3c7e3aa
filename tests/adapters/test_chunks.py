"""The chunked replicate-and-accumulate loop against brute-force loops, and max_batch on every EoT path."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from torch import nn

from stochdef.adapters import (
    Chunk,
    EoT,
    chunked_sum,
    chunks,
    ensemble_accuracy,
    eot_value_and_grad,
    expectation,
    plan,
    replicate,
    to_art,
)
from stochdef.evaluations.attacks import deepfool, fgsm, fgsm_minimal, local_search, pgd
from stochdef.evaluations.attacks._common import evaluate

SHAPES = [(3, 5, 6), (5, 2, 3), (7, 1, 100), (4, 9, 1), (10, 4, 25), (7, 3, 4), (9, 5, 2), (6, 7, 5)]
SHAPE = (1, 4, 4)
deepfool_module = importlib.import_module("stochdef.evaluations.attacks.deepfool")


class Counted(nn.Module):
    """A per-row randomized classifier that records the number of rows of every call."""

    def __init__(self, noise: float = 0.3, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, classes))
        self.noise = noise
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(x.shape[0]))
        return self.net(x + self.noise * torch.randn_like(x))


# ---- the helper against brute force ----------------------------------------------------------------


@pytest.mark.parametrize(("batch", "samples", "max_batch"), SHAPES)
def test_chunks_cover_every_row_and_draw_once_within_max_batch(batch: int, samples: int, max_batch: int) -> None:
    seen = [(i, c.first_draw + s) for c in chunks(batch, samples, max_batch) for s in range(c.copies) for i in
            range(c.rows.start, c.rows.stop)]  # fmt: skip
    assert sorted(seen) == [(i, d) for i in range(batch) for d in range(samples)]
    assert all(c.copies * c.width <= max_batch for c in chunks(batch, samples, max_batch))
    # plan's order: slices of rows in order, and within a slice the draws in order.
    flat = [(c.rows, c.copies) for c in chunks(batch, samples, max_batch)]
    assert flat == [(rows, copies) for rows, calls in plan(batch, samples, max_batch) for copies in calls]


@pytest.mark.parametrize(("batch", "samples", "max_batch"), SHAPES)
def test_chunked_sum_equals_a_brute_force_loop(batch: int, samples: int, max_batch: int) -> None:
    torch.manual_seed(batch * 100 + samples)
    x = torch.rand(batch, 3, dtype=torch.float64)
    weight = torch.randn(samples, dtype=torch.float64)  # draw d of row i contributes weight[d] * x[i]^2 + d

    def step(chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        draws = torch.arange(chunk.first_draw, chunk.first_draw + chunk.copies, dtype=torch.float64)
        per_draw = weight[chunk.first_draw : chunk.first_draw + chunk.copies, None, None]
        values = per_draw * chunk.draws(chunk.replicate(x)) ** 2 + draws[:, None, None]
        return values.sum(0), torch.logsumexp(values.sum(2), dim=0)

    total, _ = chunked_sum(step, batch=batch, samples=samples, max_batch=max_batch)
    (lse,) = chunked_sum(
        lambda c: step(c)[1:], batch=batch, samples=samples, max_batch=max_batch, combine=torch.logaddexp
    )
    expected = torch.zeros_like(x)
    terms = torch.zeros(samples, batch, dtype=torch.float64)
    for i in range(batch):
        for d in range(samples):
            expected[i] += weight[d] * x[i] ** 2 + d
            terms[d, i] = (weight[d] * x[i] ** 2 + d).sum()
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(lse, torch.logsumexp(terms, dim=0))


def test_chunked_sum_of_an_empty_batch_makes_one_empty_call() -> None:
    calls: list[tuple[int, int]] = []

    def step(chunk: Chunk) -> tuple[torch.Tensor]:
        calls.append((chunk.width, chunk.copies))
        return (torch.zeros(chunk.width, 3),)

    (out,) = chunked_sum(step, batch=0, samples=4, max_batch=8)
    assert calls == [(0, 1)] and out.shape == (0, 3)


@pytest.mark.parametrize(("batch", "samples", "max_batch"), SHAPES)
def test_eot_paths_draw_in_the_order_of_the_hand_written_loop(batch: int, samples: int, max_batch: int) -> None:
    """Seeded, the engine repeats the loop it replaced bit for bit: same calls, same draws, same sums."""
    model = Counted()
    x, y = torch.rand(batch, *SHAPE), torch.arange(batch) % 4
    torch.manual_seed(5)
    mean = expectation(model, x, samples=samples, max_batch=max_batch)
    value, grad = eot_value_and_grad(model, x, y, samples=samples, max_batch=max_batch)
    torch.manual_seed(5)
    ref_mean: list[torch.Tensor] = []
    ref_value, ref_grad = torch.zeros(batch), torch.zeros_like(x)
    for rows, calls in plan(batch, samples, max_batch):
        acc: torch.Tensor | None = None
        for copies in calls:
            out = model(replicate(x[rows], copies)).view(copies, rows.stop - rows.start, -1).sum(0)
            acc = out if acc is None else acc + out
        assert acc is not None
        ref_mean.append(acc)
    for rows, calls in plan(batch, samples, max_batch):
        for copies in calls:
            xr = replicate(x[rows], copies).requires_grad_(True)
            losses = F.cross_entropy(model(xr), replicate(y[rows], copies), reduction="none")
            (g,) = torch.autograd.grad(losses.sum(), xr)
            ref_grad[rows] += g.view(copies, -1, *SHAPE).sum(0)
            ref_value[rows] += losses.detach().view(copies, -1).sum(0)
    assert torch.equal(mean, torch.cat(ref_mean) / samples)
    assert torch.equal(value, ref_value / samples) and torch.equal(grad, ref_grad / samples)


# ---- ART's loss_gradient splits at max_batch --------------------------------------------------------


LOSSES: list[Callable[[], nn.Module]] = [
    nn.CrossEntropyLoss,
    lambda: nn.CrossEntropyLoss(weight=torch.tensor([0.5, 1.0, 2.0, 3.0])),
    lambda: nn.CrossEntropyLoss(reduction="sum"),
    lambda: nn.CrossEntropyLoss(weight=torch.tensor([0.5, 1.0, 2.0, 3.0]), label_smoothing=0.1),
    nn.MultiMarginLoss,
]


@pytest.mark.parametrize("make_loss", LOSSES)
@pytest.mark.parametrize("max_batch", [1, 3, 4])
def test_art_loss_gradient_split_at_max_batch_equals_the_unsplit_one(
    make_loss: Callable[[], nn.Module], max_batch: int
) -> None:
    model = Counted(noise=0.0)  # deterministic: chunking must change nothing but the call sizes
    x, y = np.random.default_rng(0).random((10, *SHAPE), dtype=np.float32), np.arange(10) % 4

    def art(max_batch: int, samples: int = 3) -> PyTorchClassifier:
        return to_art(
            model,
            input_shape=SHAPE,
            nb_classes=4,
            clip_values=(0, 1),
            loss=make_loss(),
            samples=samples,
            max_batch=max_batch,
        )

    whole = art(10_000).loss_gradient(x, y)
    model.rows.clear()
    split = art(max_batch).loss_gradient(x, y)
    assert model.rows and max(model.rows) <= max_batch
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-8)
    plain = PyTorchClassifier(model, loss=make_loss(), input_shape=SHAPE, nb_classes=4, clip_values=(0, 1))
    np.testing.assert_allclose(
        art(max_batch, samples=1).loss_gradient(x, y), plain.loss_gradient(x, np.eye(4)[y]), atol=1e-7
    )


# ---- no EoT path calls the model with more than max_batch rows --------------------------------------


def _paths(model: Counted, x: torch.Tensor, y: torch.Tensor, samples: int, m: int) -> dict[str, Callable[[], object]]:
    clf = to_art(model, input_shape=SHAPE, nb_classes=4, clip_values=(0, 1), samples=samples, max_batch=m)
    xn, yn = x.numpy(), y.numpy()
    classes = torch.stack([(y + 1) % 4, (y + 2) % 4], dim=1)
    return {
        "EoT logits": lambda: EoT(model, samples=samples, max_batch=m)(x),
        "EoT probs": lambda: EoT(model, samples=samples, reduce="probs", max_batch=m)(x),
        "ensemble_accuracy": lambda: ensemble_accuracy(model, x, y, samples=samples, max_batch=m),
        "eot_value_and_grad": lambda: eot_value_and_grad(model, x, y, samples=samples, max_batch=m, loss="margin"),
        "art predict": lambda: clf.predict(xn, batch_size=5),
        "art class_gradient": lambda: clf.class_gradient(xn),
        "art class_gradient per label": lambda: clf.class_gradient(xn, label=yn),
        "art loss_gradient": lambda: clf.loss_gradient(xn, yn),
        "art compute_loss": lambda: clf.compute_loss(xn, yn),
        "evaluate": lambda: evaluate(model, x, y, samples=samples, max_batch=m),
        "linearize": lambda: deepfool_module.linearize(model, x, y, classes, samples=samples, max_batch=m),
        "fgsm": lambda: fgsm(model, x, y, eps=0.1, samples=samples, max_batch=m),
        "fgsm_minimal": lambda: fgsm_minimal(model, x, y, epsilons=30, samples=samples, max_batch=m),
        "pgd": lambda: pgd(model, x, y, eps=0.1, step=0.03, steps=2, restarts=2, samples=samples, max_batch=m),
        "deepfool": lambda: deepfool(model, x, y, steps=3, candidates=3, samples=samples, max_batch=m),
        "local_search": lambda: local_search(model, x, y, rounds=2, max_batch=m),
    }


@pytest.mark.parametrize(("samples", "max_batch"), [(5, 4), (3, 1), (1, 7), (6, 13)])
def test_no_eot_path_exceeds_max_batch(samples: int, max_batch: int) -> None:
    model = Counted()
    torch.manual_seed(1)
    x, y = torch.rand(11, *SHAPE), torch.arange(11) % 4
    for name, run in _paths(model, x, y, samples, max_batch).items():
        model.rows.clear()
        run()
        assert model.rows, name
        assert max(model.rows) <= max_batch, (name, max(model.rows))
