"""The cross-check's matched configurations: one attack, the same settings, in-house and in each library.

Deterministic models go to each library as that library's own wrapper (``foolbox.PyTorchModel``, ART's
``PyTorchClassifier``, the bare module for torchattacks); randomized models go through the stochdef
adapters (``to_foolbox``, ``to_art``, ``to_torchattacks``) at the in-house attack's ``samples``. Labels
are the true labels (or targets) everywhere; every result comes back as a tensor on ``x``'s device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from stochdef.adapters import EoT, to_art, to_foolbox, to_torchattacks

from .. import attacks

LIBRARIES: tuple[str, ...] = ("foolbox", "art", "torchattacks")
Tensor = torch.Tensor


@dataclass(frozen=True)
class Setting:
    """One attack's matched configuration."""

    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    samples: int = 1
    bounds: tuple[float, float] = (0.0, 1.0)


def inhouse(setting: Setting, model: nn.Module, x: Tensor, y: Tensor) -> attacks.AttackResult:
    """Run the in-house attack of ``setting`` (``y`` = targets for the targeted attacks)."""
    p = setting.params
    kw: dict[str, Any] = {"bounds": setting.bounds}
    name = setting.attack
    if name.startswith("fgsm-minimal"):
        return attacks.fgsm_minimal(model, x, y, epsilons=p["epsilons"], max_eps=p["max_eps"], refine=False, **kw)
    if name.startswith("fgsm"):
        return attacks.fgsm(model, x, y, eps=p["eps"], samples=setting.samples, targeted=p.get("targeted", False), **kw)
    if name.startswith(("pgd", "bim")):
        return attacks.pgd(
            model,
            x,
            y,
            eps=p["eps"],
            step=p["step"],
            steps=p["steps"],
            norm=p.get("norm", "linf"),
            samples=setting.samples,
            targeted=p.get("targeted", False),
            **kw,
        )
    if name.startswith("deepfool"):
        return attacks.deepfool(
            model,
            x,
            y,
            steps=p["steps"],
            overshoot=p["overshoot"],
            candidates=p["candidates"],
            norm=p["norm"],
            samples=setting.samples,
            **kw,
        )
    if name.startswith("localsearch"):
        target = model if setting.samples == 1 else EoT(model, samples=setting.samples)
        return attacks.local_search(target, x, y, rounds=p["rounds"], select=p["select"], **kw)
    raise ValueError(f"attack must be a known cross-check attack, got {name!r}")


# ---- Foolbox 3 ------------------------------------------------------------------------------------------


def _foolbox(setting: Setting, model: nn.Module, x: Tensor, y: Tensor, randomized: bool) -> Tensor | None:
    import foolbox as fb

    p = setting.params
    if randomized:
        fmodel = to_foolbox(model, bounds=setting.bounds, samples=setting.samples, device=x.device)
    else:
        fmodel = fb.PyTorchModel(model, bounds=setting.bounds, device=x.device)
    criterion = fb.criteria.TargetedMisclassification(y) if p.get("targeted") else y
    name = setting.attack
    if name.startswith("fgsm-minimal") or (name.startswith("fgsm") and p.get("targeted")):
        return None  # Foolbox 3's FGSM is untargeted and has no minimal-eps mode
    if name.startswith("fgsm"):
        return fb.attacks.FGSM()(fmodel, x, criterion, epsilons=p["eps"])[1]
    if name.startswith(("pgd", "bim")):
        kw = {"abs_stepsize": p["step"], "steps": p["steps"]}
        attack: Any
        if name.startswith("bim"):
            attack = fb.attacks.LinfBasicIterativeAttack(**kw)
        elif p.get("norm", "linf") == "l2":
            attack = fb.attacks.L2PGD(random_start=False, **kw)
        else:
            attack = fb.attacks.LinfPGD(random_start=False, **kw)
        return attack(fmodel, x, criterion, epsilons=p["eps"])[1]
    if name.startswith("deepfool"):
        cls: Any = fb.attacks.L2DeepFoolAttack if p["norm"] == "l2" else fb.attacks.LinfDeepFoolAttack
        attack = cls(steps=p["steps"], candidates=p["candidates"], overshoot=p["overshoot"])
        return attack(fmodel, x, criterion, epsilons=None)[0]
    return None


