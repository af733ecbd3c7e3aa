"""Handing a model to a library and running one attack on it: :func:`wrap`, :func:`run`, :func:`run_inhouse`,
and :func:`unsupported` / :func:`estimator` (thin functions over the attack's methods).

:func:`wrap` hands a model to a library through the stochdef adapters at ``attack.samples`` (``to_foolbox``,
``to_art``, ``to_torchattacks``: the EoT attack, DESIGN.md, §C3), or with ``native=True`` as the library's
own wrapper of the bare model. :func:`run` is the one entry point; it runs the attack with the model's parameters
frozen (:func:`frozen`): an attack needs the input's gradient only, and the libraries that call
``loss.backward()`` (Foolbox's ``value_and_grad``, ART's own ``PyTorchClassifier``) would otherwise compute every
parameter's gradient at each step as well (on Adv-BNN's per-example kernels about as costly as the input's)
and leave them accumulated in the caller's model. Importing this module imports none of the attack libraries.

>>> from stochdef.evaluations.libraries import FGSM, PGD, unsupported
>>> unsupported("foolbox", FGSM(eps=0.1, targeted=True))
"Foolbox 3's FGSM has no targeted mode"
>>> unsupported("art", PGD(eps=0.1)) is None
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from torch import nn

from stochdef.defenses.validation import check_choice

from .base import LIBRARIES, Attack, Runner

if TYPE_CHECKING:
    from ..attacks import AttackResult

Tensor = torch.Tensor


def unsupported(library: str, attack: Attack) -> str | None:
    """Why ``library`` cannot run ``attack`` (it has no counterpart), or ``None`` when it can."""
    return attack.unsupported(library)


def estimator(library: str, attack: Attack) -> str:
    """What ``attack`` differentiates (or scores) in ``library``: DESIGN.md, §C3.

    >>> from stochdef.evaluations.libraries import APGDDLR
    >>> estimator("foolbox", APGDDLR(eps=0.1))
    'one draw per gradient (naive)'
    """
    return attack.estimator(library)


def wrap(library: str, attack: Attack, model: nn.Module, x: Tensor, *, num_classes: int, native: bool = False) -> Any:
    """``model`` as ``library`` takes it, on ``x``'s device.

    By default through the stochdef adapter at ``attack.samples`` (ART's returns ``attack.art_output``:
    probabilities, or logits for the attacks that need them); with ``native=True`` the library's own wrapper
    of the bare model (``foolbox.PyTorchModel``, ART's ``PyTorchClassifier``, the module itself), which only
    a one-draw attack may use. The in-house attacks take the model itself.
    """
    check_choice("library", library, LIBRARIES)
    if native and attack.samples != 1:
        raise ValueError(f"samples must be 1 with native=True (the library's own wrapper), got {attack.samples}")
    if library == "inhouse":
        return model
    if library == "foolbox":
        if native:
            import foolbox as fb

            return fb.PyTorchModel(model, bounds=attack.bounds, device=x.device)
        from stochdef.adapters import to_foolbox

        return to_foolbox(model, bounds=attack.bounds, samples=attack.samples, device=x.device)
    if library == "art":
        shape = tuple(x.shape[1:])
        if native:
            from art.estimators.classification import PyTorchClassifier

            device_type = "gpu" if x.device.type == "cuda" else "cpu"
            return PyTorchClassifier(
                model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=num_classes,
                clip_values=attack.bounds, device_type=device_type,
            )  # fmt: skip
        from stochdef.adapters import to_art

        output = cast(Literal["probs", "logits"], attack.art_output)
        return to_art(
            model, input_shape=shape, nb_classes=num_classes, clip_values=attack.bounds, samples=attack.samples,
            device=x.device, output=output,
        )  # fmt: skip
    if native:
        return model
    from stochdef.adapters import to_torchattacks

    return to_torchattacks(model, samples=attack.samples, bounds=attack.bounds)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """``model``'s parameters that require a gradient set not to for the block, and set back after it (also on
    an error). Forward values and input gradients are unchanged; no parameter gradient is computed or stored.

    >>> net = nn.Linear(2, 2)
    >>> with frozen(net):
    ...     x = torch.ones(1, 2, requires_grad=True)
    ...     net(x).sum().backward()
    >>> net.weight.grad is None, net.weight.requires_grad, x.grad.shape
    (True, True, torch.Size([1, 2]))
    """
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def run_inhouse(attack: Attack, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    """The in-house ``attack`` (``y`` = the targets when ``attack.targeted``), with its per-example result."""
    entry = attack.runners["inhouse"]
    if not isinstance(entry, Runner):
        raise ValueError(f"{attack.name} is not written in-house ({entry})")
    result: AttackResult = entry.fn(attack, model, x, y)
    return result


def run(
    library: str, attack: Attack, model: nn.Module, x: Tensor, y: Tensor, *, num_classes: int, native: bool = False
) -> Tensor:
    """Adversarial examples for ``(x, y)`` from ``library``'s ``attack``, on ``x``'s device and in its dtype.

    ``y`` holds the true labels, or the targets when ``attack.targeted``. A radius ``eps = 0`` returns ``x``
    unattacked. Raises ``ValueError`` with the reason when the library has no counterpart
    (:func:`unsupported`).
    """
    reason = unsupported(library, attack)
    if reason is not None:
        raise ValueError(f"library {library!r} cannot run {attack.name}: {reason}")
    if attack.takes_eps and attack.radius == 0.0:
        return x.clone()
    with frozen(model):
        if library == "inhouse":
            out: Any = run_inhouse(attack, model, x, y).x_adv
        else:
            entry = attack.runners[library]
            assert isinstance(entry, Runner)
            out = entry.fn(attack, wrap(library, attack, model, x, num_classes=num_classes, native=native), x, y)
    if not isinstance(out, torch.Tensor):
        out = torch.from_numpy(np.asarray(out))
    return out.to(x.device, x.dtype).detach()
