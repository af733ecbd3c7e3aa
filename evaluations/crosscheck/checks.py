"""The cross-check's comparisons: each returns :class:`Row` s (one per attack x library pair) with a verdict.

* exact (FGSM, PGD/BIM without random start): ``max |x_adv - x_adv'|``; fail above :data:`EXACT_TOL`
  (L2 PGD against ART and torchattacks, which round the L2 normalization differently: success rates).
* minimal FGSM: the step-size index found per example, within one grid step of ART's ``minimal=True``.
* DeepFool: success agreement and the L2 norm ratio where both succeed; every disagreement must be
  explained (a diagnosed stall at the box edge, or the in-house attack running out of steps), and the
  median ratio must lie within the overshoot conventions' band.
* LocalSearch vs advertorch: success rates within :func:`~stochdef.evaluations.stats.two_proportion_tolerance`,
  median queries with overlapping distribution-free median intervals.
* randomized models: robust accuracy of each library's attack through the adapters against in-house at
  equal ``samples``; agreement = overlapping Wilson intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import libraries
from ..libraries import Attack, DeepFool, FGSMMinimal, unsupported
from ..stats import two_proportion_tolerance
from .models import Trained

LIBRARIES: tuple[str, ...] = tuple(lib for lib in libraries.DEFAULT_LIBRARIES if lib != "inhouse")

EXACT_TOL = 1e-6
L2_TOL = 1e-5  # L2 PGD vs ART / torchattacks: how far apart an example must be to count as diverged
CONFIDENCE = 0.99  # intervals of the randomized and query comparisons
Z_RATES = 4.0  # standard errors allowed between two success rates (a false alarm about once in 16,000)
SLACK = 0.005  # numerical slack of the DeepFool norm-ratio band
L2_DIFFERENCES = {
    "art": "ART clips to the box before it projects onto the L2 ball; for L2 (unlike L-inf) the two do not "
    "commute, so its points differ by design once both constraints bind",
    "torchattacks": "same order, different rounding (g / (||g|| + 1e-10), torch.norm); ulp differences can "
    "grow over the steps",
}
DEEPFOOL_DIFFERENCES = {
    "foolbox": "same conventions as in-house (the authors' code)",
    "art": "reference = clean prediction; overshoot applied once after its loop, so its points lie up to "
    "(1+overshoot) further out",
    "torchattacks": "overshoot on every step and the iterate clipped every step: it converges onto the boundary "
    "without crossing when the clip removes part of the step",
}


@dataclass(frozen=True)
class Setting:
    """One cross-check configuration: its row label (``pgd-l2``, ``fgsm-targeted``, ...) and the attack."""

    label: str
    attack: Attack


@dataclass
class Row:
    """One attack x library comparison on one model."""

    model: str
    attack: str
    library: str
    kind: str
    n: int
    metric: str
    value: str
    passed: bool | None  # None: skipped
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The predicted class of ``model`` (one draw of a randomized model)."""
    with torch.no_grad():
        return model(x).argmax(1)


