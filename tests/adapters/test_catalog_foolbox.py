"""Every attack of Foolbox's catalog (``foolbox.attacks``) through ``to_foolbox``, against ``fb.PyTorchModel``.

With ``samples=1`` on a deterministic model each attack must return exactly what it returns on Foolbox's own
wrapper of the bare model, bit for bit, from the same seeds; with ``samples > 1`` on a randomized model it
must run, move the input (``_check_adversarial``) and not raise the ensemble's accuracy. An attack that fails
on Foolbox's own wrapper too is in ``KNOWN_FAILURES`` with Foolbox's error, and the test checks that it still
fails there and fails the same way through the adapter; one whose constructor fails (before any model is given
to it) is in ``CONSTRUCTOR_FAILURES``, and the test checks that the constructor raises that error. Few images,
few steps: the whole file runs in seconds.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
from collections.abc import Callable
from typing import Any

import foolbox as fb
import numpy as np
import pytest
import torch
from foolbox.attacks.base import Attack, MinimizationAttack
from torch import nn

from stochdef.adapters import ensemble_accuracy, eot_of, to_foolbox

N, SAMPLES, JUDGE = 12, 4, 64
# the repeated-noise attacks return the input where no draw is adversarial: enough draws to break some example
REPEATS = 30
MOVED = 1 / 255  # at samples > 1 every attack moves some pixel of the batch by one grey level of an 8-bit image
EPSILONS = {float("inf"): 0.2, 2.0: 1.5, 1.0: 6.0}  # the budget of a fixed-epsilon attack, by its norm
A = fb.attacks
# The randomized models of the samples > 1 runs, by how they draw: noise per row, Xie et al.'s resize-and-pad per call.
DRAWS = {"per-row": "noisy_digits_mlp", "per-call": "per_call_digits_model"}


def _init() -> MinimizationAttack:
    return A.LinearSearchBlendedUniformNoiseAttack(directions=200, steps=20)


class Binarized(nn.Module):
    """The model on its inputs binarized at 0.5: what BinarizationRefinementAttack refines adversarials for."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x > 0.5).to(x.dtype))


