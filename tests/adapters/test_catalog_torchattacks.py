"""Every attack of torchattacks' catalog through ``to_torchattacks``, against torchattacks on the bare model.

With ``samples=1`` on a deterministic model each attack must return exactly what it returns on the bare
model (torchattacks' own way of taking a model), bit for bit, from the same seed; with ``samples > 1`` on
a randomized model it must run, move the input (but for ``RETURNS_INPUT``, which must return it) and not
raise the ensemble's accuracy. An attack that fails on the bare
model too is in ``KNOWN_FAILURES`` with torchattacks' error, and the test checks that it still fails there
and fails the same way through the adapter. Few images, few steps: the whole file runs in seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torchattacks as ta
from torch import nn
from torchattacks.attack import Attack

from stochdef.adapters import ensemble_accuracy, to_torchattacks

N, EPS, ALPHA, STEPS, SAMPLES, JUDGE = 12, 0.2, 0.05, 3, 4, 64
# The randomized models of the samples > 1 runs, by how they draw: noise per row, Xie et al.'s resize-and-pad per call.
DRAWS = {"per-row": "noisy_digits_mlp", "per-call": "per_call_digits_model"}
WRAPPERS = {"MultiAttack"}  # runs attacks handed to it; each of them is in the catalog

Make = Callable[[nn.Module], Attack]
L = {"eps": EPS, "alpha": ALPHA, "steps": STEPS}


def _lgv(model: nn.Module) -> Attack:
    from stochdef.defenses import load_dataset

    data = load_dataset("digits")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.x_train[:64], data.y_train[:64]), batch_size=32
    )
    return ta.LGV(model, loader, epochs=1, nb_models_epoch=1, verbose=False, eps=EPS, alpha=ALPHA, steps=STEPS)


ATTACKS: dict[str, Make] = {
    "VANILA": lambda m: ta.VANILA(m),
    "GN": lambda m: ta.GN(m, std=0.1),
    "FGSM": lambda m: ta.FGSM(m, eps=EPS),
    "BIM": lambda m: ta.BIM(m, **L),
    "RFGSM": lambda m: ta.RFGSM(m, **L),
    "PGD": lambda m: ta.PGD(m, **L),
    "EOTPGD": lambda m: ta.EOTPGD(m, **L, eot_iter=2),
    "FFGSM": lambda m: ta.FFGSM(m, eps=EPS, alpha=ALPHA),
    "TPGD": lambda m: ta.TPGD(m, **L),
    "MIFGSM": lambda m: ta.MIFGSM(m, **L),
    "UPGD": lambda m: ta.UPGD(m, **L),
    "APGD": lambda m: ta.APGD(m, eps=EPS, steps=STEPS),
    "APGDT": lambda m: ta.APGDT(m, eps=EPS, steps=STEPS),
    "DIFGSM": lambda m: ta.DIFGSM(m, **L),
    "TIFGSM": lambda m: ta.TIFGSM(m, **L, len_kernel=3),
    "Jitter": lambda m: ta.Jitter(m, **L),
    "NIFGSM": lambda m: ta.NIFGSM(m, **L),
    "PGDRS": lambda m: ta.PGDRS(m, **L, noise_batch_size=2),
    "SINIFGSM": lambda m: ta.SINIFGSM(m, **L, m=2),
    "VMIFGSM": lambda m: ta.VMIFGSM(m, **L, N=2),
    "VNIFGSM": lambda m: ta.VNIFGSM(m, **L, N=2),
    "SPSA": lambda m: ta.SPSA(m, eps=EPS, nb_iter=2, nb_sample=8),
    "JSMA": lambda m: ta.JSMA(m),
    "EADL1": lambda m: ta.EADL1(m, binary_search_steps=2, max_iterations=20, initial_const=1),
    "EADEN": lambda m: ta.EADEN(m, binary_search_steps=2, max_iterations=20, initial_const=1),
    "PIFGSM": lambda m: ta.PIFGSM(m, max_epsilon=EPS, num_iter_set=STEPS),
    "PIFGSMPP": lambda m: ta.PIFGSMPP(m, max_epsilon=EPS, num_iter_set=STEPS),
    "CW": lambda m: ta.CW(m, lr=0.1, steps=10),
    "PGDL2": lambda m: ta.PGDL2(m, eps=1.0, alpha=0.3, steps=STEPS),
    "DeepFool": lambda m: ta.DeepFool(m, steps=STEPS),
    "PGDRSL2": lambda m: ta.PGDRSL2(m, eps=1.0, alpha=0.3, steps=STEPS, noise_batch_size=2),
    "SparseFool": lambda m: ta.SparseFool(m, steps=STEPS),
    "OnePixel": lambda m: ta.OnePixel(m, steps=2, popsize=4),
    "Pixle": lambda m: ta.Pixle(m, x_dimensions=(1, 2), y_dimensions=(1, 2), restarts=2, max_iterations=2),
    "FAB": lambda m: ta.FAB(m, eps=EPS, steps=STEPS),
    "AutoAttack": lambda m: ta.AutoAttack(m, eps=EPS, seed=0),
    "Square": lambda m: ta.Square(
        m, eps=EPS, n_queries=300
    ),  # fewer left a noisy model unmoved (its margin test sees noise)
    "LGV": _lgv,
}

# Attacks that return their input by design (VANILA: the identity, torchattacks' baseline); every other attack
# must move some pixel of the batch by at least MOVED (one grey level of an 8-bit image) at samples > 1.
RETURNS_INPUT = {"VANILA"}
MOVED = 1 / 255

# attack -> torchattacks' error on the bare model (the attack fails the same way through the adapter)
KNOWN_FAILURES: dict[str, str] = {}


def test_the_catalog_is_covered() -> None:
    assert set(ATTACKS) == set(ta.__all__) - WRAPPERS


class Gray(nn.Module):
    """Three-channel images to the one-channel model: their channel mean."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.mean(1, keepdim=True))


