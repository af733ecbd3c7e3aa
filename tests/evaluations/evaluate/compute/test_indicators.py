"""Each indicator fires on a constructed case and stays quiet on a clean one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochdef.evaluations.evaluate.compute import indicators as ind


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


# ---- wording: a quiet indicator says so; a warning names the defense and the check it comes from ------------


def test_quiet_indicators_do_not_read_as_fired(plain_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:64], digits.y_test[:64]
    randomized = ind.check_randomized(plain_digits_mlp, x, y)
    assert not randomized.fired and "agree" in randomized.detail and "differ" not in randomized.detail
    falling = ind.accuracy_monotone_in_eps({0.1: 0.6, 0.2: 0.3, 0.3: 0.0})
    assert falling.value == pytest.approx(-0.3) and "never rises" in falling.detail and "-0.3" not in falling.detail
    small_rise = ind.accuracy_monotone_in_eps({0.1: 0.30, 0.2: 0.32}, slack=0.1)
    assert not small_rise.fired and "within the slack" in small_rise.detail
    rise = ind.more_steps_change_little(0.55, 0.60, tol=0.05)
    assert not rise.fired and "lowers" not in rise.detail and "no drop" in rise.detail
    zero = ind.check_zero_gradients(torch.ones(5, 3))
    assert zero.detail.startswith("none of 5 points")
    pgd_stronger = ind.iterative_beats_single_step(acc_single=0.5, acc_iterative=0.2)
    assert "at least as strong" in pgd_stronger.detail


def test_fired_details_say_what_was_seen() -> None:
    with pytest.warns(ind.ObfuscationWarning):
        fired = ind.more_steps_change_little(0.6, 0.2, tol=0.05)
    assert "lowers accuracy from 0.600 to 0.200" in fired.detail and "not converged" in fired.detail
    with pytest.warns(ind.ObfuscationWarning):
        rises = ind.accuracy_monotone_in_eps({0.1: 0.3, 0.2: 0.6})
    assert "rises by up to 0.300" in rises.detail


def test_warnings_name_the_defense_and_the_check(noisy_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:64], digits.y_test[:64]
    with ind.about("noise-mlp"), pytest.warns(ind.ObfuscationWarning) as caught:
        ind.check_randomized(noisy_digits_mlp, x, y)
    message = str(caught[0].message)
    assert message.startswith("noise-mlp: outputs differ across 5 passes")
    assert message.endswith("(randomized, after AutoAttack's check)")
    assert "[AutoAttack]" not in message
    with pytest.warns(ind.ObfuscationWarning) as caught:  # outside ``about``: no name, same check
        ind.unconstrained_attack_failure(0.5)
    assert str(caught[0].message).startswith("accuracy 0.500 under an unbounded attack")