ATTACKS: dict[type[Attack], Callable[[], Attack]] = {
    A.LinfAdamProjectedGradientDescentAttack: lambda: A.LinfAdamPGD(steps=3),
    A.BinarizationRefinementAttack: lambda: A.BinarizationRefinementAttack(threshold=0.5, included_in="lower"),
    A.BinarySearchContrastReductionAttack: lambda: A.BinarySearchContrastReductionAttack(binary_search_steps=5),
    A.BoundaryAttack: lambda: A.BoundaryAttack(init_attack=_init(), steps=3),
    A.DDNAttack: lambda: A.DDNAttack(steps=5),
    A.DatasetAttack: lambda: A.DatasetAttack(),
    A.EADAttack: lambda: A.EADAttack(binary_search_steps=2, steps=5),
    A.L2FastGradientAttack: lambda: A.FGM(),
    A.LinfFastGradientAttack: lambda: A.FGSM(),
    A.GaussianBlurAttack: lambda: A.GaussianBlurAttack(steps=10),
    A.GenAttack: lambda: A.GenAttack(steps=3, population=6),
    A.HopSkipJumpAttack: lambda: A.HopSkipJumpAttack(
        init_attack=_init(), steps=2, initial_gradient_eval_steps=5, max_gradient_eval_steps=10
    ),
    A.InversionAttack: lambda: A.InversionAttack(),
    A.L0BrendelBethgeAttack: lambda: A.L0BrendelBethgeAttack(init_attack=_init(), steps=3),
    A.L0FMNAttack: lambda: A.L0FMNAttack(steps=5),
    A.L1AdamBasicIterativeAttack: lambda: A.L1AdamBasicIterativeAttack(steps=3),
    A.L1AdamProjectedGradientDescentAttack: lambda: A.L1AdamPGD(steps=3),
    A.L1BasicIterativeAttack: lambda: A.L1BasicIterativeAttack(steps=3),
    A.L1BrendelBethgeAttack: lambda: A.L1BrendelBethgeAttack(init_attack=_init(), steps=3),
    A.L1FMNAttack: lambda: A.L1FMNAttack(steps=5),
    A.L1FastGradientAttack: lambda: A.L1FastGradientAttack(),
    A.L1MomentumIterativeFastGradientMethod: lambda: A.L1MomentumIterativeFastGradientMethod(steps=3),
    A.L1ProjectedGradientDescentAttack: lambda: A.L1PGD(steps=3),
    A.L2AdamBasicIterativeAttack: lambda: A.L2AdamBasicIterativeAttack(steps=3),
    A.L2AdamProjectedGradientDescentAttack: lambda: A.L2AdamPGD(steps=3),
    A.L2AdditiveGaussianNoiseAttack: lambda: A.L2AdditiveGaussianNoiseAttack(),
    A.L2AdditiveUniformNoiseAttack: lambda: A.L2AdditiveUniformNoiseAttack(),
    A.L2BasicIterativeAttack: lambda: A.L2BasicIterativeAttack(steps=3),
    A.L2BrendelBethgeAttack: lambda: A.L2BrendelBethgeAttack(init_attack=_init(), steps=3),
    A.L2CarliniWagnerAttack: lambda: A.L2CarliniWagnerAttack(binary_search_steps=2, steps=5),
    A.L2ClippingAwareAdditiveGaussianNoiseAttack: lambda: A.L2ClippingAwareAdditiveGaussianNoiseAttack(),
    A.L2ClippingAwareAdditiveUniformNoiseAttack: lambda: A.L2ClippingAwareAdditiveUniformNoiseAttack(),
    A.L2ClippingAwareRepeatedAdditiveGaussianNoiseAttack: lambda: A.L2ClippingAwareRepeatedAdditiveGaussianNoiseAttack(
        repeats=REPEATS
    ),
    A.L2ClippingAwareRepeatedAdditiveUniformNoiseAttack: lambda: A.L2ClippingAwareRepeatedAdditiveUniformNoiseAttack(
        repeats=REPEATS
    ),
    A.L2ContrastReductionAttack: lambda: A.L2ContrastReductionAttack(),
    A.L2DeepFoolAttack: lambda: A.L2DeepFoolAttack(steps=3),
    A.L2FMNAttack: lambda: A.L2FMNAttack(steps=5),
    A.L2MomentumIterativeFastGradientMethod: lambda: A.L2MomentumIterativeFastGradientMethod(steps=3),
    A.L2ProjectedGradientDescentAttack: lambda: A.L2PGD(steps=3),
    A.L2RepeatedAdditiveGaussianNoiseAttack: lambda: A.L2RepeatedAdditiveGaussianNoiseAttack(repeats=REPEATS),
    A.L2RepeatedAdditiveUniformNoiseAttack: lambda: A.L2RepeatedAdditiveUniformNoiseAttack(repeats=REPEATS),
    A.LInfFMNAttack: lambda: A.LInfFMNAttack(steps=5),
    A.LinearSearchBlendedUniformNoiseAttack: _init,
    A.LinearSearchContrastReductionAttack: lambda: A.LinearSearchContrastReductionAttack(steps=10),
    A.LinfAdamBasicIterativeAttack: lambda: A.LinfAdamBasicIterativeAttack(steps=3),
    A.LinfAdditiveUniformNoiseAttack: lambda: A.LinfAdditiveUniformNoiseAttack(),
    A.LinfBasicIterativeAttack: lambda: A.LinfBasicIterativeAttack(steps=3),
    A.LinfDeepFoolAttack: lambda: A.LinfDeepFoolAttack(steps=3),
    A.LinfMomentumIterativeFastGradientMethod: lambda: A.MIFGSM(steps=3),
    A.LinfProjectedGradientDescentAttack: lambda: A.PGD(steps=3),
    A.LinfRepeatedAdditiveUniformNoiseAttack: lambda: A.LinfRepeatedAdditiveUniformNoiseAttack(repeats=REPEATS),
    A.LinfinityBrendelBethgeAttack: lambda: A.LinfinityBrendelBethgeAttack(init_attack=_init(), steps=3),
    A.NewtonFoolAttack: lambda: A.NewtonFoolAttack(steps=3),
    A.PointwiseAttack: lambda: A.PointwiseAttack(init_attack=A.SaltAndPepperNoiseAttack(steps=200)),
    A.SaltAndPepperNoiseAttack: lambda: A.SaltAndPepperNoiseAttack(steps=20),
    A.SparseL1DescentAttack: lambda: A.SparseL1DescentAttack(steps=3),
    A.SpatialAttack: lambda: A.SpatialAttack(max_translation=2, max_rotation=10, num_translations=3, num_rotations=3),
    A.VirtualAdversarialAttack: lambda: A.VirtualAdversarialAttack(steps=2),
}
NAMES = {cls.__name__: cls for cls in ATTACKS}

# attack -> Foolbox's error on its own wrapper of the bare model (the attack fails the same way through the adapter)
KNOWN_FAILURES: dict[str, str] = {}
# attack -> the error its constructor raises: Foolbox imports numba (which it does not declare) in the Brendel-
# Bethge attacks' constructor, so without numba they fail before any model, bare or adapted, is given to them.
CONSTRUCTOR_FAILURES: dict[str, str] = {}
if importlib.util.find_spec("numba") is None:
    for _name in ("L0", "L1", "L2", "Linfinity"):
        CONSTRUCTOR_FAILURES[f"{_name}BrendelBethgeAttack"] = "No module named 'numba'"
# attack -> Foolbox's error on its own wrapper of the randomized model: decision-based attacks that assume the
# model answers the same twice (an initial adversarial found, then re-checked and not adversarial). The
# adapter's average over a few draws does not make the decision deterministic, so they fail through it too.
RANDOM_FAILURES: dict[str, str] = {
    "BinarizationRefinementAttack": "The specified threshold does not match what is done by the model",
    "BoundaryAttack": "init_attack failed for",
    "HopSkipJumpAttack": "init_attack failed for",
    "PointwiseAttack": "",  # Foolbox's `assert is_adversarial(x_adv).all()` on the starting points
}


