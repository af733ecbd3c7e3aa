"""Matplotlib on the headless ``Agg`` backend, one atomic PNG writer for every figure stochdef draws, and the
small drawing helpers several reports share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["norm_distributions", "plt", "save_figure", "signed_text"]


def save_figure(fig: plt.Figure, path: Path, *, layout: bool = True) -> str:
    """Lay out ``fig`` (unless the caller did, ``layout=False``), write it to ``path`` as a PNG atomically, close
    it; return the file name."""
    if layout:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path.name


def signed_text(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, never ``-0.00``: a value that rounds to zero prints unsigned.

    >>> signed_text(-0.004), signed_text(-0.3), signed_text(0.5)
    ('0.00', '-0.30', '0.50')
    """
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def norm_distributions(
    path: Path,
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    xlabel: str,
    title: str,
    colors: Mapping[str, str] | None = None,
) -> str:
    """One panel per key of ``panels``; in each, one horizontal box (median, quartiles, 5-95% whiskers) plus the
    points themselves per labelled sample of per-example norms, the first sample on top. ``colors`` maps a
    substring of a label to the colour of its points (the first match wins). Empty samples read "none
    succeeded"."""
    import numpy as np

    n = len(panels)
    cols = min(n, 2)
    rows = -(-n // cols)
    longest = max((len(v) for panel in panels.values() for v in panel.values()), default=0)
    per_panel = max(len(p) for p in panels.values())
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 0.9 + 0.55 * per_panel * rows + 0.5 * rows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    rng = np.random.default_rng(0)  # vertical jitter of the points only
    for ax, (name, samples) in zip(axes.flat, panels.items(), strict=False):
        labels = list(samples)
        for k, label in enumerate(labels):
            values = np.asarray(samples[label], dtype=float)
            if values.size == 0:
                ax.text(
                    0.02, k, f"{label}: none succeeded", va="center", fontsize=8, transform=ax.get_yaxis_transform()
                )
                continue
            color = next((c for key, c in (colors or {}).items() if key in label), "tab:blue")
            ax.boxplot(values, positions=[k], vert=False, widths=0.5, whis=(5, 95), showfliers=False)
            ax.scatter(values, k + rng.uniform(-0.18, 0.18, values.size), s=7, alpha=0.5, color=color)
        ax.set_yticks(range(len(labels)), [f"{lb} (n={len(samples[lb])})" for lb in labels], fontsize=8)
        ax.set_ylim(len(labels) - 0.4, -0.6)  # the first sample on top
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title + (f" (up to {longest} points per row)" if longest else ""), fontsize=10)
    return save_figure(fig, path)