def reseed(seed: int) -> None:
    """Seed torch and NumPy (every library's attack starts from the same state)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def n_a(row: Row, reason: str) -> Row:
    """``row`` marked skipped: the library has no counterpart, for ``reason``."""
    row.value, row.note = "n/a", f"no counterpart in this library: {reason}"
    return row


def each_library(
    trained: Trained,
    setting: Setting,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    kind: str,
    metric: str,
    inhouse_seconds: float,
) -> Iterator[tuple[Row, torch.Tensor | None]]:
    """Per library, its row and its adversarial examples of ``setting`` made on its own wrapper of the model
    (seeded with ``seed``, timed); ``None`` beside an n/a row where the library has no counterpart."""
    for name in LIBRARIES:
        row = Row(trained.case.name, setting.label, name, kind, len(x), metric, "", None)
        reason = unsupported(name, setting.attack)
        if reason is not None:
            row.seconds = {"inhouse": inhouse_seconds, name: 0.0}
            yield n_a(row, reason), None
            continue
        reseed(seed)
        run = partial(
            libraries.run, name, setting.attack, trained.model, x, y, num_classes=trained.data.num_classes, native=True
        )
        theirs, seconds = timed(run, x.device)
        row.seconds = {"inhouse": inhouse_seconds, name: seconds}
        yield row, theirs


# ---- exact parity -------------------------------------------------------------------------------------------


def exact_rows(trained: Trained, setting: Setting, x: torch.Tensor, y: torch.Tensor, seed: int) -> list[Row]:
    """Bit-level comparison of FGSM / PGD / BIM on a deterministic model.

    L2 PGD is bit-identical with Foolbox only: ART clips before it projects (for L2 the two do not commute)
    and torchattacks rounds the normalization differently (``g / (||g|| + 1e-10)``; ulps that can grow over
    the steps), so those two rows compare success rates instead (:data:`L2_DIFFERENCES`).
    """
    model, spec = trained.model, setting.attack
    reseed(seed)
    ours, t_ours = timed(lambda: libraries.run_inhouse(spec, model, x, y).x_adv, x.device)
    l2 = spec.norm == "l2"
    rows = []
    metric = "max |x_adv - x_adv'|"
    for row, theirs in each_library(
        trained, setting, x, y, seed=seed, kind="exact", metric=metric, inhouse_seconds=t_ours
    ):
        rows.append(row)
        if theirs is None:
            continue
        name = row.library
        diff = float((theirs - ours).abs().max())
        row.value = f"{diff:.3g}" + (" (bit-identical)" if diff == 0.0 else "")
        row.passed = diff <= EXACT_TOL
        row.details = {"max_abs_diff": diff, "tolerance": EXACT_TOL, "bit_identical": diff == 0.0}
        if l2 and name != "foolbox":
            n = len(x)
            s1, s2 = int((predict(model, ours) != y).sum()), int((predict(model, theirs) != y).sum())
            tol = two_proportion_tolerance(s1, n, s2, n, z=Z_RATES)
            apart = int(((theirs - ours).flatten(1).abs().amax(1) > L2_TOL).sum())
            row.kind, row.metric = "l2", "max diff; examples apart; success rates"
            row.passed = abs(s1 - s2) / n <= tol
            row.value += f"; {apart}/{n} apart by > {L2_TOL:g}; success {s1}/{n} vs {s2}/{n} (tolerance {tol:.3f})"
            row.note = L2_DIFFERENCES[name]
            row.details.update(apart=apart, success_inhouse=s1, success_library=s2, rate_tolerance=tol)
    return rows


def minimal_rows(trained: Trained, setting: Setting, x: torch.Tensor, y: torch.Tensor) -> list[Row]:
    """Minimal-eps FGSM (no refinement) against ART's ``FastGradientMethod(minimal=True)`` on the same grid."""
    model, spec = trained.model, setting.attack
    assert isinstance(spec, FGSMMinimal)
    ours, t_ours = timed(lambda: libraries.run_inhouse(spec, model, x, y), x.device)
    art, t_art = timed(
        lambda: libraries.run("art", spec, model, x, y, num_classes=trained.data.num_classes, native=True),
        x.device,
    )
    grid_step = spec.max_eps / spec.epsilons
    art_success = predict(model, art) != y
    art_index = torch.round((art - x).abs().flatten(1).amax(1) / grid_step)
    our_index = torch.round(ours.eps / grid_step)
    both = ours.success & art_success
    worst = float((art_index - our_index)[both].abs().max()) if bool(both.any()) else 0.0
    same_success = int((ours.success == art_success).sum())
    row = Row(
        trained.case.name, setting.label, "art", "minimal", len(x), "grid steps apart; success agreement", "", None
    )
    row.value = f"{worst:.0f} (worst); success agrees on {same_success}/{len(x)}"
    row.passed = worst <= 1 and same_success == len(x)
    row.seconds = {"inhouse": t_ours, "art": t_art}
    row.note = "ART adds eps_step repeatedly (float64 sums); stochdef uses linspace: ties may land one step apart"
    row.details = {
        "worst_grid_steps": worst,
        "success_agree": same_success,
        "exact": int((art_index == our_index)[both].sum()),
    }
    return [row]


# ---- DeepFool --------------------------------------------------------------------------------------------------