def test_the_catalog_is_covered() -> None:
    catalog = {c for _, c in inspect.getmembers(A, inspect.isclass) if issubclass(c, Attack) and c is not Attack}
    assert set(ATTACKS) == catalog


# draws -> attacks of RANDOM_FAILURES that run through the adapter: the average over SAMPLES calls of the per-call
# model makes the binarized decision steady enough for Foolbox's threshold check (one call of it fails the check).
STEADIED = {"per-call": {"BinarizationRefinementAttack"}}


def _ours(model: nn.Module) -> fb.PyTorchModel:
    return to_foolbox(model, bounds=(0, 1), samples=SAMPLES)


def _model(name: str, model: nn.Module) -> nn.Module:
    return Binarized(model).eval() if name == "BinarizationRefinementAttack" else model


def _attack(name: str, fmodel: fb.PyTorchModel, x: torch.Tensor, y: torch.Tensor, digits) -> Any:  # type: ignore[no-untyped-def]
    """Run the attack from fixed seeds; returns (clipped adversarials, success) or what the attack returns."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    attack = ATTACKS[NAMES[name]]()
    criterion: Any = fb.criteria.Misclassification(y)
    kwargs: dict[str, Any] = {}
    if isinstance(attack, A.GenAttack):  # targeted only
        criterion = fb.criteria.TargetedMisclassification((y + 1) % 10)
    if isinstance(attack, A.DatasetAttack):  # draws its adversarials from a dataset fed to it first
        attack.feed(fmodel, digits.x_train[:64])
    if isinstance(attack, A.BinarizationRefinementAttack):  # refines given adversarials
        kwargs["starting_points"] = _init()(fmodel, x, criterion, epsilons=None)[1]
    if isinstance(attack, MinimizationAttack) or not hasattr(attack, "distance"):
        epsilons = None
    else:
        epsilons = EPSILONS[float(attack.distance.p)]
    if isinstance(attack, A.SpatialAttack):
        return attack(fmodel, x, criterion, **kwargs)[1:]
    return attack(fmodel, x, criterion, epsilons=epsilons, **kwargs)[1:]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_samples_1_is_foolboxs_own_wrapper_bit_for_bit(name: str, plain_digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:N], digits.y_test[:N]
    model = _model(name, plain_digits_mlp)
    if name in CONSTRUCTOR_FAILURES:  # no model reaches the attack: the adapter is not involved
        with pytest.raises(ModuleNotFoundError, match=CONSTRUCTOR_FAILURES[name]):
            ATTACKS[NAMES[name]]()
        return
    bare = fb.PyTorchModel(model, bounds=(0, 1))
    ours = to_foolbox(model, bounds=(0, 1), samples=1)
    if name in KNOWN_FAILURES:
        for fmodel in (bare, ours):
            with pytest.raises(Exception, match=KNOWN_FAILURES[name]):
                _attack(name, fmodel, x, y, digits)
        return
    (adv_bare, success_bare), (adv_ours, success_ours) = (_attack(name, m, x, y, digits) for m in (bare, ours))
    assert adv_bare.shape == x.shape
    assert torch.equal(adv_ours, adv_bare) and torch.equal(success_ours, success_bare)


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name", sorted(set(NAMES) - set(KNOWN_FAILURES) - set(CONSTRUCTOR_FAILURES)))
def test_samples_above_1_runs_and_does_not_raise_accuracy(name: str, draws: str, request, digits) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:N], digits.y_test[:N]
    model = _model(name, request.getfixturevalue(DRAWS[draws]))
    if name in RANDOM_FAILURES:
        error = AssertionError if name == "PointwiseAttack" else ValueError
        steadied = name in STEADIED.get(draws, set())
        for fmodel in [fb.PyTorchModel(model, bounds=(0, 1))] + ([] if steadied else [_ours(model)]):
            with pytest.raises(error, match=RANDOM_FAILURES[name]):
                _attack(name, fmodel, x, y, digits)
        if not steadied:
            return
    fmodel = _ours(model)
    adv, _ = _attack(name, fmodel, x, y, digits)
    assert eot_of(fmodel).draws in (None, draws)  # None: an attack that never queried the model
    _check_adversarial(name, model, x, y, adv)


def _check_adversarial(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor) -> None:
    """``adv`` is finite, of ``x``'s shape, perturbed, and does not raise the ensemble's accuracy under the same
    draws."""
    assert adv.shape == x.shape and bool(torch.isfinite(adv).all())
    moved = float((adv - x).abs().max())
    # an attack that returned its input would pass the accuracy check below: at least one grey level moved
    assert moved >= MOVED, f"{name} returned its input (largest change {moved:.2g})"
    torch.manual_seed(1)
    clean = ensemble_accuracy(model, x, y, samples=JUDGE)
    torch.manual_seed(1)  # the same draws judge both
    assert ensemble_accuracy(model, adv, y, samples=JUDGE) <= clean
