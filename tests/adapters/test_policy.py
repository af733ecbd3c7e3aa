"""The adapters accept what the libraries' own wrappers accept (DESIGN.md, §C5); MC dropout under eval()."""

from __future__ import annotations

import copy
import io
import warnings

import foolbox as fb
import numpy as np
import pytest
import torch
import torchattacks
from art.attacks.evasion import FastGradientMethod
from art.estimators.classification import PyTorchClassifier
from torch import nn

from stochdef.adapters import (
    IdenticalDrawsWarning,
    identical_draws,
    is_random,
    keep_random,
    to_art,
    to_foolbox,
    to_torchattacks,
)

SHAPE = (1, 8, 8)


def _queries(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Queries a library may make inside an attack: outside the box (far and slightly), non-finite."""
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    return {"far": 3.0 * x - 1.0, "slightly": x + 1e-3, "nan": nan}


def _same(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


@pytest.mark.parametrize("query", ["far", "slightly", "nan"])
def test_each_adapter_answers_what_the_librarys_own_wrapper_answers(
    plain_digits_mlp: nn.Module, digits, query: str
) -> None:  # type: ignore[no-untyped-def]
    x = _queries(digits.x_test[:8])[query]
    with torch.no_grad():
        bare = plain_digits_mlp(x)
    fb_bare = fb.PyTorchModel(plain_digits_mlp, bounds=(0, 1))
    assert _same(to_foolbox(plain_digits_mlp, bounds=(0, 1), samples=1)(x), fb_bare(x))
    with torch.no_grad():
        assert _same(to_torchattacks(plain_digits_mlp, samples=1)(x), bare)
    art_bare = PyTorchClassifier(
        plain_digits_mlp, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=10, clip_values=(0, 1)
    )
    ours = to_art(plain_digits_mlp, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1)
    xn, y = x.numpy(), digits.y_test[:8].numpy()
    assert _same(ours.predict(xn), art_bare.predict(xn))
    assert _same(ours.loss_gradient(xn, y), art_bare.loss_gradient(xn, np.eye(10)[y]))
    # ART's own wrapper takes a flat batch for a model that flattens: so does the adapter
    assert _same(ours.predict(xn.reshape(8, 64)), art_bare.predict(xn.reshape(8, 64)))


def test_the_adapters_average_outside_the_box_too(noisy_digits_mlp: nn.Module, digits) -> None:
    x = 3.0 * digits.x_test[:4] - 1.0  # far outside [0, 1], as randomized-smoothing attacks query
    eot = to_torchattacks(noisy_digits_mlp, samples=4).eval()
    torch.manual_seed(3)
    with torch.no_grad():
        ours = eot(x)
    torch.manual_seed(3)  # the same draws: one call on the sample-major replicated batch
    with torch.no_grad():
        expected = noisy_digits_mlp(x.repeat(4, 1, 1, 1)).view(4, 4, 10).mean(0)
    torch.testing.assert_close(ours, expected)


def _mode_after(library: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, native: bool) -> bool:
    """The model's ``training`` flag after an FGSM through the library's own wrapper or the adapter."""
    if library == "foolbox":
        fmodel = fb.PyTorchModel(model, bounds=(0, 1)) if native else to_foolbox(model, bounds=(0, 1), samples=1)
        fb.attacks.FGSM()(fmodel, x, y, epsilons=0.1)
    elif library == "torchattacks":
        torchattacks.FGSM(model if native else to_torchattacks(model, samples=1), eps=0.1)(x, y)
    else:
        clf = (
            PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=10, clip_values=(0, 1))
            if native
            else to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=1)
        )
        FastGradientMethod(clf, eps=0.1).generate(x.numpy(), y=y.numpy())
    return model.training


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
@pytest.mark.parametrize("training", [True, False])
def test_each_adapter_leaves_the_mode_its_librarys_own_wrapper_leaves(
    plain_digits_mlp: nn.Module, digits, library: str, training: bool
) -> None:
    x, y = digits.x_test[:8], digits.y_test[:8]
    runs = {}
    for native in (True, False):
        model = copy.deepcopy(plain_digits_mlp).train(training)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs[native] = (_mode_after(library, model, x, y, native=native), [str(w.message)[:40] for w in caught])
    assert runs[False] == runs[True]  # the same mode afterwards, the same warnings (Foolbox's on training mode)


def _dropout_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))


def test_keep_random_keeps_dropout_random_under_eval_and_undoes() -> None:
    x = torch.rand(4, *SHAPE)
    model = _dropout_mlp()
    keys = list(model.state_dict())
    assert not is_random(model, x)  # nn.Dropout: deterministic after eval()
    assert keep_random(model) is model
    assert is_random(model, x) and not model.training  # random in eval(); the model itself is in eval mode
    assert isinstance(model[3], nn.Dropout) and list(model.state_dict()) == keys
    restored = torch.load(io.BytesIO(_saved(model)), weights_only=False)  # a kept-random model pickles
    assert is_random(restored, x)
    keep_random(model, enabled=False)
    assert type(model[3]) is nn.Dropout and not is_random(model, x)


def _saved(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return buffer.getvalue()


def test_keep_random_draws_per_row_as_dropout_does() -> None:
    # Dropout(p) after keep_random: each unit of each row is zeroed with probability p, independently.
    # 4000 rows x 32 units; the zero rate's standard error is sqrt(p(1-p)/n) = 0.0014: 6 of them = 0.0084.
    layer = keep_random(nn.Sequential(nn.Dropout(0.5))).eval()
    torch.manual_seed(0)
    out = layer(torch.ones(4000, 32))
    assert abs(float((out == 0).float().mean()) - 0.5) < 6 * (0.25 / out.numel()) ** 0.5
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1-p), as in training


def test_keep_random_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="model"):
        keep_random("net")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layers"):
        keep_random(_dropout_mlp(), layers=(int,))  # type: ignore[arg-type]


def _fgsm(library: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int) -> None:
    if library == "foolbox":
        fb.attacks.FGSM()(to_foolbox(model, bounds=(0, 1), samples=samples), x, y, epsilons=0.1)
    elif library == "torchattacks":
        torchattacks.FGSM(to_torchattacks(model, samples=samples), eps=0.1)(x, y)
    else:
        clf = to_art(model, input_shape=SHAPE, nb_classes=10, clip_values=(0, 1), samples=samples)
        FastGradientMethod(clf, eps=0.1).generate(x.numpy(), y=y.numpy())


def _identical_draw_warnings(library: str, model: nn.Module, samples: int) -> int:
    x, y = torch.rand(6, *SHAPE), torch.arange(6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fgsm(library, model.eval(), x, y, samples)
    return sum(issubclass(w.category, IdenticalDrawsWarning) for w in caught)


@pytest.mark.parametrize("library", ["foolbox", "art", "torchattacks"])
def test_an_adapter_warns_once_when_its_draws_are_identical(library: str) -> None:
    assert _identical_draw_warnings(library, _dropout_mlp(), samples=8) == 1  # dropout switched off by eval()
    assert _identical_draw_warnings(library, keep_random(_dropout_mlp()), samples=8) == 0
    assert _identical_draw_warnings(library, _dropout_mlp(), samples=1) == 0  # one draw asked for: nothing to say


def test_each_adapter_says_it_under_pythons_default_filter() -> None:
    """Two adapters of one model each warn (issue 27): the warning names stochdef's line, not torch's
    ``Module.__call__``, where the once-per-location rule kept only the first library's."""
    x, y = torch.rand(4, *SHAPE), torch.arange(4) % 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for library in ("foolbox", "torchattacks"):
            _fgsm(library, _dropout_mlp().eval(), x, y, 8)
    found = [w for w in caught if issubclass(w.category, IdenticalDrawsWarning)]
    assert len(found) == 2 and all(w.filename.endswith("draws.py") for w in found)


def test_the_draw_check_leaves_no_trace() -> None:
    # the probe's call restores the global RNG, batch-norm statistics and the layers' own generators
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.BatchNorm1d(4)
            self.generator = torch.Generator().manual_seed(5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(x) + torch.randn(x.shape, generator=self.generator) + torch.randn_like(x)

    model = Noisy().train()
    x = torch.rand(3, 4)
    state, generator_state = torch.get_rng_state(), model.generator.get_state()
    mean = model.norm.running_mean.clone()
    assert not identical_draws(model, x)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(model.generator.get_state(), generator_state)
    assert torch.equal(model.norm.running_mean, mean)
    assert identical_draws(nn.Linear(4, 2), x) and identical_draws(nn.Linear(4, 2), x, max_batch=1)


def test_the_draw_check_changes_no_result(noisy_digits_mlp: nn.Module, digits) -> None:
    from stochdef.adapters import EoT

    x = digits.x_test[:8]
    torch.manual_seed(4)
    with torch.no_grad():
        checked = to_torchattacks(noisy_digits_mlp, samples=4)(x)  # its first call runs the check first
    torch.manual_seed(4)
    with torch.no_grad():
        plain = EoT(noisy_digits_mlp, samples=4)(x)
    assert torch.equal(checked, plain)
