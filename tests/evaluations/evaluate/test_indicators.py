"""Each indicator fires on a constructed case and stays quiet on a clean one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate import indicators as ind


def _quiet(indicator: ind.Indicator) -> None:
    assert not indicator.fired, indicator


def test_randomized_fires_on_a_noisy_model_only(
    noisy_digits_mlp: nn.Module, plain_digits_mlp: nn.Module, digits
) -> None:
    x, y = digits.x_test[:64], digits.y_test[:64]
    with pytest.warns(ind.ObfuscationWarning, match="randomized"):
        assert ind.check_randomized(noisy_digits_mlp, x, y).fired
    _quiet(ind.check_randomized(plain_digits_mlp, x, y))


def test_zero_and_unavailable_gradients() -> None:
    grad = torch.randn(4, 3)
    _quiet(ind.check_zero_gradients(grad))
    _quiet(ind.unavailable_gradients(grad))
    grad[2] = 0.0
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.check_zero_gradients(grad).value == pytest.approx(0.25)
    grad[2] = float("nan")
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.unavailable_gradients(grad).fired
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.unavailable_gradients(None).fired


def test_silent_success() -> None:
    path = torch.tensor([[False, False], [True, False], [False, False]])
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.silent_success(path, torch.tensor([False, False])).value == 0.5
    _quiet(ind.silent_success(path, torch.tensor([True, False])))


def test_incomplete_optimization() -> None:
    steps = torch.arange(20, dtype=torch.float64)[:, None]
    still_rising = steps.repeat(1, 3)  # the attack objective grows linearly to the end
    converged = torch.cat([steps[:8], torch.full((12, 1), 7.0)]).repeat(1, 3)
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.incomplete_optimization(still_rising).value == 1.0
    _quiet(ind.incomplete_optimization(converged))
    _quiet(ind.incomplete_optimization(torch.zeros(20, 3)))  # constant loss: nothing to converge


def test_transfer_and_unconstrained_failures() -> None:
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.transfer_failure(torch.tensor([True, True]), torch.tensor([True, False])).value == 0.5
    _quiet(ind.transfer_failure(torch.tensor([True, False]), torch.tensor([True, False])))
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.unconstrained_attack_failure(0.4).fired
    _quiet(ind.unconstrained_attack_failure(0.0))
    with pytest.raises(ValueError, match="tol"):
        ind.unconstrained_attack_failure(0.1, tol=2.0)


def test_unstable_predictions_fires_for_a_single_draw_of_a_noisy_model(
    noisy_digits_mlp: nn.Module, plain_digits_mlp: nn.Module, digits
) -> None:
    torch.manual_seed(0)
    x, y = digits.x_test[:64], digits.y_test[:64]
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.unstable_predictions(ind.per_example_loss(noisy_digits_mlp, y), x, radius=0.05).fired
    _quiet(ind.unstable_predictions(ind.per_example_loss(plain_digits_mlp, y), x, radius=0.05))


def test_carlini_checks() -> None:
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.iterative_beats_single_step(acc_single=0.2, acc_iterative=0.5, slack=0.1).fired
    _quiet(ind.iterative_beats_single_step(acc_single=0.5, acc_iterative=0.2))
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.accuracy_monotone_in_eps({0.1: 0.3, 0.2: 0.6, 0.3: 0.1}).value == pytest.approx(0.3)
    _quiet(ind.accuracy_monotone_in_eps({0.3: 0.1, 0.1: 0.5, 0.2: 0.3}))
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.whitebox_beats_transfer_and_noise(0.6, 0.3, 0.9).fired
    _quiet(ind.whitebox_beats_transfer_and_noise(0.1, 0.3, 0.9))
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.more_steps_change_little(0.6, 0.2, tol=0.05).fired
    _quiet(ind.more_steps_change_little(0.21, 0.2, tol=0.05))
    with pytest.warns(ind.ObfuscationWarning):
        assert ind.fixed_randomness_attack_succeeds(0.7, 0.0).fired
    _quiet(ind.fixed_randomness_attack_succeeds(0.02, 0.0))
