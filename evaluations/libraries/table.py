"""How each library runs each attack: one table for the evaluation, the cross-check, the demo and the tests.

:class:`AttackSpec` is one attack's configuration; :data:`TABLE` says, for every attack and every library
(``inhouse``, Foolbox 3, ART, torchattacks), how that library runs it (a :class:`Runner`) or why it has
no counterpart (a string). :func:`wrap` hands a model to a library: through the stochdef adapters at
``spec.samples`` (``to_foolbox``, ``to_art``, ``to_torchattacks``: the EoT attack, DESIGN.md, §C3), or
with ``native=True`` as the library's own wrapper of the bare model. :func:`run` is the one entry point;
:func:`unsupported` says why a library cannot run a spec.

The conventions are the same in every library: true labels (the targets when ``targeted``) as class
indices, no random start (but in pgd-rs, APGD and Square, which start at random), inputs in ``bounds``, ART
attacks over the whole batch (``batch_size=len(x)``). :func:`estimator` names what each attack differentiates.
The attacks and their settings are :mod:`.spec`'s; the calls each table entry makes are :mod:`.runners`'.
Importing this module imports none of the attack libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from stochdef.defenses.validation import check_choice

from . import runners as lr
from . import strong as ls
from .spec import EPS_ATTACKS, AttackSpec

if TYPE_CHECKING:
    from ..attacks import AttackResult

__all__ = ["ESTIMATORS", "LIBRARIES", "TABLE", "Runner", "estimator", "run", "run_inhouse", "unsupported", "wrap"]
Tensor = torch.Tensor
LIBRARIES: tuple[str, ...] = ("inhouse", "foolbox", "art", "torchattacks")
ESTIMATORS: dict[str, str] = {
    "inhouse": "exact mean of per-draw loss gradients (eot_gradient)",
    "art": "exact mean of per-draw loss gradients (EoTClassifier.loss_gradient)",
    "foolbox": "gradient of the mean logits (EoT module)",
    "torchattacks": "gradient of the mean logits (EoT module)",
}


Limit = tuple[Callable[[AttackSpec], bool], str]


@dataclass(frozen=True)
class Runner:
    """How one library runs one attack: ``fn(spec, wrapped_model, x, y)``, unless a limit's test holds."""

    fn: Callable[[AttackSpec, Any, Tensor, Tensor], Any]
    limits: tuple[Limit, ...] = ()


# ---- the table ------------------------------------------------------------------------------------------------


def _l2(s: AttackSpec) -> bool:
    return s.norm == "l2"


def _linf(s: AttackSpec) -> bool:
    return s.norm == "linf"


UNIT_BOX: Limit = (lambda s: s.bounds != (0.0, 1.0), "torchattacks assumes inputs in [0, 1]")
NO_LOCAL_SEARCH = "LocalSearch is in none of the three libraries (the cross-check's reference is advertorch's)"
NOT_INHOUSE = "not written in-house: stochdef runs the libraries' implementation"
NO_FOOLBOX_APGD = "Foolbox 3 has no APGD"
NO_FOOLBOX_SQUARE = "Foolbox 3 has no Square attack"
AA_SAMPLES: Limit = (
    lambda s: s.samples != 1,
    "AutoAttack-rand averages 20 draws per gradient itself (eot_iter=20): it runs at samples 1",
)
ONLY_TORCHATTACKS = "only torchattacks ships AutoAttack's rand version as one attack"