# Attacks written for RGB images (a fixed 3-channel kernel): they run on the digits repeated over 3 channels.
RGB = {"TIFGSM", "PIFGSM", "PIFGSMPP"}


def _inputs(name: str, model: nn.Module, digits) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:N], digits.y_test[:N]
    if name in RGB:
        return Gray(model).eval(), x.repeat(1, 3, 1, 1), y
    return model, x, y


def _attack(make: Make, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return make(model)(x, y)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_samples_1_is_the_bare_model_bit_for_bit(name: str, plain_digits_mlp: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    model, x, y = _inputs(name, plain_digits_mlp, digits)
    make = ATTACKS[name]
    if name in KNOWN_FAILURES:
        for target in (model, to_torchattacks(model, samples=1)):
            with pytest.raises(Exception, match=KNOWN_FAILURES[name]):
                _attack(make, target, x, y)
        return
    bare = _attack(make, model, x, y)
    ours = _attack(make, to_torchattacks(model, samples=1), x, y)
    assert bare.shape == x.shape
    assert torch.equal(ours, bare)


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("name", sorted(set(ATTACKS) - set(KNOWN_FAILURES)))
def test_samples_above_1_runs_and_does_not_raise_accuracy(name: str, draws: str, request, digits) -> None:  # type: ignore[no-untyped-def]
    model, x, y = _inputs(name, request.getfixturevalue(DRAWS[draws]), digits)
    eot = to_torchattacks(model, samples=SAMPLES)
    adv = _attack(ATTACKS[name], eot, x, y)
    assert eot.draws in (None, draws)  # None: an attack that never queried the model
    _check_adversarial(name, model, x, y, adv)


def _check_adversarial(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor) -> None:
    """``adv`` is finite, of ``x``'s shape, perturbed (``x`` itself for ``RETURNS_INPUT``), and does not raise the
    ensemble's accuracy under the same draws."""
    assert adv.shape == x.shape and bool(torch.isfinite(adv).all())
    moved = float((adv - x).abs().max())
    if name in RETURNS_INPUT:
        assert torch.equal(adv, x)
    else:  # an attack that returned its input would pass the accuracy check below: at least one grey level moved
        assert moved >= MOVED, f"{name} returned its input (largest change {moved:.2g})"
    torch.manual_seed(1)
    clean = ensemble_accuracy(model, x, y, samples=JUDGE)
    torch.manual_seed(1)  # the same draws judge both
    assert ensemble_accuracy(model, adv, y, samples=JUDGE) <= clean
