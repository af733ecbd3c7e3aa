"""The adapters against the libraries themselves: exact parity at samples=1, real attacks at samples>1."""

from __future__ import annotations

import copy

import foolbox as fb
import numpy as np
import pytest
import torch
import torchattacks
from art.attacks.evasion import (
    CarliniL2Method,
    FastGradientMethod,
    ProjectedGradientDescent,
)
from art.estimators.classification import PyTorchClassifier
from torch import nn

from stochdef.adapters import ensemble_accuracy, eot_gradient, is_random, to_art, to_foolbox, to_torchattacks
from stochdef.evaluations.libraries import FGSM, PGD, Attack, DeepFool, run

EPS, STEP, STEPS = 0.15, 0.02, 10
SHAPE = (1, 8, 8)


def _plain_art(model: nn.Module) -> PyTorchClassifier:
    return PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=10, clip_values=(0, 1))


def _onehot(y: torch.Tensor) -> np.ndarray:
    return np.eye(10, dtype=np.float32)[y.numpy()]


# ---- (1) samples=1 on a deterministic model is the library's plain behaviour, bit for bit -------------


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_foolbox_parity(plain_digits_mlp: nn.Module, digits, attack: str, device: str) -> None:
    model = plain_digits_mlp.to(device)
    x, y = digits.x_test[:64].to(device), digits.y_test[:64].to(device)
    fb_attack = (
        fb.attacks.FGSM()
        if attack == "fgsm"
        else fb.attacks.LinfPGD(abs_stepsize=STEP, steps=STEPS, random_start=False)
    )
    plain = fb_attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=EPS)[1]
    ours = fb_attack(to_foolbox(model, bounds=(0, 1), samples=1), x, y, epsilons=EPS)[1]
    assert torch.equal(ours, plain)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_torchattacks_parity(plain_digits_mlp: nn.Module, digits, attack: str, device: str) -> None:
    model = plain_digits_mlp.to(device)
    x, y = digits.x_test[:64].to(device), digits.y_test[:64].to(device)

    def make(m: nn.Module) -> torchattacks.Attack:
        if attack == "fgsm":
            return torchattacks.FGSM(m, eps=EPS)
        return torchattacks.PGD(m, eps=EPS, alpha=STEP, steps=STEPS, random_start=False)

    assert torch.equal(make(to_torchattacks(model, samples=1))(x, y), make(model)(x, y))


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_art_attack_parity(plain_digits_mlp: nn.Module, digits, attack: str) -> None:
    x, y = digits.x_test[:64].numpy(), digits.y_test[:64]

    def make(clf: PyTorchClassifier):  # type: ignore[no-untyped-def]
        if attack == "fgsm":
            return FastGradientMethod(clf, eps=EPS)
        return ProjectedGradientDescent(clf, eps=EPS, eps_step=STEP, max_iter=STEPS, num_random_init=0, verbose=False)

    plain = make(_plain_art(plain_digits_mlp)).generate(x, y=_onehot(y))
    ours_clf = to_art(
        plain_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1, output="logits"
    )
    assert np.array_equal(make(ours_clf).generate(x, y=_onehot(y)), plain)
    assert np.array_equal(make(ours_clf).generate(x, y=y.numpy()), plain)  # integer labels of shape (N,)


def test_art_methods_parity(plain_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:32].numpy(), digits.y_test[:32]
    plain = _plain_art(plain_digits_mlp)
    ours = to_art(plain_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1, output="logits")
    assert np.array_equal(ours.predict(x), plain.predict(x))
    assert np.array_equal(ours.loss_gradient(x, _onehot(y)), plain.loss_gradient(x, _onehot(y)))
    np.testing.assert_allclose(ours.class_gradient(x), plain.class_gradient(x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.class_gradient(x, label=3), plain.class_gradient(x, label=3), rtol=1e-6, atol=1e-8)
    labels = y.numpy()
    np.testing.assert_allclose(
        ours.class_gradient(x, label=labels), plain.class_gradient(x, label=labels), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(ours.compute_loss(x, _onehot(y)), plain.compute_loss(x, _onehot(y)), rtol=1e-6)
    default = to_art(plain_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1)
    assert np.array_equal(default.predict(x), plain.predict(x))  # the default output is the model's: logits
    probs = to_art(
        plain_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1, output="probs"
    ).predict(x)
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(plain.predict(x)), 1).numpy(), rtol=1e-5)