TABLE: dict[str, dict[str, Runner | str]] = {
    "fgsm": {
        "inhouse": Runner(lr.in_fgsm),
        "foolbox": Runner(lr.fb_fgsm, ((lambda s: s.targeted, "Foolbox 3's FGSM has no targeted mode"),)),
        "art": Runner(lr.art_fgsm),
        "torchattacks": Runner(lr.ta_run(lr.ta_fgsm), (UNIT_BOX,)),
    },
    "fgsm-minimal": {
        "inhouse": Runner(lr.in_fgsm_minimal),
        "foolbox": "Foolbox 3's FGSM has no minimal-eps mode (Foolbox 2.x's had)",
        "art": Runner(
            lr.art_fgsm_minimal,
            ((lambda s: s.refine, "ART's minimal FGSM stops at the first successful grid step (no refinement)"),),
        ),
        "torchattacks": "torchattacks' FGSM has no minimal-eps mode",
    },
    "bim": {
        "inhouse": Runner(lr.in_pgd),
        "foolbox": Runner(lr.fb_bim),
        "art": Runner(lr.art_bim, ((_l2, "ART's BasicIterativeMethod is L-inf only"),)),
        "torchattacks": Runner(lr.ta_run(lr.ta_bim), (UNIT_BOX, (_l2, "torchattacks' BIM is L-inf only"))),
    },
    "pgd": {
        "inhouse": Runner(lr.in_pgd),
        "foolbox": Runner(lr.fb_pgd),
        "art": Runner(lr.art_pgd),
        "torchattacks": Runner(lr.ta_run(lr.ta_pgd), (UNIT_BOX,)),
    },
    "deepfool": {
        "inhouse": Runner(lr.in_deepfool),
        "foolbox": Runner(lr.fb_deepfool),
        "art": Runner(lr.art_deepfool, ((_linf, "ART's DeepFool is L2 only"),)),
        "torchattacks": Runner(lr.ta_run(lr.ta_deepfool), (UNIT_BOX, (_linf, "torchattacks' DeepFool is L2 only"))),
    },
    "localsearch": {
        "inhouse": Runner(lr.in_local_search),
        "foolbox": NO_LOCAL_SEARCH,
        "art": NO_LOCAL_SEARCH,
        "torchattacks": NO_LOCAL_SEARCH,
    },
    "pgd-rs": {
        "inhouse": Runner(lr.in_pgd),
        "foolbox": Runner(ls.fb_pgd_rs),
        "art": Runner(ls.art_pgd_rs),
        "torchattacks": Runner(ls.ta_pgd_rs, (UNIT_BOX,)),
    },
    "apgd-ce": {
        "inhouse": NOT_INHOUSE,
        "foolbox": NO_FOOLBOX_APGD,
        "art": Runner(ls.art_apgd(None)),
        "torchattacks": Runner(ls.ta_apgd("ce"), (UNIT_BOX,)),
    },
    "apgd-dlr": {
        "inhouse": NOT_INHOUSE,
        "foolbox": NO_FOOLBOX_APGD,
        "art": Runner(ls.art_apgd("difference_logits_ratio")),
        "torchattacks": Runner(ls.ta_apgd("dlr"), (UNIT_BOX,)),
    },
    "square": {
        "inhouse": NOT_INHOUSE,
        "foolbox": NO_FOOLBOX_SQUARE,
        "art": Runner(
            ls.art_square,
            (
                (lambda s: s.targeted, "ART's SquareAttack is untargeted"),
                (_l2, "ART's L2 SquareAttack divides by zero and returns NaN inputs (seen with ART 1.20.1)"),
            ),
        ),
        "torchattacks": Runner(ls.ta_square, (UNIT_BOX,)),
    },
    "autoattack-rand": {
        "inhouse": NOT_INHOUSE,
        "foolbox": ONLY_TORCHATTACKS,
        "art": ONLY_TORCHATTACKS,
        "torchattacks": Runner(ls.ta_autoattack_rand, (UNIT_BOX, AA_SAMPLES)),
    },
}

LOGIT_ATTACKS = ("deepfool", "apgd-ce", "apgd-dlr")  # ART's DeepFool linearises logits; ART's APGD refuses probs


def estimator(library: str, spec: AttackSpec) -> str:
    """What the attack of ``spec`` differentiates (or scores) in ``library``: DESIGN.md, §C3.

    >>> estimator("art", AttackSpec("apgd-dlr", 0.1, samples=8))
    "gradient of the mean logits (EoT module, inside ART's own PyTorchClassifier for the DLR loss)"
    """
    if spec.attack == "square":
        return (
            "no gradient: scores of one draw"
            if spec.samples == 1
            else f"no gradient: mean scores of {spec.samples} draws"
        )
    if spec.attack == "autoattack-rand":
        return "exact mean of 20 per-draw loss gradients (AutoAttack-rand's eot_iter=20)"
    if spec.samples == 1:
        return "one draw per gradient (naive)"
    if library == "art" and spec.attack == "apgd-dlr":
        return "gradient of the mean logits (EoT module, inside ART's own PyTorchClassifier for the DLR loss)"
    return ESTIMATORS[library]


