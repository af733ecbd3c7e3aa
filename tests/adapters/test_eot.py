"""The EoT engine against independent references: plain autograd, brute-force loops, exact row maps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochdef.adapters import (
    EoT,
    ensemble_accuracy,
    eot_gradient,
    eot_value_and_grad,
    expectation,
    fix_randomness,
    is_random,
    log_mean_softmax,
    margin,
    plan,
)
from stochdef.defenses.noise import NoiseInjection
from stochdef.defenses.training import accuracy


class RowNoise(nn.Module):
    """Adds a known noise vector to each row by position, so every draw is known exactly."""

    def __init__(self, noise: torch.Tensor, head: nn.Module) -> None:
        super().__init__()
        self.register_buffer("noise", noise)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(x.flatten(1) + self.noise[: x.shape[0]]))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize(("batch", "samples", "max_batch"), [(3, 5, 6), (5, 2, 3), (7, 1, 100), (4, 9, 1), (10, 4, 25)])
def test_plan_covers_every_row_and_draw_once(batch: int, samples: int, max_batch: int) -> None:
    counts = torch.zeros(batch, dtype=torch.long)
    for rows, calls in plan(batch, samples, max_batch):
        assert all(c * (rows.stop - rows.start) <= max(max_batch, rows.stop - rows.start) for c in calls)
        counts[rows] += sum(calls)
    assert torch.equal(counts, torch.full((batch,), samples))


def test_samples_one_is_the_model_itself(plain_digits_mlp: nn.Module, digits, device: str) -> None:
    model = plain_digits_mlp.to(device)
    x = digits.x_test[:50].to(device)
    assert torch.equal(EoT(model, samples=1)(x), model(x))


def test_eot_gradient_samples_one_equals_autograd(plain_digits_mlp: nn.Module, digits, device: str) -> None:
    model = plain_digits_mlp.to(device)
    x, y = digits.x_test[:50].to(device), digits.y_test[:50].to(device)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    assert torch.equal(eot_gradient(model, x, y, samples=1), expected)


def test_eot_gradient_is_the_mean_of_per_draw_gradients() -> None:
    torch.manual_seed(1)
    batch, samples, dim = 4, 6, 5
    noise = torch.randn(batch * samples, dim)
    model = RowNoise(noise, nn.Linear(dim, 3))
    x, y = torch.rand(batch, dim), torch.tensor([0, 1, 2, 1])
    # Draw s of example i sees noise[s * batch + i] (sample-major replication).
    expected = torch.zeros_like(x)
    for s in range(samples):
        xs = x.clone().requires_grad_(True)
        single = RowNoise(noise[s * batch : (s + 1) * batch], model.head)
        (g,) = torch.autograd.grad(F.cross_entropy(single(xs), y, reduction="sum"), xs)
        expected += g / samples
    torch.testing.assert_close(eot_gradient(model, x, y, samples=samples), expected, rtol=1e-5, atol=1e-7)
    # ... which is not the gradient of the loss of the mean output.
    xm = x.clone().requires_grad_(True)
    (of_mean,) = torch.autograd.grad(F.cross_entropy(EoT(model, samples=samples)(xm), y, reduction="sum"), xm)
    assert not torch.allclose(of_mean, expected, atol=1e-4)


def test_log_mean_softmax_matches_brute_force() -> None:
    torch.manual_seed(2)
    batch, samples = 3, 7
    model = RowNoise(5 * torch.randn(batch * samples, 4), nn.Linear(4, 5))
    x = torch.rand(batch, 4)
    probs = torch.stack(
        [F.softmax(RowNoise(model.noise[s * batch : (s + 1) * batch], model.head)(x), -1) for s in range(samples)]
    )
    torch.testing.assert_close(log_mean_softmax(model, x, samples=samples), probs.mean(0).log())
    torch.testing.assert_close(EoT(model, samples=samples, reduce="probs")(x).exp().sum(1), torch.ones(batch))


@pytest.mark.parametrize("max_batch", [1, 7, 64, 10_000])
def test_chunking_changes_nothing_on_a_deterministic_model(plain_digits_mlp: nn.Module, digits, max_batch: int) -> None:
    x, y = digits.x_test[:20], digits.y_test[:20]
    ref_value, ref_grad = eot_value_and_grad(plain_digits_mlp, x, y, samples=5)
    value, grad = eot_value_and_grad(plain_digits_mlp, x, y, samples=5, max_batch=max_batch)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(EoT(plain_digits_mlp, samples=5, max_batch=max_batch)(x), plain_digits_mlp(x))


def test_eot_gradient_converges(noisy_digits_mlp: nn.Module, digits, device: str) -> None:
    """Two independent large-sample estimates agree, and agree with a brute-force loop of single draws."""
    model = noisy_digits_mlp.to(device)
    torch.manual_seed(3)
    x, y = digits.x_test[:16].to(device), digits.y_test[:16].to(device)
    samples = 4000
    first = eot_gradient(model, x, y, samples=samples)
    second = eot_gradient(model, x, y, samples=samples, max_batch=997)
    loop = torch.zeros_like(x)
    for _ in range(samples):
        xs = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xs), y, reduction="sum"), xs)
        loop += g / samples
    assert _cosine(first, second) >= 0.995
    assert _cosine(first, loop) >= 0.995
    # A single draw is a much noisier estimate: averaging is what buys the agreement.
    assert _cosine(eot_gradient(model, x, y, samples=1), loop) < _cosine(first, loop) - 0.03


def test_eot_output_is_the_mean_over_draws(noisy_digits_mlp: nn.Module, digits) -> None:
    """Mean logits over S draws match a brute-force mean within 5 standard errors."""
    torch.manual_seed(4)
    x = digits.x_test[:8]
    samples = 2000
    with torch.no_grad():
        draws = torch.stack([noisy_digits_mlp(x) for _ in range(samples)])
        eot = EoT(noisy_digits_mlp, samples=samples)(x)
    stderr = draws.std(0) * math.sqrt(2.0 / samples)  # of the difference of two independent means
    assert bool(((eot - draws.mean(0)).abs() <= 5 * stderr + 1e-6).all())


def test_rows_are_independent_draws_and_random_in_eval(noisy_digits_mlp: nn.Module, digits) -> None:
    model = EoT(noisy_digits_mlp, samples=3).eval()
    x = digits.x_test[:1].repeat(4, 1, 1, 1)
    out = model(x)
    assert not torch.equal(out[0], out[1])
    assert is_random(model, x)
    assert not is_random(fix_randomness(model, seed=5), x)


def test_seed_makes_a_run_repeat(noisy_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:10], digits.y_test[:10]
    torch.manual_seed(6)
    a = eot_gradient(noisy_digits_mlp, x, y, samples=12)
    torch.manual_seed(6)
    assert torch.equal(a, eot_gradient(noisy_digits_mlp, x, y, samples=12))


def test_margin_and_callable_losses(plain_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:10], digits.y_test[:10]
    logits = plain_digits_mlp(x)
    top2 = logits.topk(2, dim=1).values
    correct = logits.argmax(1) == y
    expected = torch.where(correct, top2[:, 1] - top2[:, 0], top2[:, 0] - logits.gather(1, y[:, None]).squeeze(1))
    torch.testing.assert_close(margin(logits, y), expected)
    value, _ = eot_value_and_grad(plain_digits_mlp, x, y, samples=2, loss=lambda z, t: -z.gather(1, t[:, None])[:, 0])
    torch.testing.assert_close(value, -logits.gather(1, y[:, None])[:, 0])
    with pytest.raises(ValueError, match="one value per example"):
        eot_gradient(plain_digits_mlp, x, y, samples=2, loss=lambda z, t: z.sum())


def test_expectation_with_transform(plain_digits_mlp: nn.Module, digits) -> None:
    x = digits.x_test[:5]
    probs = expectation(plain_digits_mlp, x, samples=3, transform=lambda z: F.softmax(z, -1))
    torch.testing.assert_close(probs, F.softmax(plain_digits_mlp(x), -1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"samples": 0}, ValueError, "samples"),
        ({"samples": 1.5}, TypeError, "samples"),
        ({"samples": 2, "reduce": "mean"}, ValueError, "reduce"),
        ({"samples": 2, "max_batch": 0}, ValueError, "max_batch"),
        ({"samples": 2, "bounds": (1.0, 0.0)}, ValueError, "bounds"),
    ],
)
def test_bad_configuration_raises(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EoT(nn.Linear(2, 2), **kwargs)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.tensor([[0.5, float("nan")]]), "non-finite"),
        (torch.tensor([[0.5, float("inf")]]), "non-finite"),
        (torch.tensor([[0.5, 1.5]]), "bounds"),
        (torch.tensor([[-0.1, 0.5]]), "bounds"),
        (torch.tensor([0.5, 0.5]), "rank"),
        (torch.tensor([[1, 0]]), "floating"),
        (torch.rand(2, 3), "shape"),
    ],
)
def test_bad_input_raises(x: torch.Tensor, match: str) -> None:
    eot = EoT(nn.Linear(2, 2), samples=2, bounds=(0.0, 1.0), input_shape=(2,))
    with pytest.raises((ValueError, TypeError), match=match):
        eot(x)


def test_bad_gradient_arguments_raise(plain_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:4], digits.y_test[:4]
    with pytest.raises(ValueError, match="samples"):
        eot_gradient(plain_digits_mlp, x, y, samples=0)
    with pytest.raises(ValueError, match="y must have shape"):
        eot_gradient(plain_digits_mlp, x, y[:3], samples=2)
    with pytest.raises(ValueError, match="loss"):
        eot_gradient(plain_digits_mlp, x, y, samples=2, loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        eot_gradient(plain_digits_mlp, x * float("nan"), y, samples=2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bounds": ("a", 1.0)}, TypeError, "bounds must hold two real numbers"),
        ({"bounds": (None, 1.0)}, TypeError, "bounds must hold two real numbers"),
        ({"input_shape": 2}, TypeError, "input_shape"),
        ({"input_shape": (0,)}, ValueError, "input_shape"),
        ({"input_shape": (2.0,)}, ValueError, "input_shape"),
    ],
)
def test_bad_bounds_and_shapes_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EoT(nn.Linear(2, 2), samples=2, **kwargs)


def test_bounds_as_a_numpy_pair() -> None:
    np = pytest.importorskip("numpy")
    assert EoT(nn.Linear(2, 2), samples=2, bounds=np.array([0.0, 1.0])).bounds == (0.0, 1.0)


def test_input_of_another_dtype_or_device_than_the_model_raises() -> None:
    with pytest.raises(TypeError, match="x must have the model's dtype torch.float32, got torch.float64"):
        EoT(nn.Linear(2, 2), samples=2)(torch.rand(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must be on the model's device meta"):
        EoT(nn.Linear(2, 2, device="meta"), samples=2)(torch.rand(3, 2))
    with pytest.raises(TypeError, match="x must have the model's dtype"):
        eot_gradient(nn.Linear(2, 2), torch.rand(3, 2, dtype=torch.float64), torch.tensor([0, 1, 0]), samples=2)


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_labels_are_checked_against_the_model_output(loss: str) -> None:
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"y must be < 3 \(the number of classes\), got 3"):
        eot_gradient(nn.Linear(4, 3), x, torch.tensor([0, 3, 1]), samples=2, loss=loss)  # type: ignore[arg-type]
    # int32/uint8 labels break cross_entropy or gather further down: refused up front, never cast.
    for dtype in (torch.int32, torch.uint8):
        with pytest.raises(TypeError, match="y must hold int64"):
            eot_gradient(nn.Linear(4, 3), x, torch.tensor([0, 2, 1], dtype=dtype), samples=2, loss=loss)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y must be on cpu"):
        eot_gradient(nn.Linear(4, 3), x, torch.zeros(3, dtype=torch.long, device="meta"), samples=2)


def test_an_empty_batch_gives_empty_results() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x = torch.rand(0, 4)
    for reduce in ("logits", "probs"):
        out = EoT(net, samples=5, reduce=reduce)(x)  # type: ignore[arg-type]
        assert out.shape == (0, 3) and out.dtype == torch.float32
    value, grad = eot_value_and_grad(net, x, torch.zeros(0, dtype=torch.long), samples=5)
    assert value.shape == (0,) and grad.shape == (0, 4)


def test_ensemble_accuracy_is_the_mean_softmax_vote() -> None:
    """Against a brute-force loop: the argmax of the softmax averaged over draws, compared with the labels."""
    torch.manual_seed(0)
    model = nn.Sequential(NoiseInjection(std=0.5), nn.Linear(6, 4)).eval()
    x, y = torch.rand(50, 6), torch.randint(0, 4, (50,))
    torch.manual_seed(1)
    got = ensemble_accuracy(model, x, y, samples=8, max_batch=50)  # chunks of one draw each: the loop's order
    torch.manual_seed(1)
    with torch.no_grad():
        probs = sum(torch.softmax(model(x), dim=1) for _ in range(8))
    assert got == float((probs.argmax(1) == y).float().mean())
    plain = nn.Linear(6, 4).eval()
    assert ensemble_accuracy(plain, x, y, samples=1) == pytest.approx(accuracy(plain, x, y), abs=1e-6)  # float32 mean
    with pytest.raises(ValueError, match="samples"):
        ensemble_accuracy(plain, x, y, samples=0)
