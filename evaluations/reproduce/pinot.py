"""Pinot et al. (NeurIPS 2019) on a model: Monte-Carlo label distributions, Theorem 2's guaranteed accuracy
(their Figure 1 (b), (c)), Theorem 3's certified radii, an EoT attack, and the noise-scale sweep.

The pure bounds are in :mod:`stochdef.defenses.renyi`; this module estimates what they need from a model.
``H(M(x))`` is the entropy of the predicted-label distribution of the randomized model at ``x``; it is
estimated from ``draws`` forward passes (the paper uses ``10^4``), replicated along the batch and chunked
by the EoT engine (:func:`stochdef.adapters.expectation`) so no call sees more than ``max_batch`` rows.
The plug-in entropy of ``N`` draws underestimates ``H`` by at most about ``(K - 1) / (2 N)`` nats
(Miller-Madow; ``4.5e-4`` for ten classes and ``10^4`` draws), which loosens nothing worth reporting.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from stochdef.defenses.noise import NoiseInjection
    >>> net = nn.Sequential(NoiseInjection(std=0.5), nn.Flatten(), nn.Linear(4, 3))
    >>> curve = guaranteed_accuracy(net, torch.rand(8, 4), torch.zeros(8, dtype=torch.long), radii=[0, 0.1], draws=64)
    >>> curve.guaranteed.shape
    torch.Size([2])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from stochdef.adapters import DEFAULT_MAX_BATCH, expectation, to_torchattacks
from stochdef.defenses import load_dataset
from stochdef.defenses.noise import NoiseInjection, noise_layers
from stochdef.defenses.renyi import (
    SENSITIVITY_NORM,
    certified_epsilon,
    entropy,
    guaranteed_accuracy_bound,
    input_radius,
    renyi_epsilon,
    risk_gap_bound,
)
from stochdef.defenses.sensitivity import NORMS, sequential_sensitivity
from stochdef.defenses.validation import check_choice, check_int, check_range
from stochdef.defenses.zoo import TrainSettings
from stochdef.defenses.zoo.noise import noisy_mlp, train_noisy

logger = logging.getLogger(__name__)


@torch.no_grad()
def label_distribution(
    model: nn.Module, x: torch.Tensor, *, draws: int, num_classes: int | None = None, max_batch: int = DEFAULT_MAX_BATCH
) -> torch.Tensor:
    """Per row of ``x``, the frequencies of the ``draws`` predicted labels ``argmax model(x)``: ``(B, K)``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
        >>> label_distribution(net, torch.rand(4, 2), draws=10).sum(1)
        tensor([1., 1., 1., 1.])
    """
    draws = check_int("draws", draws)
    model.eval()
    k = num_classes if num_classes is not None else int(model(x[:1]).shape[-1])

    def one_hot(out: torch.Tensor) -> torch.Tensor:
        return F.one_hot(out.argmax(dim=-1), k).to(x.dtype)

    return expectation(model, x, samples=draws, transform=one_hot, max_batch=max_batch)


@dataclass(frozen=True)
class GuaranteeCurve:
    """Theorem 2 on one model: the guaranteed accuracy at each radius of a ``norm`` attack."""

    distribution: str
    std: float
    norm: str
    lambda_: float
    draws: int
    n: int
    accuracy: float  # 1 - Risk(M): expected single-draw accuracy
    mean_exp_neg_entropy: float  # E_x[e^{-H(M(x))}]
    radii: torch.Tensor
    epsilon: torch.Tensor  # Theorem 1 level at each radius
    gap: torch.Tensor  # Theorem 2 bound on |Risk_alpha - Risk|
    guaranteed: torch.Tensor  # max(0, accuracy - gap)

    def as_dict(self) -> dict[str, Any]:
        return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in asdict(self).items()}


def find_noise(model: nn.Module) -> tuple[NoiseInjection, Callable[[float, str, str, int], float]]:
    """The first noise layer of ``model`` and the sensitivity of what runs before it.

    The noise must be a child of a top-level ``nn.Sequential`` (as :func:`inject_noise` builds with an int
    ``at``); the layers before it are bounded by :func:`sequential_sensitivity`. Later noise layers are
    post-processing and cannot raise the Renyi divergence (data processing inequality, Proposition 2).
    """
    layers = noise_layers(model)
    if not layers:
        raise ValueError("model has no NoiseInjection layer: pass distribution=, std= and sensitivity=")
    name, first = layers[0]
    if name == "" or not isinstance(model, nn.Sequential) or "." in name:
        raise ValueError(f"cannot locate the layers before noise layer {name!r}: pass sensitivity=")
    prefix = list(model)[: int(name)]

    def sens(radius: float, norm: str, output_norm: str, dim: int) -> float:
        return sequential_sensitivity(prefix, radius, norm=norm, output_norm=output_norm, dim=dim)

    return first, sens


def guaranteed_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    radii: Sequence[float],
    norm: str = "l2",
    lambda_: float = 1.0,
    draws: int = 10_000,
    distribution: str | None = None,
    std: float | None = None,
    sensitivity: Callable[[float], float] | None = None,
    labels: torch.Tensor | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> GuaranteeCurve:
    """Theorem 2's lower bound on the accuracy under any ``norm`` attack of each radius (Figure 1 (b), (c)).

    ``accuracy - (1 - e^{-epsilon(alpha)} E_x[e^{-H(M(x))}])``, floored at 0, where ``accuracy`` and the
    entropies come from ``draws`` Monte-Carlo draws per input and ``epsilon(alpha)`` is Theorem 1's level
    for the model's first noise layer. ``distribution`` and ``std`` are read from that layer (passing them
    checks they match); ``sensitivity(radius)`` overrides the computed sensitivity of the layers before it
    (it must be in the l2 norm for Gaussian noise, l1 for Laplace). ``lambda_ = 1`` (KL) gives the
    tightest bound since the Renyi divergence grows with its order. ``labels`` reuses a
    :func:`label_distribution` of ``x`` already computed (e.g. for several norms).
    """
    check_choice("norm", norm, NORMS)
    if y.shape != (x.shape[0],) or y.is_floating_point():
        raise ValueError(f"y must hold one integer label per row of x, shape ({x.shape[0]},), got {tuple(y.shape)}")
    radii_t = torch.as_tensor([check_range("radii", r, low=0.0) for r in radii], dtype=torch.float64)
    if sensitivity is None:
        layer, prefix_sensitivity = find_noise(model)
        for arg, given, actual in (("distribution", distribution, layer.distribution), ("std", std, layer.std)):
            if given is not None and given != actual:
                raise ValueError(f"{arg}={given!r} does not match the model's noise layer ({actual!r})")
        distribution, std = layer.distribution, layer.std
        dim = math.prod(x.shape[1:])
        out = SENSITIVITY_NORM[distribution]

        def sensitivity(r: float) -> float:
            return prefix_sensitivity(r, norm, out, dim)

    if distribution is None or std is None:
        raise ValueError("with sensitivity= given, pass distribution= and std= too")
    if labels is None:
        labels = label_distribution(model, x, draws=draws, max_batch=max_batch)
    elif labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have one row per row of x, got shape {tuple(labels.shape)}")
    accuracy = float(labels.gather(1, y.to(labels.device)[:, None]).mean())
    h = entropy(labels.double().cpu())
    eps = torch.tensor(
        [renyi_epsilon(sensitivity(float(r)), distribution=distribution, std=std, lambda_=lambda_) for r in radii_t],
        dtype=torch.float64,
    )
    return GuaranteeCurve(
        distribution, float(std), norm, float(lambda_), draws, len(x), accuracy, float(torch.exp(-h).mean()),
        radii_t, eps, risk_gap_bound(eps, h), guaranteed_accuracy_bound(accuracy, eps, h),
    )  # fmt: skip


def certified_radius(
    model: nn.Module, x: torch.Tensor, *, lambda_: float, delta: float, norm: str = "l2", draws: int = 10_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Theorem 3 for noise on the input: per row, the majority-vote label and the radius it is certified to.

    ``M`` is the one-hot predicted label, so ``E[y]`` is the label distribution (estimated from ``draws``
    draws: a Monte-Carlo estimate, not a high-probability certificate). Radius 0 means not certified.
    """
    layer, _ = find_noise(model)
    if not (isinstance(model, nn.Sequential) and model[0] is layer):
        raise ValueError("certified_radius needs the noise on the input (the model's first layer)")
    labels = label_distribution(model, x, draws=draws)
    eps_star = certified_epsilon(labels.double().cpu(), lambda_=lambda_, delta=delta)
    dim = math.prod(x.shape[1:])
    radius = torch.tensor(
        [
            input_radius(e, distribution=layer.distribution, std=layer.std, norm=norm, dim=dim, lambda_=lambda_)
            if e > 0
            else 0.0
            for e in eps_star.tolist()
        ]
    )
    return labels.argmax(1).cpu(), radius