def unsupported(library: str, spec: AttackSpec) -> str | None:
    """Why ``library`` cannot run ``spec`` (it has no counterpart), or ``None`` when it can."""
    entry = TABLE[spec.attack][check_choice("library", library, LIBRARIES)]
    if isinstance(entry, str):
        return entry
    return next((reason for applies, reason in entry.limits if applies(spec)), None)


def wrap(library: str, spec: AttackSpec, model: nn.Module, x: Tensor, *, num_classes: int, native: bool = False) -> Any:
    """``model`` as ``library`` takes it, on ``x``'s device.

    By default through the stochdef adapter at ``spec.samples`` (ART's averages probabilities, or logits
    for DeepFool, which linearises its predictions); with ``native=True`` the library's own wrapper of the
    bare model (``foolbox.PyTorchModel``, ART's ``PyTorchClassifier``, the module itself), which only a
    one-draw spec may use. The in-house attacks take the model itself.
    """
    check_choice("library", library, LIBRARIES)
    if native and spec.samples != 1:
        raise ValueError(f"samples must be 1 with native=True (the library's own wrapper), got {spec.samples}")
    if library == "inhouse":
        return model
    if library == "foolbox":
        if native:
            import foolbox as fb

            return fb.PyTorchModel(model, bounds=spec.bounds, device=x.device)
        from stochdef.adapters import to_foolbox

        return to_foolbox(model, bounds=spec.bounds, samples=spec.samples, device=x.device)
    if library == "art":
        shape = tuple(x.shape[1:])
        if native:
            from art.estimators.classification import PyTorchClassifier

            device_type = "gpu" if x.device.type == "cuda" else "cpu"
            return PyTorchClassifier(
                model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=num_classes,
                clip_values=spec.bounds, device_type=device_type,
            )  # fmt: skip
        from stochdef.adapters import to_art

        output: Literal["probs", "logits"] = "logits" if spec.attack in LOGIT_ATTACKS else "probs"
        return to_art(
            model, input_shape=shape, nb_classes=num_classes, clip_values=spec.bounds, samples=spec.samples,
            device=x.device, output=output,
        )  # fmt: skip
    if native:
        return model
    from stochdef.adapters import to_torchattacks

    return to_torchattacks(model, samples=spec.samples, bounds=spec.bounds)


def run_inhouse(spec: AttackSpec, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    """The in-house attack of ``spec`` (``y`` = the targets when ``spec.targeted``), with its per-example result."""
    entry = TABLE[spec.attack]["inhouse"]
    if not isinstance(entry, Runner):
        raise ValueError(f"{spec.attack} is not written in-house ({entry})")
    result: AttackResult = entry.fn(spec, model, x, y)
    return result


def run(
    library: str, spec: AttackSpec, model: nn.Module, x: Tensor, y: Tensor, *, num_classes: int, native: bool = False
) -> Tensor:
    """Adversarial examples for ``(x, y)`` from ``library``'s ``spec``, on ``x``'s device and in its dtype.

    ``y`` holds the true labels, or the targets when ``spec.targeted``. A radius ``eps = 0`` returns ``x``
    unattacked. Raises ``ValueError`` with the reason when the library has no counterpart
    (:func:`unsupported`).
    """
    reason = unsupported(library, spec)
    if reason is not None:
        raise ValueError(f"library {library!r} cannot run {spec.attack}: {reason}")
    if spec.attack in EPS_ATTACKS and spec.radius == 0.0:
        return x.clone()
    if library == "inhouse":
        out: Any = run_inhouse(spec, model, x, y).x_adv
    else:
        entry = TABLE[spec.attack][library]
        assert isinstance(entry, Runner)
        out = entry.fn(spec, wrap(library, spec, model, x, num_classes=num_classes, native=native), x, y)
    if not isinstance(out, torch.Tensor):
        out = torch.from_numpy(np.asarray(out))
    return out.to(x.device, x.dtype).detach()