# ---- ART overrides are exact EoT averages; numpy in -> numpy out, torch in -> torch out ----------------


def test_art_gradients_are_exact_eot_averages(noisy_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:16], digits.y_test[:16]
    clf = to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=40, output="logits")
    torch.manual_seed(7)
    art_grad = clf.loss_gradient(x.numpy(), y.numpy())
    torch.manual_seed(7)  # same draws: one replicated call of 40 x 16 rows in both
    expected = eot_gradient(noisy_digits_mlp, x, y, samples=40) / len(x)  # ART's loss is a batch mean
    np.testing.assert_allclose(art_grad, expected.numpy(), rtol=1e-4, atol=1e-7)
    torch.manual_seed(8)
    class_grad = clf.class_gradient(x.numpy(), label=4)
    torch.manual_seed(8)
    expected = eot_gradient(noisy_digits_mlp, x, y, samples=40, loss=lambda z, t: z[:, 4])
    np.testing.assert_allclose(class_grad[:, 0], expected.numpy(), rtol=1e-4, atol=1e-7)


def test_art_accepts_numpy_and_torch(noisy_digits_mlp: nn.Module, digits) -> None:
    x, y = digits.x_test[:8], digits.y_test[:8]
    clf = to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=4, output="probs")
    # ART's InputFilter metaclass turns predict's input into numpy before any override runs: numpy out.
    assert isinstance(clf.predict(x), np.ndarray)
    for method, args in [("loss_gradient", (y,)), ("class_gradient", ()), ("compute_loss", (y,))]:
        as_numpy = getattr(clf, method)(x.numpy(), *(a.numpy() for a in args))
        as_torch = getattr(clf, method)(x, *args)
        assert isinstance(as_numpy, np.ndarray), method
        assert isinstance(as_torch, torch.Tensor), method
        assert as_numpy.shape == tuple(as_torch.shape), method
    probs = clf.predict(x.numpy())
    np.testing.assert_allclose(probs.sum(1), np.ones(len(x)), rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c, x, y: c.predict(x.astype(np.float64)), "dtype"),
        (lambda c, x, y: c.loss_gradient(x, y + 10), "< 10"),
        (lambda c, x, y: c.loss_gradient(x, y[:3]), "shape"),
        (lambda c, x, y: c.class_gradient(x, label=11), "label"),
        (lambda c, x, y: c.predict(x.reshape(-1)), "rank"),
    ],
)
def test_art_bad_input_raises(noisy_digits_mlp: nn.Module, digits, call, match: str) -> None:  # type: ignore[no-untyped-def]
    clf = to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=2)
    with pytest.raises((ValueError, TypeError), match=match):
        call(clf, digits.x_test[:8].numpy(), digits.y_test[:8].numpy())


def test_adapter_bad_configuration_raises(noisy_digits_mlp: nn.Module) -> None:
    with pytest.raises(ValueError, match="samples"):
        to_foolbox(noisy_digits_mlp, bounds=(0, 1), samples=0)
    with pytest.raises(ValueError, match="bounds"):
        to_foolbox(noisy_digits_mlp, bounds=(1, 0), samples=2)
    with pytest.raises(ValueError, match="reduce"):
        to_torchattacks(noisy_digits_mlp, samples=2, reduce="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip_values"):
        to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 0), samples=2)
    with pytest.raises(ValueError, match="output"):
        to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=2, output="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_batch"):
        to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=2, max_batch=0)


# ---- (3)+(4) real attacks through the adapters lower a randomized model's accuracy; it stays random -------


def _spec(attack: str) -> Attack:
    if attack == "deepfool":
        return DeepFool(norm="l2", steps=20, overshoot=0.1, candidates=10, samples=16)
    return FGSM(eps=EPS, samples=16) if attack == "fgsm" else PGD(eps=EPS, step=STEP, steps=STEPS, samples=16)