def stall_share(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float], *, samples: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the share of the DeepFool step a box clip keeps at ``x``, and the logit margin.

    The step towards the closest class ``l`` (by linearized distance) is along ``w = grad(z_l - z_y)``; a
    clip removes the components that push past the box (``x`` at its upper bound and ``w > 0``, or at its
    lower bound and ``w < 0``). With a per-step clip, a step scaled by ``1 + overshoot`` only crosses the
    linearized boundary if ``(1 + overshoot) * share >= 1``; otherwise the iterates converge onto the
    boundary without crossing it (the stall). With ``samples > 1`` the logits and gradients are EoT means.
    """
    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    classes = torch.arange(num_classes, device=x.device).expand(len(x), -1)
    from ..attacks.deepfool import linearize

    logits, diffs, grads = linearize(model, x, y, classes, samples=samples)
    flat = grads.flatten(2)
    distance = diffs.abs() / (flat.norm(dim=2) + 1e-8)
    distance[classes == y[:, None]] = float("inf")
    best = distance.argmin(1)
    w = flat[torch.arange(len(x), device=x.device), best]
    low, high = bounds
    xf = x.flatten(1)
    blocked = ((xf >= high) & (w > 0)) | ((xf <= low) & (w < 0))
    share = (w * ~blocked).square().sum(1) / w.square().sum(1).clamp_min(1e-30)
    margin = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, best[:, None]).squeeze(1)
    return share, margin


def deepfool_rows(trained: Trained, setting: Setting, x: torch.Tensor, y: torch.Tensor, seed: int) -> list[Row]:
    """DeepFool on the correctly classified examples: success agreement and perturbation-norm ratios."""
    model, spec = trained.model, setting.attack
    assert isinstance(spec, DeepFool)
    keep = predict(model, x) == y
    x, y = x[keep], y[keep]
    overshoot, steps = spec.overshoot, spec.steps
    ord_ = 2 if spec.norm == "l2" else float("inf")
    ours, t_ours = timed(lambda: libraries.run_inhouse(spec, model, x, y), x.device)
    our_norm = torch.linalg.vector_norm((ours.x_adv - x).flatten(1), ord=ord_, dim=1)
    band = (1 / (1 + overshoot) - SLACK, 1 + overshoot + SLACK)
    rows = []
    metric = "success; norm ratio lib/in-house"
    for row, theirs in each_library(
        trained, setting, x, y, seed=seed, kind="deepfool", metric=metric, inhouse_seconds=t_ours
    ):
        rows.append(row)
        if theirs is None:
            continue
        name = row.library
        success = predict(model, theirs) != y
        both = success & ours.success
        ratio = torch.linalg.vector_norm((theirs - x).flatten(1), ord=ord_, dim=1)[both] / our_norm[both]
        median = float(ratio.median()) if len(ratio) else float("nan")
        worst = float(ratio[(ratio.log().abs()).argmax()]) if len(ratio) else float("nan")
        lib_fail = (~success & ours.success).nonzero().squeeze(1)
        our_fail = (success & ~ours.success).nonzero().squeeze(1)
        stalled, margins = 0, []
        if lib_fail.numel():
            share, margin = stall_share(model, theirs[lib_fail], y[lib_fail], spec.bounds)
            stalled = int(((1 + overshoot) * share < 1).sum())
            margins = margin.tolist()
        out_of_steps = int((ours.steps[our_fail] >= steps).sum()) if our_fail.numel() else 0
        unexplained = (lib_fail.numel() - stalled) + (our_fail.numel() - out_of_steps)
        in_band = len(ratio) == 0 or band[0] <= median <= band[1]
        row.passed = unexplained == 0 and in_band
        row.value = (
            f"{int(ours.success.sum())}/{len(x)} vs {int(success.sum())}/{len(x)}; "
            f"ratio median {median:.4f}, worst {worst:.4f}"
        )
        notes = [DEEPFOOL_DIFFERENCES[name]]
        if lib_fail.numel():
            notes.append(
                f"{lib_fail.numel()} library failures, {stalled} stalled at the box edge (clip keeps < 1/(1+overshoot) "
                f"of the step; median final margin {float(np.median(margins)):.2g})"
            )
        if our_fail.numel():
            notes.append(f"{our_fail.numel()} in-house failures, {out_of_steps} out of steps")
        if unexplained:
            notes.append(f"{unexplained} UNEXPLAINED disagreements")
        if not in_band:
            notes.append(f"median ratio outside the overshoot band [{band[0]:.3f}, {band[1]:.3f}]")
        row.note = "; ".join(notes)
        row.details = {
            "success_inhouse": int(ours.success.sum()),
            "success_library": int(success.sum()),
            "agree": int((success == ours.success).sum()),
            "ratio_median": median,
            "ratio_worst": worst,
            "band": band,
            "library_failures": int(lib_fail.numel()),
            "stalled": stalled,
            "inhouse_failures": int(our_fail.numel()),
            "unexplained": unexplained,
        }
    return rows
