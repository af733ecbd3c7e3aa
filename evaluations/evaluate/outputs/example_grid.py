"""The worst case's adversarial examples as pictures: per defense and eps, a few examples the attacks broke,
each as its clean input, the adversarial example and their difference (``worst_case_examples[--DEFENSE].png``).

Read from the worst-case file (:mod:`..store.examples`, keyed by eps); drawn when the inputs are images:
``(C, H, W)`` with 1 or 3 channels, ``(H, W)``, or a flat square (64 values: 8 x 8).

>>> image_shape((1, 28, 28)), image_shape((3, 32, 32)), image_shape((64,)), image_shape((10,))
((28, 28), (32, 32, 3), (8, 8), None)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...figures import plt, save_figure
from ..config import EvalConfig
from ..store import examples

FONT = 8


def image_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """How one input of ``shape`` is drawn (``(H, W)`` or ``(H, W, 3)``), or ``None`` when it is no image."""
    if len(shape) == 3 and shape[0] in (1, 3):
        return tuple(shape[1:]) if shape[0] == 1 else (shape[1], shape[2], 3)
    if len(shape) == 2:
        return tuple(shape)
    side = math.isqrt(shape[0]) if len(shape) == 1 else 0
    return (side, side) if len(shape) == 1 and side * side == shape[0] and side > 1 else None


def _image(row: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 3:
        return np.moveaxis(row.reshape(3, shape[0], shape[1]), 0, -1)
    return row.reshape(shape)


def worst_case_examples(c: EvalConfig, out: Path, *, per_eps: int = 6) -> list[str]:
    """Write the picture of each defense whose worst-case file holds images; return the file names."""
    names = []
    for defense in c.defenses:
        arrays = examples.read(examples.worst_case_path(out, c.defenses, defense))
        if arrays is None or "eps" not in arrays:
            continue
        shape = image_shape(tuple(arrays["x"].shape[1:]))
        if shape is None or not len(arrays["eps"]):
            continue
        low, high = c.bounds
        path = examples.output_path(out, c.defenses, defense, "worst_case_examples", ".png")
        names.append(_draw(arrays, shape, (low, high), per_eps, path, defense))
    return names


def _draw(
    arrays: dict[str, np.ndarray], shape: tuple[int, ...], bounds: tuple[float, float], per_eps: int, path: Path,
    defense: str,
) -> str:  # fmt: skip
    eps = arrays["eps"].tolist()
    cols = per_eps
    fig, axes = plt.subplots(3 * len(eps), cols, figsize=(1.25 * cols + 1.2, 1.35 * 3 * len(eps) + 0.5),
                             squeeze=False)  # fmt: skip
    cmap = "gray" if len(shape) == 2 else None
    for k, e in enumerate(eps):
        broken = [i for i, b in enumerate(arrays["broken_by"][k]) if b not in ("", "clean")][:per_eps]
        for row, what in enumerate(("clean", "adversarial", "difference")):
            ax_row = axes[3 * k + row]
            ax_row[0].set_ylabel(f"eps {e}\n{what}" if row == 0 else what, fontsize=FONT)
            for j, ax in enumerate(ax_row):
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(broken):
                    ax.set_frame_on(False)
                    continue
                i = broken[j]
                x, adv = arrays["x"][i].ravel(), arrays["x_adv"][k][i].ravel()
                if row == 2:
                    delta = _image(adv - x, shape)
                    delta = delta.mean(axis=-1) if delta.ndim == 3 else delta
                    scale = float(np.abs(delta).max()) or 1.0
                    ax.imshow(delta, cmap="seismic", vmin=-scale, vmax=scale)
                    ax.set_xlabel(f"max |d| {scale:.3g}", fontsize=FONT - 1)
                    continue
                picture = (_image(x if row == 0 else adv, shape) - bounds[0]) / (bounds[1] - bounds[0])
                ax.imshow(np.clip(picture, 0, 1), cmap=cmap, vmin=0, vmax=1)
                if row == 1:
                    ax.set_title(str(arrays["broken_by"][k][i]), fontsize=FONT - 2)
                else:
                    ax.set_title(f"label {int(arrays['y'][i])}", fontsize=FONT - 1)
        if not broken:
            axes[3 * k][0].text(0.0, 0.5, "no example broken", fontsize=FONT, transform=axes[3 * k][0].transAxes)
    fig.suptitle(f"{defense}: worst-case adversarial examples (the first attack that broke each)", fontsize=FONT + 1)
    return save_figure(fig, path)
