"""How a model draws (``draw_kind``), what each adapter records and says about it (DESIGN.md, §C2 and §C3)."""

from __future__ import annotations

import random
import warnings

import foolbox as fb
import numpy as np
import pytest
import torch
import torchattacks
from art.attacks.evasion import FastGradientMethod
from torch import nn

from stochdef.adapters import (
    DrawsWarning,
    EoT,
    IdenticalDrawsWarning,
    PerCallDrawsWarning,
    draw_kind,
    draws_taken,
    eot_of,
    keep_random,
    to_art,
    to_foolbox,
    to_torchattacks,
)

SHAPE = (1, 8, 8)
LIBRARIES = ["foolbox", "art", "torchattacks"]


class RowNoise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x + 0.1 * torch.randn_like(x))


class NumpyShift(nn.Module):
    """A per-call model drawing with NumPy's global RNG, as many input-transformation defenses do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.roll(x, int(np.random.randint(0, 8)), dims=-1) + random.random())


def _dropout() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))


def test_draw_kind_tells_the_three_kinds_apart(per_call_model: nn.Module) -> None:
    x = torch.rand(5, *SHAPE)
    assert draw_kind(per_call_model, x) == "per-call"
    assert draw_kind(NumpyShift(), x) == "per-call"
    assert draw_kind(RowNoise(), x) == "per-row"
    assert draw_kind(_dropout().eval(), x) == "deterministic"  # dropout switched off by eval()
    assert draw_kind(keep_random(_dropout()).eval(), x) == "per-row"
    assert draw_kind(_dropout().train(), x) == "per-row"


def test_draw_kind_leaves_no_trace() -> None:
    model, x = NumpyShift(), torch.rand(3, *SHAPE)
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    assert draw_kind(model, x) == "per-call"
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # type: ignore[index]


def test_draw_kind_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="x must be a non-empty batch"):
        draw_kind(RowNoise(), torch.rand(0, *SHAPE))
    with pytest.raises(ValueError, match="rows"):
        draw_kind(RowNoise(), torch.rand(2, *SHAPE), rows=0)
    with pytest.raises(ValueError, match="draws"):
        EoT(RowNoise(), samples=2, draws="per-batch")  # type: ignore[arg-type]


def test_an_eot_module_decides_once_and_records_it(per_call_model: nn.Module) -> None:
    x = torch.rand(4, *SHAPE)
    for model, kind in ((per_call_model, "per-call"), (RowNoise(), "per-row"), (nn.Flatten(), "deterministic")):
        eot = EoT(model, samples=4)
        assert eot.draws is None
        eot(x[:0])  # an empty batch: nothing to probe
        assert eot.draws is None
        eot(x)
        assert eot.draws == kind and eot.per_call == (kind == "per-call")
    one = EoT(per_call_model, samples=1)
    one(x)
    assert one.draws is None  # one draw is one call whatever the kind: no probe
    assert draws_taken("per-call", 8) == "8 draws, one call per draw"


def test_draws_given_are_used_without_a_probe() -> None:
    # a per-row model averaged call by call (draws="per-call", as for a model mixing both kinds): the same mean
    # as 4 separate calls, from the same draws
    model, x = RowNoise(), torch.rand(3, *SHAPE)
    torch.manual_seed(2)
    with torch.no_grad():
        ours = EoT(model, samples=4, draws="per-call")(x)
    torch.manual_seed(2)
    with torch.no_grad():
        expected = (((model(x) + model(x)) + model(x)) + model(x)) / 4
    torch.testing.assert_close(ours, expected)


def _adapter(library: str, model: nn.Module, samples: int) -> object:
    if library == "foolbox":
        return to_foolbox(model, bounds=(0, 1), samples=samples)
    if library == "art":
        return to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=samples)
    return to_torchattacks(model, samples=samples)


def _fgsm(library: str, adapter: object, x: torch.Tensor, y: torch.Tensor) -> None:
    if library == "foolbox":
        fb.attacks.FGSM()(adapter, x, y, epsilons=0.1)  # type: ignore[call-overload]
    elif library == "art":
        FastGradientMethod(adapter, eps=0.1).generate(x.numpy(), y=y.numpy())
    else:
        torchattacks.FGSM(adapter, eps=0.1)(x, y)


def _said(library: str, model: nn.Module, samples: int = 8) -> tuple[str | None, list[warnings.WarningMessage]]:
    """What the adapter recorded (``eot_of(adapter).draws``) and warned during an FGSM."""
    x, y = torch.rand(6, *SHAPE), torch.arange(6)
    adapter = _adapter(library, model.eval(), samples)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fgsm(library, adapter, x, y)
    return eot_of(adapter).draws, [w for w in caught if issubclass(w.category, DrawsWarning)]


@pytest.mark.parametrize("library", LIBRARIES)
def test_each_adapter_tells_the_three_cases_apart(library: str, per_call_model: nn.Module) -> None:
    kind, said = _said(library, _dropout())  # random in training mode only: keep_random is the fix
    assert kind == "deterministic" and len(said) == 1 and said[0].category is IdenticalDrawsWarning
    assert "keep_random" in str(said[0].message) and "samples=1" not in str(said[0].message)

    torch.manual_seed(0)
    kind, said = _said(library, nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))  # deterministic: samples=1
    assert kind == "deterministic" and len(said) == 1 and said[0].category is IdenticalDrawsWarning
    assert "needs samples=1" in str(said[0].message) and "keep_random" not in str(said[0].message)

    kind, said = _said(library, per_call_model)  # per call: averaged call by call, nothing to fix
    assert kind == "per-call" and len(said) == 1 and said[0].category is PerCallDrawsWarning
    message = str(said[0].message)
    assert "one call per draw" in message and "Nothing to fix" in message and "keep_random" not in message

    assert _said(library, keep_random(_dropout())) == ("per-row", [])  # per row: nothing to say
    assert _said(library, per_call_model, samples=1) == (None, [])  # one draw asked for: no probe


def test_eot_of_refuses_what_no_adapter_made() -> None:
    with pytest.raises(TypeError, match="adapter"):
        eot_of(nn.Linear(2, 2))