def _carlini_wagner(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART's C&W L2 through ``to_art`` (not an attack of the evaluations' table: only the adapter is tested)."""
    clf = to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=16, output="logits")
    attack = CarliniL2Method(
        clf,
        confidence=2.0,
        max_iter=20,
        binary_search_steps=3,
        learning_rate=0.05,
        initial_const=1.0,
        batch_size=100,  # ART's default of 1 optimizes one example at a time: 100x the model calls
        verbose=False,
    )
    return torch.from_numpy(attack.generate(x.numpy(), y=y.numpy()))


CASES = [
    ("foolbox", "fgsm"),
    ("foolbox", "pgd"),
    ("art", "fgsm"),
    ("art", "pgd"),
    ("art", "deepfool"),
    ("art", "cw"),
    ("torchattacks", "fgsm"),
    ("torchattacks", "pgd"),
]


@pytest.mark.parametrize(("library", "attack"), CASES)
def test_attacks_through_adapters_lower_accuracy(
    noisy_digits_mlp: nn.Module, digits, library: str, attack: str
) -> None:
    torch.manual_seed(9)
    x, y = digits.x_test[:100], digits.y_test[:100]
    model = noisy_digits_mlp.train()  # ART and torchattacks put it in eval mode themselves; it stays random
    clean = ensemble_accuracy(model, x, y, samples=64)
    # C&W is not in the evaluations' table; the others run through the adapters as the evaluations run them
    x_adv = _carlini_wagner(model, x, y) if attack == "cw" else run(library, _spec(attack), model, x, y, num_classes=10)
    model.eval()  # the session's fixture, as the other tests expect it
    assert x_adv.shape == x.shape
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    if attack in ("fgsm", "pgd"):
        assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    robust = ensemble_accuracy(model, x_adv, y, samples=64)
    assert clean >= 0.85
    assert robust <= clean - 0.3, f"{library} {attack}: clean {clean:.2f}, under attack {robust:.2f}"
    # (4) the model is random in eval() (where ART and torchattacks attack it); the mode each library leaves
    # it in is that of the library's own wrapper (tests/adapters/test_policy.py).
    assert is_random(model, x[:4])


# ---- ART contract details: eval mode in compute_loss, no silent casts or label fixes, empty batches --------


def test_art_compute_loss_runs_in_eval_mode_like_art(digits) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():  # non-trivial running statistics
        net(digits.x_train[:256])
    net.train()
    plain_net = copy.deepcopy(net)
    x, y = digits.x_test[:32].numpy(), _onehot(digits.y_test[:32])
    running_mean = net[2].running_mean.clone()
    ours = to_art(net, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1, output="logits")
    losses = ours.compute_loss(x, y)
    assert torch.equal(net[2].running_mean, running_mean)  # batch-norm statistics neither used nor updated
    np.testing.assert_allclose(losses, _plain_art(plain_net).compute_loss(x, y), rtol=1e-6)


def test_art_keeps_a_float64_model_in_float64(plain_digits_mlp: nn.Module, digits) -> None:
    model = copy.deepcopy(plain_digits_mlp).double()
    x, y = digits.x_test[:16].double(), digits.y_test[:16]
    clf = to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1, output="logits")
    grad = clf.loss_gradient(x.numpy(), y.numpy())
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)  # ART's loss: a batch mean
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, expected.numpy(), rtol=1e-12, atol=1e-15)


def test_art_refuses_soft_labels_and_non_index_losses(noisy_digits_mlp: nn.Module, digits) -> None:
    clf = to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=2)
    x = digits.x_test[:4].numpy()
    soft = np.full((4, 10), 0.1, dtype=np.float32)
    with pytest.raises(ValueError, match="one-hot"):
        clf.loss_gradient(x, soft)
    with pytest.raises(TypeError, match="loss must be one of"):
        to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=2, loss=nn.MSELoss())
    with pytest.raises(TypeError, match="input_shape"):
        to_art(noisy_digits_mlp, input_shape=64, nb_classes=10, clip_values=(0, 1), samples=2)  # type: ignore[arg-type]


def test_art_empty_batch(noisy_digits_mlp: nn.Module) -> None:
    clf = to_art(noisy_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=3)
    x = np.zeros((0, *SHAPE), dtype=np.float32)
    assert clf.predict(x).shape == (0, 10)
    assert clf.loss_gradient(x, np.zeros(0, dtype=np.int64)).shape == x.shape
    assert clf.class_gradient(x).shape == (0, 10, *SHAPE)
