"""Reproduce MWD networks' Table 1 and Figure 2 (Agrawal, de Alfaro & Helmbold 2019) as data.

* :func:`figure2`: for eps from 0.05 to 0.5, the certified accuracy of the MWD net (a lower bound on its
  accuracy under *any* attack, their Section 4) beside the best attack's accuracy (an upper bound) for the
  MWD, ReLU and sigmoid nets. MWD nets are attacked with the true gradient and with the pseudogradient
  ([psd]); the MWD upper bound is the minimum over all four attacks (the paper took the two [psd] ones).
* :func:`table1`: clean accuracy and accuracy under FGSM, I-FGSM and PGD at eps = 0.3.
* :func:`pseudo_vs_true_training`: the same MWD net trained with pseudogradients and with true gradients.

Attacks are parameters, ``attack(model, x, y, eps) -> x_adv``; the defaults are torchattacks' FGSM, BIM
(= I-FGSM: 10 steps of eps/10, their eq. 4) and PGD with random restarts, reached through
:func:`~stochdef.adapters.to_torchattacks` (deterministic models: ``samples=1``). They maximise the
cross-entropy of the model's outputs; for MWD and sigmoid nets those are the [0, 1] unit outputs, whereas
the paper attacked the loss each net was trained with (square error). Their PGD ran 100 restarts of 100
AdaDelta-tuned steps; the defaults here are far fewer (see ``PGD_STEPS``, ``PGD_RESTARTS``).

An example is counted as robust when it is classified correctly both clean and after the attack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from stochdef.adapters import to_torchattacks
from stochdef.defenses import zoo
from stochdef.defenses.data import Dataset, load
from stochdef.defenses.intervals import certified_accuracy
from stochdef.defenses.mwd import GradientMode, gradient_mode, mwd_layers, mwd_net, parameter_clamp, square_error_loss
from stochdef.defenses.training import accuracy, fit

logger = logging.getLogger(__name__)

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]
EPSILONS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
MODELS: dict[str, str] = {"mwd": "mwd-256", "relu": "relu-256", "sigmoid": "sigmoid-256"}
IFGSM_STEPS, PGD_STEPS, PGD_RESTARTS = 10, 20, 1
PAPER_TABLE1: dict[str, dict[str, float]] = {  # percent, MNIST, eps = 0.3
    "relu": {"clean": 98.62, "FGSM": 1.98, "I-FGSM": 0.06, "PGD": 81.20},
    "sigmoid": {"clean": 96.88, "FGSM": 0.71, "I-FGSM": 0.11, "PGD": 40.75},
    "mwd": {"clean": 96.96, "FGSM": 94.90, "I-FGSM": 93.27, "PGD": 92.30},
    "mwd[psd]": {"clean": 96.96, "FGSM": 85.88, "I-FGSM": 78.92, "PGD": 90.70},
}


def fgsm() -> Attack:
    """torchattacks FGSM (their eq. 3)."""
    import torchattacks

    return lambda model, x, y, eps: torchattacks.FGSM(to_torchattacks(model, samples=1), eps=eps)(x, y)


def ifgsm(*, steps: int = IFGSM_STEPS) -> Attack:
    """torchattacks BIM with ``steps`` steps of ``eps / steps``: I-FGSM as their eq. 4."""
    import torchattacks

    return lambda model, x, y, eps: torchattacks.BIM(
        to_torchattacks(model, samples=1), eps=eps, alpha=eps / steps, steps=steps
    )(x, y)


def pgd(*, steps: int = PGD_STEPS, restarts: int = PGD_RESTARTS) -> Attack:
    """torchattacks PGD (random start, step 2.5 eps / steps); an example falls if any restart breaks it."""
    import torchattacks

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        run = torchattacks.PGD(to_torchattacks(model, samples=1), eps=eps, alpha=2.5 * eps / steps, steps=steps)
        best = x.clone()
        alive = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(restarts):
            idx = alive.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv = run(x[idx], y[idx])
            with torch.no_grad():
                broken = model(adv).argmax(1) != y[idx]
            best[idx] = adv
            alive[idx[broken]] = False
        return best

    return attack


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, attack: Attack, *, batch_size: int = 500
) -> float:
    """Fraction of ``(x, y)`` classified correctly clean and after ``attack`` at radius ``eps``."""
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        adv = attack(model, xb, yb, eps)
        with torch.no_grad():
            correct += int(((model(xb).argmax(1) == yb) & (model(adv).argmax(1) == yb)).sum())
    return correct / len(x)


def _gradient_modes(model: nn.Module) -> list[GradientMode | None]:
    return ["true", "pseudo"] if mwd_layers(model) else [None]


def _attack_curves(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float], attacks: dict[str, Attack]
) -> dict[str, list[float]]:
    curves: dict[str, list[float]] = {}
    for mode in _gradient_modes(model):
        for name, attack in attacks.items():
            label = f"{name}[psd]" if mode == "pseudo" else name
            values = []
            for eps in tqdm(epsilons, desc=label, leave=False):
                if mode is None:
                    values.append(robust_accuracy(model, x, y, eps, attack))
                else:
                    with gradient_mode(model, mode):
                        values.append(robust_accuracy(model, x, y, eps, attack))
            curves[label] = values
            logger.info("%s: %s", label, [round(v, 4) for v in values])
    return curves


def _setup(
    models: dict[str, nn.Module] | None, dataset: str, n: int | None, quick: bool
) -> tuple[dict[str, nn.Module], torch.Tensor, torch.Tensor]:
    data = load(dataset)
    if models is None:
        models = {kind: zoo.load(name, dataset=dataset)[0] for kind, name in MODELS.items()}
    n = n if n is not None else (100 if quick else len(data.x_test))
    return {k: m.eval() for k, m in models.items()}, data.x_test[:n], data.y_test[:n]


def figure2(
    *,
    models: dict[str, nn.Module] | None = None,
    dataset: str = "mnist5k",
    epsilons: Sequence[float] | None = None,
    attacks: dict[str, Attack] | None = None,
    n: int | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    """Certified accuracy (lower bound) and attack accuracy (upper bounds) per eps, per model.

    ``models`` maps a label to a model (default: the zoo's ``mwd-256``, ``relu-256``, ``sigmoid-256``);
    ``attacks`` maps a name to an attack (default I-FGSM and PGD). ``quick``: 100 examples, 3 eps values,
    2-step attacks. Returns ``{"eps": [...], label: {"clean", "certified", attack curves..., "upper"}}``.
    """
    models, x, y = _setup(models, dataset, n, quick)
    if epsilons is None:
        epsilons = (0.1, 0.3, 0.5) if quick else EPSILONS
    if attacks is None:
        steps = 2 if quick else None
        attacks = {
            "I-FGSM": ifgsm(steps=steps or IFGSM_STEPS),
            "PGD": pgd(steps=steps or PGD_STEPS, restarts=1 if quick else PGD_RESTARTS),
        }
    result: dict[str, Any] = {"eps": list(epsilons), "n": len(x), "dataset": dataset, "attacks": list(attacks)}
    for label, model in models.items():
        entry: dict[str, Any] = {"clean": accuracy(model, x, y)}
        entry["certified"] = [certified_accuracy(model, x, y, eps) for eps in epsilons]
        curves = _attack_curves(model, x, y, epsilons, attacks)
        entry.update(curves)
        entry["upper"] = [min(values) for values in zip(*curves.values(), strict=True)]
        result[label] = entry
    return result


def table1(
    *,
    models: dict[str, nn.Module] | None = None,
    dataset: str = "mnist5k",
    eps: float = 0.3,
    attacks: dict[str, Attack] | None = None,
    n: int | None = None,
    quick: bool = False,
) -> dict[str, dict[str, float]]:
    """Clean accuracy and accuracy under each attack at ``eps``; MWD rows in both gradient modes."""
    models, x, y = _setup(models, dataset, n, quick)
    if attacks is None:
        steps = 2 if quick else None
        attacks = {
            "FGSM": fgsm(),
            "I-FGSM": ifgsm(steps=steps or IFGSM_STEPS),
            "PGD": pgd(steps=steps or PGD_STEPS, restarts=1 if quick else PGD_RESTARTS),
        }
    rows: dict[str, dict[str, float]] = {}
    for label, model in models.items():
        clean = accuracy(model, x, y)
        curves = _attack_curves(model, x, y, [eps], attacks)
        for mode_suffix in ("", "[psd]"):
            row = {name: curves[f"{name}{mode_suffix}"][0] for name in attacks if f"{name}{mode_suffix}" in curves}
            if row:
                rows[f"{label}{mode_suffix}"] = {"clean": clean, **row}
    return rows


def pseudo_vs_true_training(
    *, dataset: str = "mnist5k", width: int = 256, epochs: int = 30, seed: int = 0, quick: bool = False
) -> dict[str, float]:
    """Held-out accuracy of the same MWD net trained with pseudogradients and with true gradients.

    As their Section 7: hidden layers a random mix of U and U^NEG units, the last layer U^NEG.
    """
    data: Dataset = load(dataset)
    if quick:
        data, epochs = data.subset(train=500), 2
    out: dict[str, float] = {}
    for mode in ("pseudo", "true"):
        torch.manual_seed(seed)
        net = mwd_net((data.input_dim, width, width, width, data.num_classes), units=("mixed",) * 3 + ("nand",))
        with gradient_mode(net, mode):
            hist = fit(net, data.x_train, data.y_train, epochs=epochs, batch_size=100, lr=5.0, optimizer="adadelta",
                       loss=square_error_loss, after_step=parameter_clamp(net), x_val=data.x_test,
                       y_val=data.y_test, seed=seed, desc=f"mwd ({mode} gradient)")  # fmt: skip
        out[mode] = hist.final_accuracy
    return out
