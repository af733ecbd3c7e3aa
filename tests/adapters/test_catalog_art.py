"""ART's evasion attacks for a gradient-bearing image classifier through ``to_art``, against ``PyTorchClassifier``.

The catalog: every evasion attack in ``art.attacks.evasion`` whose estimator requirements a plain
``PyTorchClassifier`` meets, less those made for another kind of model (``NOT_APPLICABLE``, with the kind).
With ``samples=1`` on a deterministic model each attack on the default ``to_art`` classifier must return
exactly what it returns on ART's own ``PyTorchClassifier`` of the bare model, from the same seeds; with
``samples > 1`` on a randomized model it must run, move the input (``_check_adversarial``) and not raise the
ensemble's accuracy. An attack that fails on ART's own wrapper too is in ``KNOWN_FAILURES`` with ART's error,
and the test checks that it still fails there and fails the same way through the adapter; one whose
constructor fails on ART's own wrapper (before it can call any classifier) is in ``CONSTRUCTOR_FAILURES``, and
the test checks that the constructor raises that error. Few images, few steps.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
from collections.abc import Callable
from typing import Any

import art.attacks.evasion as E
import numpy as np
import pytest
import torch
from art.attacks.attack import EvasionAttack
from art.estimators.classification import PyTorchClassifier
from torch import nn

from stochdef.adapters import ensemble_accuracy, eot_of, to_art

N, EPS, STEP, ITER, SAMPLES, JUDGE = 12, 0.2, 0.05, 3, 4, 64
SHAPE = (1, 8, 8)
MOVED = 1 / 255  # at samples > 1 every attack moves some pixel of the batch by one grey level of an 8-bit image
PGD = {"eps": EPS, "eps_step": STEP, "max_iter": ITER, "verbose": False}
APGD = {**PGD, "nb_random_init": 1, "batch_size": N}
# the optimization attacks (Carlini-Wagner, EAD, ZOO) return the input where they find no adversarial: a budget
# with which they break most of the batch, so that one returning its input is caught (_check_adversarial)
CW = {"max_iter": 10, "initial_const": 10.0, "learning_rate": 0.1}
Make = Callable[[PyTorchClassifier], EvasionAttack]


def _auto_attack(clf: PyTorchClassifier) -> EvasionAttack:
    attacks = [
        E.AutoProjectedGradientDescent(clf, **APGD, loss_type="cross_entropy"),
        E.AutoProjectedGradientDescent(clf, **APGD, loss_type="difference_logits_ratio"),
        E.DeepFool(clf, max_iter=ITER, batch_size=N, verbose=False),
        E.SquareAttack(clf, eps=EPS, max_iter=5, verbose=False),
    ]
    return E.AutoAttack(clf, eps=EPS, eps_step=STEP, attacks=attacks, batch_size=N)


ATTACKS: dict[str, Make] = {
    "AdversarialPatch": lambda c: E.AdversarialPatch(c, max_iter=2, batch_size=N, patch_shape=SHAPE, verbose=False),
    "AdversarialPatchNumpy": lambda c: E.AdversarialPatchNumpy(c, max_iter=2, batch_size=N, verbose=False),
    "AdversarialPatchPyTorch": lambda c: E.AdversarialPatchPyTorch(
        c, max_iter=2, batch_size=N, patch_shape=(1, 4, 4), verbose=False
    ),
    "AutoAttack": _auto_attack,
    "AutoConjugateGradient": lambda c: E.AutoConjugateGradient(c, **APGD),
    "AutoProjectedGradientDescent": lambda c: E.AutoProjectedGradientDescent(c, **APGD),
    "AutoProjectedGradientDescent[cross_entropy]": lambda c: E.AutoProjectedGradientDescent(
        c, **APGD, loss_type="cross_entropy"
    ),
    "AutoProjectedGradientDescent[difference_logits_ratio]": lambda c: E.AutoProjectedGradientDescent(
        c, **APGD, loss_type="difference_logits_ratio"
    ),
    "BasicIterativeMethod": lambda c: E.BasicIterativeMethod(c, **PGD),
    "BoundaryAttack": lambda c: E.BoundaryAttack(
        c, targeted=False, max_iter=2, num_trial=5, sample_size=5, init_size=20, verbose=False
    ),
    "CarliniL0Method": lambda c: E.CarliniL0Method(c, **CW, binary_search_steps=2, batch_size=N, verbose=False),
    "CarliniL2Method": lambda c: E.CarliniL2Method(c, **CW, binary_search_steps=2, batch_size=N, verbose=False),
    "CarliniLInfMethod": lambda c: E.CarliniLInfMethod(c, max_iter=10, batch_size=N, verbose=False),
    "CompositeAdversarialAttackPyTorch": lambda c: E.CompositeAdversarialAttackPyTorch(
        c, max_iter=2, max_inner_iter=2, batch_size=N, verbose=False
    ),
    "DeepFool": lambda c: E.DeepFool(c, max_iter=ITER, batch_size=N, verbose=False),
    "ElasticNet": lambda c: E.ElasticNet(c, **CW, binary_search_steps=2, batch_size=N, verbose=False),
    "FastGradientMethod": lambda c: E.FastGradientMethod(c, eps=EPS),
    "FeatureAdversariesNumpy": lambda c: E.FeatureAdversariesNumpy(c, delta=EPS, layer=-1, batch_size=N),
    "FeatureAdversariesPyTorch": lambda c: E.FeatureAdversariesPyTorch(
        c, delta=EPS, layer=-1, max_iter=2, step_size=STEP, batch_size=N, verbose=False
    ),
    "FrameSaliencyAttack": lambda c: E.FrameSaliencyAttack(
        c, E.FastGradientMethod(c, eps=EPS), frame_index=2, batch_size=N, verbose=False
    ),
    "GeoDA": lambda c: E.GeoDA(c, batch_size=N, sub_dim=4, max_iter=200, verbose=False),
    "HopSkipJump": lambda c: E.HopSkipJump(c, max_iter=2, max_eval=20, init_eval=5, init_size=20, verbose=False),
    "MomentumIterativeMethod": lambda c: E.MomentumIterativeMethod(c, **PGD),
    "NewtonFool": lambda c: E.NewtonFool(c, max_iter=ITER, batch_size=N, verbose=False),
    "PixelAttack": lambda c: E.PixelAttack(c, th=20, max_iter=5, verbose=False),
    "ProjectedGradientDescent": lambda c: E.ProjectedGradientDescent(c, **PGD),
    "ProjectedGradientDescentNumpy": lambda c: E.ProjectedGradientDescentNumpy(c, **PGD),
    "ProjectedGradientDescentPyTorch": lambda c: E.ProjectedGradientDescentPyTorch(c, **PGD),
    "RescalingAutoConjugateGradient": lambda c: E.RescalingAutoConjugateGradient(c, **APGD),
    "SaliencyMapMethod": lambda c: E.SaliencyMapMethod(c, theta=0.1, gamma=0.1, batch_size=N, verbose=False),
    "ShadowAttack": lambda c: E.ShadowAttack(c, nb_steps=ITER, batch_size=4, verbose=False),
    "SignOPTAttack": lambda c: E.SignOPTAttack(c, targeted=False, max_iter=1, query_limit=40, num_trial=3, k=3),
    "SimBA": lambda c: E.SimBA(c, attack="px", max_iter=20, epsilon=EPS, verbose=False),
    "SpatialTransformation": lambda c: E.SpatialTransformation(
        c, max_translation=20, num_translations=2, max_rotation=10, num_rotations=2, verbose=False
    ),
    "SquareAttack": lambda c: E.SquareAttack(c, eps=EPS, max_iter=5, verbose=False),
    "TargetedUniversalPerturbation": lambda c: E.TargetedUniversalPerturbation(
        c, attacker="fgsm", attacker_params={"eps": EPS, "targeted": True}, max_iter=1, eps=EPS
    ),
    "ThresholdAttack": lambda c: E.ThresholdAttack(c, th=128, es=1, max_iter=5, verbose=False),
    "UniversalPerturbation": lambda c: E.UniversalPerturbation(
        c, attacker="fgsm", attacker_params={"eps": EPS}, max_iter=1, eps=EPS, batch_size=N, verbose=False
    ),
    "VirtualAdversarialMethod": lambda c: E.VirtualAdversarialMethod(c, max_iter=2, eps=EPS, batch_size=N),
    "VirtualAdversarialMethod[probs]": lambda c: E.VirtualAdversarialMethod(c, max_iter=2, eps=EPS, batch_size=N),
    "SimBA[probs]": lambda c: E.SimBA(c, attack="px", max_iter=20, epsilon=EPS, verbose=False),
    "Wasserstein": lambda c: E.Wasserstein(
        c,
        regularization=100,
        max_iter=2,
        kernel_size=3,
        eps_iter=2,
        conjugate_sinkhorn_max_iter=5,
        projected_sinkhorn_max_iter=5,
        batch_size=N,
        verbose=False,
    ),  # fmt: skip
    "ZooAttack": lambda c: E.ZooAttack(
        c, **(CW | {"max_iter": 100}), nb_parallel=64, use_resize=False, use_importance=False, verbose=False
    ),
}

# Met requirements, but made for another kind of model or data (the kind, as ART documents it).
NOT_APPLICABLE: dict[str, str] = {
    "AdversarialPatchTensorFlowV2": "TensorFlow v2 estimators",
    "FeatureAdversariesTensorFlowV2": "TensorFlow v2 estimators",
    "ProjectedGradientDescentTensorFlowV2": "TensorFlow v2 estimators",
    "MalwareGDTensorFlow": "malware (byte sequence) classifiers in TensorFlow",
    "OverTheAirFlickeringPyTorch": "video classifiers",
    "OverloadPyTorch": "object detectors (YOLO)",
    "SNAL": "object detectors (YOLO)",
    "LaserAttack": "RGB images (a laser beam of a given wavelength)",
    "GRAPHITEBlackbox": "targeted physical-world attacks on RGB images (masks, transforms)",
    "GRAPHITEWhiteboxPyTorch": "targeted physical-world attacks on RGB images (masks, transforms)",
    "LowProFool": "tabular classifiers (feature importances over a flat feature vector)",
}

# attack -> ART's error on its own PyTorchClassifier of the bare model, as a pattern that also matches the
# adapter's error: the same one, or (ART's float64 queries) the adapter's clearer dtype message.
KNOWN_FAILURES: dict[str, str] = {
    "BoundaryAttack": "must have the same dtype|must have dtype torch.float32",  # float64 queries under NumPy 2
    "HopSkipJump": "must have the same dtype|must have dtype torch.float32",  # float64 queries under NumPy 2
    "SimBA": "requires an estimator predicting probabilities",  # SimBA[probs]: to_art(output="probs")
    "VirtualAdversarialMethod": "requires a classifier predicting probabilities",  # ... [probs] likewise
}
# ART imports multiprocess, which it does not require, at the top of AutoAttack.generate: where it is missing the
# attack fails on ART's own classifier too.
if importlib.util.find_spec("multiprocess") is None:
    KNOWN_FAILURES["AutoAttack"] = "No module named 'multiprocess'"
# attack -> (exception, message) its constructor raises on ART's own classifier of the bare model: it fails before
# it could call any classifier, bare or adapted.
CONSTRUCTOR_FAILURES: dict[str, tuple[type[Exception], str]] = {
    "AdversarialPatchNumpy": (AttributeError, "'AdversarialPatchNumpy' object has no attribute 'patch'"),
    "GeoDA": (IndexError, "list index out of range"),  # ART's query schedule on 8x8 images
}
if importlib.util.find_spec("kornia") is None:  # imported in the constructor; ART does not require it
    CONSTRUCTOR_FAILURES["CompositeAdversarialAttackPyTorch"] = (ModuleNotFoundError, "No module named 'kornia'")
# attack -> its error through the adapter at samples > 1: an attack on a layer's activations (a forward hook on
# that layer) sees the samples x batch rows of the replicated EoT call, not the batch's (adapter limitation).
# A per-call model is called on the batch itself, once per draw: the hook sees the batch's rows.
RANDOM_FAILURES = {"per-row": {"FeatureAdversariesPyTorch": "must match the size of tensor b"}}
# draws -> attacks that run but are not judged on the labels: FeatureAdversaries moves a hidden layer's features
# towards guide images and does not aim at the labels (on the per-call model the 64-draw accuracy rose, 11/12 to
# 12/12; on the per-row model it fails at the layer hook, RANDOM_FAILURES).
NOT_JUDGED = {"per-call": {"FeatureAdversariesPyTorch"}}
# The randomized models of the samples > 1 runs, by how they draw: noise per row, Xie et al.'s resize-and-pad per call.
DRAWS = {"per-row": "noisy_digits_mlp", "per-call": "per_call_digits_model"}
# Slow black-box searches (or ART's one-image-at-a-time attacks) run on fewer images.
IMAGES = {"ShadowAttack": 1, "SimBA[probs]": 1, "PixelAttack": 2, "ThresholdAttack": 2, "SignOPTAttack": 2}
IMAGES |= {"ZooAttack": 2, "FeatureAdversariesNumpy": 2}
# Random attacks that draw from torch's global RNG after a predict: ART's predict draws one number per call
# (its DataLoader's base seed) and EoTClassifier.predict does not (DESIGN.md, §C5); with that draw added
# they are bit-identical.
DRAW_AFTER_PREDICT = {"AdversarialPatch", "AdversarialPatchPyTorch"}


def test_the_catalog_is_covered() -> None:
    bare = PyTorchClassifier(nn.Linear(64, 10), loss=nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10)

    def applies(cls: type) -> bool:
        requirements = cls._estimator_requirements or ()
        return all(isinstance(bare, r) for r in requirements)

    catalog = {n for n, c in inspect.getmembers(E, inspect.isclass) if issubclass(c, EvasionAttack) and applies(c)}
    assert {name.split("[")[0] for name in ATTACKS} | set(NOT_APPLICABLE) == catalog
    assert not set(ATTACKS) & set(NOT_APPLICABLE)


def _plain(name: str, model: nn.Module) -> PyTorchClassifier:
    if name.endswith("[probs]"):  # ART's own wrapper of the model with a softmax head
        model = nn.Sequential(model, nn.Softmax(dim=1))
    return PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=10, clip_values=(0, 1))


def _ours(name: str, model: nn.Module, samples: int) -> PyTorchClassifier:
    output = "probs" if name.endswith("[probs]") else "logits"
    return to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=samples, output=output)


def _draw_per_predict(clf: PyTorchClassifier) -> PyTorchClassifier:
    """``clf`` whose predict first draws one number from torch's RNG, as ART's own predict (its DataLoader) does."""
    predict = clf.predict

    def drawing(x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        torch.empty((), dtype=torch.int64).random_()
        return predict(x, *args, **kwargs)

    clf.predict = drawing  # type: ignore[method-assign]
    return clf


def _data(name: str, digits) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    n = IMAGES.get(name, N)
    return digits.x_test[:n], digits.y_test[:n]


def _attack(name: str, clf: PyTorchClassifier, x: np.ndarray, y: np.ndarray) -> Any:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    attack = ATTACKS[name](clf)
    onehot = np.eye(10, dtype=np.float32)[y]
    if name == "TargetedUniversalPerturbation":
        onehot = np.eye(10, dtype=np.float32)[(y + 1) % 10]
    if name == "FeatureAdversariesNumpy" or name == "FeatureAdversariesPyTorch":  # y: the guide images
        return attack.generate(x, y=x[::-1].copy())
    return attack.generate(x, y=onehot)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(u, v) for u, v in zip(a, b, strict=True))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_samples_1_is_arts_own_classifier_bit_for_bit(name: str, plain_digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    xt, yt = _data(name, digits)
    x, y = xt.numpy(), yt.numpy()
    if name in CONSTRUCTOR_FAILURES:  # the attack never runs: the adapter is not involved
        error, message = CONSTRUCTOR_FAILURES[name]
        with pytest.raises(error, match=message):
            ATTACKS[name](_plain(name, plain_digits_mlp))
        return
    if name in KNOWN_FAILURES:
        for clf in (_plain(name, plain_digits_mlp), _ours(name, plain_digits_mlp, 1)):
            with pytest.raises(Exception, match=KNOWN_FAILURES[name]):
                _attack(name, clf, x, y)
        return
    ours = _ours(name, plain_digits_mlp, 1)
    bare = _attack(name, _plain(name, plain_digits_mlp), x, y)
    result = _attack(name, _draw_per_predict(ours) if name in DRAW_AFTER_PREDICT else ours, x, y)
    assert _equal(result, bare)


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name", sorted(set(ATTACKS) - set(KNOWN_FAILURES) - set(CONSTRUCTOR_FAILURES)))
def test_samples_above_1_runs_and_does_not_raise_accuracy(name: str, draws: str, request, digits) -> None:  # type: ignore[no-untyped-def]
    model = request.getfixturevalue(DRAWS[draws])
    x, y = _data(name, digits)
    if name in RANDOM_FAILURES.get(draws, {}):
        with pytest.raises(RuntimeError, match=RANDOM_FAILURES[draws][name]):
            _attack(name, _ours(name, model, SAMPLES), x.numpy(), y.numpy())
        return
    clf = _ours(name, model, SAMPLES)
    adv = _attack(name, clf, x.numpy(), y.numpy())
    assert eot_of(clf).draws in (None, draws)  # None: an attack that never queried the model
    if isinstance(adv, tuple):  # a patch and its mask: nothing to judge on the images
        assert all(bool(np.isfinite(a).all()) for a in adv)
        return
    _check_adversarial(name, model, x, y, torch.from_numpy(adv), judged=name not in NOT_JUDGED.get(draws, set()))


def _check_adversarial(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, *, judged: bool = True
) -> None:
    """``adv`` is finite, of ``x``'s shape, perturbed, and (``judged``) does not raise the ensemble's accuracy under
    the same draws."""
    assert adv.shape == x.shape and bool(torch.isfinite(adv).all())
    moved = float((adv - x).abs().max())
    # an attack that returned its input would pass the accuracy check below: at least one grey level moved
    assert moved >= MOVED, f"{name} returned its input (largest change {moved:.2g})"
    if not judged:
        return
    torch.manual_seed(1)
    clean = ensemble_accuracy(model, x, y, samples=JUDGE)
    torch.manual_seed(1)  # the same draws judge both
    assert ensemble_accuracy(model, adv, y, samples=JUDGE) <= clean