# ---- ART ------------------------------------------------------------------------------------------------


def _art_classifier(setting: Setting, model: nn.Module, x: Tensor, randomized: bool, num_classes: int) -> Any:
    from art.estimators.classification import PyTorchClassifier

    shape = tuple(x.shape[1:])
    if randomized:
        output = "logits" if setting.attack.startswith("deepfool") else "probs"
        return to_art(
            model,
            input_shape=shape,
            nb_classes=num_classes,
            clip_values=setting.bounds,
            samples=setting.samples,
            device=x.device,
            output=output,
        )
    return PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=num_classes,
        clip_values=setting.bounds,
        device_type="gpu" if x.device.type == "cuda" else "cpu",
    )


def _art(setting: Setting, model: nn.Module, x: Tensor, y: Tensor, randomized: bool, num_classes: int) -> Tensor | None:
    from art.attacks.evasion import BasicIterativeMethod, DeepFool, FastGradientMethod, ProjectedGradientDescent

    p, name, n = setting.params, setting.attack, len(x)
    clf = _art_classifier(setting, model, x, randomized, num_classes)
    targeted = bool(p.get("targeted", False))
    if name.startswith("fgsm-minimal"):
        attack: Any = FastGradientMethod(
            clf, eps=p["max_eps"], eps_step=p["max_eps"] / p["epsilons"], minimal=True, batch_size=n
        )
    elif name.startswith("fgsm"):
        attack = FastGradientMethod(clf, eps=p["eps"], targeted=targeted, batch_size=n)
    elif name.startswith("bim"):
        attack = BasicIterativeMethod(
            clf, eps=p["eps"], eps_step=p["step"], max_iter=p["steps"], targeted=targeted, batch_size=n, verbose=False
        )
    elif name.startswith("pgd"):
        attack = ProjectedGradientDescent(
            clf,
            norm=np.inf if p.get("norm", "linf") == "linf" else 2,
            eps=p["eps"],
            eps_step=p["step"],
            max_iter=p["steps"],
            num_random_init=0,
            targeted=targeted,
            batch_size=n,
            verbose=False,
        )
    elif name.startswith("deepfool"):
        if p["norm"] != "l2":
            return None  # ART's DeepFool is L2 only
        attack = DeepFool(
            clf, max_iter=p["steps"], epsilon=p["overshoot"], nb_grads=p["candidates"], batch_size=n, verbose=False
        )
        return torch.from_numpy(attack.generate(x.detach().cpu().numpy())).to(x.device)
    else:
        raise ValueError(f"no ART counterpart for {name!r}")
    out = attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())
    return torch.from_numpy(out).to(x.device)


# ---- torchattacks -----------------------------------------------------------------------------------------


def _torchattacks(setting: Setting, model: nn.Module, x: Tensor, y: Tensor, randomized: bool) -> Tensor | None:
    import torchattacks as ta

    p, name = setting.params, setting.attack
    if setting.bounds != (0.0, 1.0) or name.startswith("fgsm-minimal"):
        return None  # torchattacks assumes inputs in [0, 1] and has no minimal-eps FGSM
    target = to_torchattacks(model, samples=setting.samples) if randomized else model
    if name.startswith("fgsm"):
        attack = ta.FGSM(target, eps=p["eps"])
    elif name.startswith("bim"):
        attack = ta.BIM(target, eps=p["eps"], alpha=p["step"], steps=p["steps"])
    elif name.startswith("pgd") and p.get("norm", "linf") == "l2":
        attack = ta.PGDL2(target, eps=p["eps"], alpha=p["step"], steps=p["steps"], random_start=False)
    elif name.startswith("pgd"):
        attack = ta.PGD(target, eps=p["eps"], alpha=p["step"], steps=p["steps"], random_start=False)
    elif name.startswith("deepfool") and p["norm"] == "l2":
        attack = ta.DeepFool(target, steps=p["steps"], overshoot=p["overshoot"])
    else:
        return None
    if p.get("targeted"):
        attack.set_mode_targeted_by_label(quiet=True)
    return attack(x, y).detach()