def eot_pgd_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 20,
    samples: int = 80,
    judge_draws: int = 100,
) -> float:
    """Expected single-draw accuracy on torchattacks' L-inf PGD against the model averaged over ``samples``.

    The attack holds ``to_torchattacks(model, samples=samples)`` (mean logits over the draws, as the paper's
    EoT does), step ``eps / 8``, no random start; accuracy is ``1 - Risk(M)`` on the result, estimated from
    ``judge_draws`` fresh draws per input, like the clean accuracy of :func:`guaranteed_accuracy`.
    """
    import torchattacks

    check_range("eps", eps, low=0.0)
    attack = torchattacks.PGD(
        to_torchattacks(model, samples=samples), eps=eps, alpha=eps / 8, steps=steps, random_start=False
    )
    x_adv = attack(x, y)
    labels = label_distribution(model, x_adv, draws=judge_draws)
    return float(labels.gather(1, y.to(labels.device)[:, None]).mean())


def sweep(
    *,
    distributions: Sequence[str] = ("gaussian", "laplace"),
    stds: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
    dataset: str = "mnist5k",
    radii: Sequence[float] = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0),
    norms: Sequence[str] = ("l2", "l1"),
    lambda_: float = 1.0,
    draws: int = 10_000,
    n_test: int = 1000,
    attack_eps: Sequence[float] = (0.1,),
    attack_samples: int = 80,
    attack_steps: int = 20,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train the noise MLP at each (distribution, std), plus a no-noise baseline, and measure each.

    Per model: the guaranteed accuracy of Theorem 2 at each ``radii`` of an attack in each of ``norms``
    (``row["curves"][norm]``, one set of ``draws`` Monte-Carlo draws shared by all), the clean expected
    accuracy, the ensemble (majority-vote) accuracy, and at each of ``attack_eps`` (none: no attack) the
    accuracy under an EoT L-inf PGD (:func:`eot_pgd_accuracy`), ``row["attack_accuracy"][i]`` at
    ``row["attack"]["eps"][i]``. ``quick`` trains 2 epochs and cuts draws, test points and
    attack cost so the whole sweep takes seconds. Returns one dict per model (no printing).
    """
    data = load_dataset(dataset)
    if quick:
        draws, n_test, attack_samples, attack_steps = min(draws, 200), min(n_test, 100), 8, 5
    x, y = data.x_test[:n_test].to(device), data.y_test[:n_test].to(device)
    settings = TrainSettings(seed=seed, quick=quick, device=device, progress=False)
    configs = [("gaussian", 0.0)] + [(d, float(s)) for d in distributions for s in stds]
    rows: list[dict[str, Any]] = []
    for dist, std in tqdm(configs, desc="noise sweep", disable=not progress):
        torch.manual_seed(seed)
        model = noisy_mlp(data.input_shape, data.num_classes, distribution=dist, std=std)
        start = time.perf_counter()
        train_noisy(model, data, settings)
        model.to(device).eval()
        trained = time.perf_counter() - start
        torch.manual_seed(seed + 1)
        labels = label_distribution(model, x, draws=draws)
        curves = {
            n: guaranteed_accuracy(model, x, y, radii=radii, norm=n, lambda_=lambda_, draws=draws, labels=labels)
            for n in norms
        }
        first = next(iter(curves.values()))
        row: dict[str, Any] = {
            "distribution": dist if std > 0 else "none",
            "std": std,
            "train_seconds": round(trained, 1),
            "draws": draws,
            "n": len(x),
            "lambda_": lambda_,
            "accuracy": first.accuracy,
            "mean_exp_neg_entropy": first.mean_exp_neg_entropy,
            "ensemble_accuracy": float((labels.argmax(1) == y).float().mean()),
            "curves": {n: c.as_dict() for n, c in curves.items()},
        }
        if attack_eps:
            row["attack"] = {"eps": list(attack_eps), "steps": attack_steps, "samples": attack_samples}
            row["attack_accuracy"] = [
                eot_pgd_accuracy(model, x, y, eps=eps, steps=attack_steps, samples=attack_samples) for eps in attack_eps
            ]
        logger.info("%s std %s: accuracy %.4f", dist, std, first.accuracy)
        rows.append(row)
    return rows
