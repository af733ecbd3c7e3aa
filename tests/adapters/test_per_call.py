"""EoT on models that draw once per call (the rows of one call share a draw): every estimate averages real draws.

Two per-call models (``conftest.py``): one shared noise tensor without the batch dimension, and Xie et al. 2018's
random resize-and-pad drawn once per forward call. Replicating the batch in one call would give ``samples``
copies of one draw; each adapter must instead take one call per draw. Only the adapters' long-standing API is
used here, so the file also runs against code that replicates (where it fails).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import reduce

import eagerpy as ep
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn

from stochdef.adapters import EoT, ensemble_accuracy, eot_gradient, to_art, to_foolbox, to_torchattacks

SHAPE, B, S, R = (1, 8, 8), 3, 4, 300
# Variance: each side's total variance (trace of the covariance) over R repetitions has a standard error estimated
# from those repetitions; log(T_1 / T_S) must be within Z_VARIANCE of them (delta method) of log(S). With R = 300
# the relative error of each side is about 0.08, so the bound admits a ratio within about [0.6 S, 1.6 S]; copies
# of one draw give a ratio of 1. Mean: per input coordinate a two-sample z statistic, Bonferroni over the
# coordinates at a family error rate ALPHA.
Z_VARIANCE, ALPHA = 4.0, 1e-3
LIBRARIES = ["foolbox", "art", "torchattacks"]
Gradient = Callable[[], torch.Tensor]


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, labels and fixed logit weights ``w`` (the module-level estimator's tested gradient is of ``w . out``)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(B, *SHAPE, generator=generator)
    return x, torch.arange(B), torch.randn(B, 10, generator=generator)


def _adapter_gradient(library: str, model: nn.Module, samples: int, x: torch.Tensor, y: torch.Tensor, w) -> Gradient:  # type: ignore[no-untyped-def]
    """One EoT gradient estimate per call, through the library's own gradient path where it has one.

    Foolbox and torchattacks differentiate the module-level average: the gradient of the fixed linear function
    ``w . EoT(x)`` is then the mean of per-draw gradients of ``w . f(x)`` (DESIGN.md, §C3); ART's
    ``loss_gradient`` is the mean of per-draw gradients of its cross-entropy.
    """
    if library == "foolbox":
        fmodel = to_foolbox(model, bounds=(0, 1), samples=samples)
        weights = ep.astensor(w)

        def foolbox_gradient() -> torch.Tensor:
            _, g = ep.value_and_grad(lambda z: (fmodel(z) * weights).sum(), ep.astensor(x))
            return g.raw

        return foolbox_gradient
    if library == "art":
        clf = to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=samples)
        return lambda: torch.from_numpy(clf.loss_gradient(x.numpy(), y.numpy()))
    eot = to_torchattacks(model, samples=samples).eval()

    def torchattacks_gradient() -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        return torch.autograd.grad((eot(xr) * w).sum(), xr)[0]

    return torchattacks_gradient


def _single_call_gradient(library: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, w) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The same gradient from one plain call of the bare model: one draw."""
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    target = F.cross_entropy(out, y) if library == "art" else (out * w).sum()
    return torch.autograd.grad(target, xr)[0]


def _total_variance(estimates: torch.Tensor) -> tuple[float, float]:
    """Trace of the covariance of ``R`` estimates ``(R, ...)`` and its standard error from the repetitions."""
    flat = estimates.reshape(len(estimates), -1).double()
    spread = ((flat - flat.mean(0)) ** 2).sum(1) * len(flat) / (len(flat) - 1)
    return float(spread.mean()), float(spread.std() / len(spread) ** 0.5)