def eotpgd(setting: Setting, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """torchattacks' ``EOTPGD`` on the raw randomized model: the exact EoT gradient, a Python loop of draws."""
    import torchattacks as ta

    p = setting.params
    attack = ta.EOTPGD(
        model, eps=p["eps"], alpha=p["step"], steps=p["steps"], eot_iter=setting.samples, random_start=False
    )
    return attack(x, y).detach()


def library(
    name: str, setting: Setting, model: nn.Module, x: Tensor, y: Tensor, *, randomized: bool, num_classes: int
) -> Tensor | None:
    """Run ``setting`` in library ``name``; ``None`` when the library has no counterpart."""
    if name == "foolbox":
        return _foolbox(setting, model, x, y, randomized)
    if name == "art":
        return _art(setting, model, x, y, randomized, num_classes)
    if name == "torchattacks":
        return _torchattacks(setting, model, x, y, randomized)
    raise ValueError(f"library must be one of {list(LIBRARIES)}, got {name!r}")


# ---- advertorch (LocalSearch reference) ------------------------------------------------------------------


def import_advertorch() -> tuple[Any, str]:
    """``(LocalSearchAttack, "")``, or ``(None, reason)`` when advertorch 0.2.3 cannot be imported."""
    try:
        import torch.autograd.gradcheck  # noqa: F401  (advertorch imports a helper removed from torch)

        module = sys.modules["torch.autograd.gradcheck"]
        if not hasattr(module, "zero_gradients"):
            module.zero_gradients = lambda x: None  # type: ignore[attr-defined]
        from advertorch.attacks import LocalSearchAttack
    except ImportError as err:
        return None, f"advertorch is not importable ({err}); install the `localsearch` extra (tox -e localsearch)"
    return LocalSearchAttack, ""


class _Counting(nn.Module):
    """Counts the rows the wrapped model is asked to score."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        return self.model(x)


def advertorch_local_search(setting: Setting, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor] | None:
    """advertorch's ``LocalSearchAttack`` per example (it has no batch mode): ``(x_adv, queries)``.

    Configured as Foolbox 2.x (``comply_with_foolbox=True``: the image accumulates its perturbation
    across rounds and probes are not clipped; without it advertorch restarts from the clean image every
    round). ``select="highest"`` flips its pixel ranking to Foolbox 2.4's (scores ``1 - p``); its own is
    ``"lowest"``. Outputs outside the bounds (advertorch may return a probe) are replaced by ``x``.
    """
    cls, _ = import_advertorch()
    if cls is None:
        return None
    select: Callable[[Any], Any] = (lambda s: 1.0 - s) if setting.params["select"] == "highest" else (lambda s: s)

    class Matched(cls):  # type: ignore[misc, valid-type]
        def _rescale_x_score(self, predict, images, label, ori, best_dist):  # type: ignore[no-untyped-def]
            scores, best_img, best = super()._rescale_x_score(predict, images, label, ori, best_dist)
            return select(scores), best_img, best

    target = model if setting.samples == 1 else EoT(model, samples=setting.samples)
    counting = _Counting(target)
    low, high = setting.bounds
    p = setting.params
    attack = Matched(
        counting, clip_min=low, clip_max=high, p=10.0, r=1.5, d=5, t=5, round_ub=p["rounds"], comply_with_foolbox=True
    )
    outs, queries = [], []
    state = np.random.get_state()  # advertorch re-seeds NumPy's global RNG for every example
    for i in range(len(x)):
        counting.rows = 0
        with torch.no_grad():
            out = attack.perturb(x[i : i + 1], y[i : i + 1]).detach()
        if bool((out < low).any() or (out > high).any()):
            out = x[i : i + 1]
        outs.append(out)
        queries.append(counting.rows)
    np.random.set_state(state)
    return torch.cat(outs), torch.tensor(queries, device=x.device)
