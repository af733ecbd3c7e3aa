"""The layout every plot of a report shares: the font size, panels in rows, one header (a wrapped title and one
legend) per figure, the axis labels on the outer panels (:mod:`.plots`, :mod:`.convergence_plot`)."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np

from ...figures import plt

FONT = 9
MIN_WIDTH = 6.4  # inches: a one-panel figure still fits its title and legend
CHARS_PER_INCH = 13.0  # characters of FONT + 1 per inch of title (DejaVu Sans at 10 pt averages ~5.5 pt a glyph)
LEGEND_CHARS_PER_INCH = 15.0  # characters of a FONT legend label per inch


def wrapped(text: str, width: float, *, font: float = FONT + 1) -> str:
    """``text`` broken into lines that fit ``width`` inches at ``font`` points.

    >>> wrapped("a b c d e f", 0.3).splitlines()
    ['a b', 'c d', 'e f']
    """
    per_line = max(1, int(width * CHARS_PER_INCH * (FONT + 1) / font))
    return "\n".join(textwrap.wrap(text, per_line)) or text


def panels(n: int, *, per_row: int = 3, size: tuple[float, float] = (3.4, 2.9)) -> tuple[Any, np.ndarray]:
    """A figure of ``n`` panels, ``per_row`` a row, at least :data:`MIN_WIDTH` wide (the unused ones hidden)."""
    rows = math.ceil(n / per_row)
    cols = min(n, per_row)
    width = max(size[0] * cols, MIN_WIDTH)
    fig, axes = plt.subplots(rows, cols, figsize=(width, size[1] * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def labels(axes: np.ndarray, n: int, xlabel: str, ylabel: str) -> None:
    """The x label under the lowest visible panel of each column, the y label on the first column."""
    rows, cols = axes.shape
    for j in range(cols):
        lowest = max(i for i in range(rows) if i * cols + j < n)
        axes[lowest][j].set_xlabel(xlabel, fontsize=FONT)
    for i in range(rows):
        axes[i][0].set_ylabel(ylabel, fontsize=FONT)


def header(fig: Any, title: str, handles: list[Any], labels: list[str], *, ncol: int = 4) -> None:
    """A title wrapped to the figure's width and, under it, one legend for the whole figure in as many columns as
    fit; the figure grows by the header's height and the panels are laid out below both."""
    width, height = fig.get_size_inches()
    title = wrapped(title, width - 0.3)
    longest = max(len(label) for label in labels) if labels else 1
    ncol = max(1, min(ncol, len(labels), int((width - 0.3) / (0.45 + longest / LEGEND_CHARS_PER_INCH))))
    title_in = 0.2 * (title.count("\n") + 1)
    legend_in = 0.2 * math.ceil(len(labels) / ncol)
    header = 0.12 + title_in + 0.08 + legend_in + 0.1
    height += max(0.0, header - 0.62)
    fig.set_size_inches(width, height)
    fig.suptitle(title, fontsize=FONT + 1, y=1 - 0.08 / height)
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - (0.12 + title_in) / height),
        ncol=ncol,
        fontsize=FONT,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - header / height))
