"""Matplotlib on the headless ``Agg`` backend, and one atomic PNG writer for every figure stochdef draws."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig: plt.Figure, path: Path) -> str:
    """Lay out ``fig``, write it to ``path`` as a PNG atomically, close it; return the file name."""
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path.name
