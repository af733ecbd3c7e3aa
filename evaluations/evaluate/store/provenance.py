"""What a cell's numbers depend on beyond its key, recorded with it, and the check that a resumed run mixes none.

A cell's key holds the configuration (DESIGN.md, §C4); its numbers also depend on the model's weights (a
retrained checkpoint), the library versions, the device, and on CPU torch's vector instruction set (AVX2 and
AVX-512 round differently, which changes SAP's draws). Every record holds ``versions`` and ``provenance``
(:func:`environment` plus the sha256 of each model's weights); :func:`differences` compares a recorded cell with
what this run would record, so that a resumed run recomputes or refuses those cells instead of mixing them.

Example:
    >>> old = {"versions": {"torch": "2.1"}, "provenance": {"device": "cpu", "cpu_capability": "AVX2"}}
    >>> new = {"versions": {"torch": "2.1"}, "provenance": {"device": "cpu", "cpu_capability": "AVX512"}}
    >>> differences(old, new)
    ['cpu_capability AVX2 -> AVX512']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["differences", "environment", "summary"]


def environment(device: str | torch.device) -> dict[str, Any]:
    """The device, torch's CPU capability (``torch.backends.cpu.get_cpu_capability()``), the GPU's name, and the
    samplers a single draw of a Gaussian-weight layer uses (``defenses.sampling``'s defaults: a change of sampler
    changes every draw of those layers, DESIGN.md, §C2)."""
    from stochdef.defenses.sampling import CONV_DEFAULT, LINEAR_DEFAULT

    dev = torch.device(device)
    return {
        "device": dev.type,  # not the index: the ranks of a distributed run compute alike on cuda:0, cuda:1, ...
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "samplers": f"linear {LINEAR_DEFAULT}, conv {CONV_DEFAULT}",
    }


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in (record.get("versions") or {}).items():
        flat[f"version of {name}"] = value
    provenance = record.get("provenance") or {}
    for name, value in provenance.items():
        if name == "weights":
            for model, digest in (value or {}).items():
                flat[f"weights of {model}"] = digest
        else:
            flat[name] = value
    return flat


# The order differences are told in: the model first, then the machine, then the libraries.
_RANK = {"weights": 0, "version": 2}


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def differences(recorded: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What differs between a recorded cell's ``versions``/``provenance`` and the ones this run would record
    (``expected``), one phrase each; empty when nothing does. A record without provenance differs."""
    if "provenance" not in recorded:
        return ["recorded without provenance"]
    old, new = _flat(recorded), _flat(expected)
    names = sorted(old.keys() | new.keys(), key=lambda n: (_RANK.get(n.split(" of ")[0], 1), n))
    return [f"{n} {_short(old.get(n))} -> {_short(new.get(n))}" for n in names if old.get(n) != new.get(n)]


def summary(found: Iterable[list[str]], *, limit: int = 4) -> str:
    """The most frequent differences over many cells, in one line."""
    counts = Counter(d for cell in found for d in cell)  # ties keep the order of first appearance
    shown = [text for text, _ in counts.most_common(limit)]
    more = len(counts) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
