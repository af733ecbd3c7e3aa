"""The checks of an evaluation's configuration, all run before its first cell (DESIGN.md, §C5).

:func:`check_config` checks every field of an :class:`~.config.EvalConfig` (called by its ``__post_init__``):
lists that are non-empty and hold no entry twice, names among the choices, ranges, the seed, the device (and
that it exists on this machine). :func:`check_out` checks the output folder. Each error is a ``ValueError`` or
``TypeError`` naming the argument and the value; the CLI prints it on one line and exits with status 2.

Example:
    >>> check_list("eps", (0.1, 0.1))
    Traceback (most recent call last):
    ...
    ValueError: eps lists 0.1 twice
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stochdef.defenses import data as datasets
from stochdef.defenses.validation import check_choice, check_int, check_range

from .. import libraries

__all__ = ["DEVICES", "check_config", "check_device", "check_list", "check_out", "whole_range"]

DEVICES: tuple[str, ...] = ("cpu", "cuda")
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit


def check_list(name: str, values: object, choices: Sequence[str] | None = None) -> tuple[Any, ...]:
    """``values`` as a tuple: at least one entry, none twice, each among ``choices`` when given."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of values, got {type(values).__name__} ({values!r})")
    if not values:
        raise ValueError(f"{name} must list at least one value, got none")
    seen: set[Any] = set()
    for value in values:
        if choices is not None:
            check_choice(name, value, choices)
        if value in seen:
            raise ValueError(f"{name} lists {value!r} twice")
        seen.add(value)
    return tuple(values)


def check_device(device: object) -> torch.device:
    """A device of this machine: ``cpu``, or ``cuda``/``cuda:N`` when that GPU exists."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), got {device!r}") from None
    check_choice("device", dev.type, DEVICES)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: no CUDA GPU is available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return dev


def check_config(c: Any) -> None:
    """Check every field of an ``EvalConfig`` ``c``; raise on the first that is wrong."""
    if not getattr(c, "source", ""):  # a user's own data (evaluate_model, --data) names no zoo data set
        check_choice("dataset", c.dataset, datasets.DATASETS)
    for name in check_list("defenses", c.defenses):
        if not isinstance(name, str) or not name:
            raise ValueError(f"defenses must be non-empty names, got {name!r}")
    check_list("attack", c.attacks, libraries.names(evaluate=True))
    check_list("library", c.libraries, libraries.LIBRARIES)
    for e in check_list("eps", c.eps):
        if not math.isfinite(check_range("eps", e, low=0.0)):
            raise ValueError(f"eps must be finite, got {e}")
    for s in check_list("samples", c.samples):
        check_int("samples", s)
    check_int("n", c.n)
    check_int("steps", c.steps)
    check_int("judge_samples", c.judge_samples)
    seed = check_int("seed", c.seed, minimum=0)
    if seed > MAX_SEED:
        raise ValueError(f"seed must be <= {MAX_SEED}, got {seed}")
    check_device(c.device)


def check_out(out: object) -> Path:
    """The output folder ``out``, created if need be: refused if it is a file, cannot be created or written."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise TypeError(f"out must be a folder path, got {out!r}")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"out {str(path)!r}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"out {str(path)!r}: the folder is not writable")
    results = path / "results.jsonl"
    if results.exists() and not (results.is_file() and os.access(results, os.R_OK)):
        raise ValueError(f"out {str(path)!r}: {results.name} is not a readable file")
    return path


def whole_range(eps: Sequence[float], *, norm: str, bounds: tuple[float, float], dims: int) -> str | None:
    """A warning when a radius covers the whole input range (every input within reach of every other: an
    eps in pixel units, e.g. 8 for 8/255), else ``None``. The range's diameter is its width under L-inf and
    ``width * sqrt(dims)`` under L2.

    >>> print(whole_range((0.1, 2.0), norm="linf", bounds=(0.0, 1.0), dims=784))  # doctest: +ELLIPSIS
    eps 2.0 covers the whole input range [0.0, 1.0] under linf (its diameter is 1): ...
    >>> whole_range((2.0,), norm="l2", bounds=(0.0, 1.0), dims=784) is None
    True
    """
    width = bounds[1] - bounds[0]
    diameter = width if norm == "linf" else width * math.sqrt(dims)
    wide = [e for e in eps if e >= diameter]
    if not wide:
        return None
    return (
        f"eps {', '.join(map(str, wide))} cover{'s' if len(wide) == 1 else ''} the whole input range "
        f"[{bounds[0]}, {bounds[1]}] under {norm} (its diameter is {diameter:.4g}): the threat model constrains "
        "nothing; eps is in the units of --bounds (8/255, not 8)"
    )