@pytest.mark.parametrize("library", LIBRARIES)
def test_each_adapter_averages_real_draws_of_a_per_call_model(library: str, per_call_model: nn.Module) -> None:
    x, y, w = _data()
    torch.manual_seed(0)
    one, many = (_adapter_gradient(library, per_call_model, n, x, y, w) for n in (1, S))
    ones = torch.stack([one() for _ in range(R)])
    estimates = torch.stack([many() for _ in range(R)])
    singles = torch.stack([_single_call_gradient(library, per_call_model, x, y, w) for _ in range(R * S)])

    # the variance falls as 1/samples
    (t1, se1), (ts, ses) = _total_variance(ones), _total_variance(estimates)
    tolerance = Z_VARIANCE * math.hypot(se1 / t1, ses / ts)
    assert abs(math.log(t1 / ts) - math.log(S)) < tolerance, f"variance ratio {t1 / ts:.2f}, expected {S}"

    # the mean is the mean of separate single calls' gradients
    mean, reference = estimates.double().mean(0), singles.double().mean(0)
    se = torch.hypot(estimates.double().std(0) / R**0.5, singles.double().std(0) / (R * S) ** 0.5)
    floor = 1e-6 * (reference.abs() + 1e-6)  # float32 rounding where a coordinate does not vary
    z = ((mean - reference).abs() / (se + floor)).max()
    assert z < norm.isf(ALPHA / (2 * mean.numel())), f"largest z {float(z):.2f}"


def _separate_calls(model: nn.Module, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The mean of ``fn(model(x))`` over ``S`` separate calls, summed in call order as the estimators sum."""
    return reduce(torch.add, [fn(model(x)) for _ in range(S)]) / S


def test_the_eot_module_is_the_mean_of_separate_calls(per_call_model: nn.Module) -> None:
    x = _data()[0]
    for reduce_, fn in (("logits", lambda out: out), ("probs", lambda out: F.softmax(out, dim=-1))):
        torch.manual_seed(5)
        with torch.no_grad():
            ours = EoT(per_call_model, samples=S, reduce=reduce_)(x)  # type: ignore[arg-type]
        torch.manual_seed(5)  # the same draws: call k of the estimate is call k here
        with torch.no_grad():
            expected = _separate_calls(per_call_model, x, fn)
        torch.testing.assert_close(ours if reduce_ == "logits" else ours.exp(), expected)


def test_eot_gradient_is_the_mean_of_separate_calls_gradients(per_call_model: nn.Module) -> None:
    x, y, _ = _data()
    torch.manual_seed(6)
    ours = eot_gradient(per_call_model, x, y, samples=S)
    torch.manual_seed(6)

    def gradient(_: torch.Tensor) -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(per_call_model(xr), y, reduction="sum"), xr)[0]

    expected = reduce(torch.add, [gradient(x) for _ in range(S)]) / S
    torch.testing.assert_close(ours, expected)


def test_ensemble_accuracy_judges_the_mean_of_separate_calls(per_call_model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(2)
    x, y = torch.rand(40, *SHAPE, generator=generator), torch.randint(0, 10, (40,), generator=generator)
    torch.manual_seed(7)
    ours = ensemble_accuracy(per_call_model, x, y, samples=S)
    torch.manual_seed(7)
    with torch.no_grad():
        probs = _separate_calls(per_call_model, x, lambda out: F.softmax(out, dim=-1))
    assert ours == float((probs.argmax(1) == y).float().mean())


class Recorded(nn.Module):
    """The model, with the input of every call recorded (by a forward hook: a call through ``__call__``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []
        self.register_forward_hook(lambda module, args, out: self.inputs.append(args[0].detach().clone()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@pytest.mark.parametrize("max_batch", [2, 8])
def test_a_per_call_model_gets_one_call_per_draw_on_chunks_of_the_batch(
    per_call_model: nn.Module, max_batch: int
) -> None:
    x, y, _ = _data()
    for estimate in (
        lambda m: EoT(m, samples=S, max_batch=max_batch)(x),
        lambda m: eot_gradient(m, x, y, samples=S, max_batch=max_batch),
    ):
        model = Recorded(per_call_model)
        estimate(model)
        chunks = [x[i : i + max_batch] for i in range(0, B, max_batch)]
        expected = [chunk for chunk in chunks for _ in range(S)]  # per chunk of rows, S calls: no replication
        assert len(model.inputs) == len(expected)
        assert all(torch.equal(got, want) for got, want in zip(model.inputs, expected, strict=True))
