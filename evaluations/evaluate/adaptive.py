"""The adaptive attacks of a run: every surrogate gradient a defense declares (:mod:`stochdef.defenses.surrogate`)
gets its own attack cells, and they join that defense's worst case (DESIGN.md, §C8).

:func:`with_declarations` finds the declarations once, before the grid is listed: on the caller's own models, and on
an untrained copy of each zoo defense (the declaration is the architecture's, not the weights'). A defense spelled
``NAME[psd]`` is already attacked through its pseudogradient, so it declares no further ``pseudo``. It also
records which defenses have a certificate (:func:`..compute.certify.method`), whose certificate cells the grid
then lists.

>>> config = with_declarations(EvalConfig(defenses=("vanilla-mlp", "mwd-256", "mwd-256[psd]")))
>>> config.surrogates, config.certificates
((('mwd-256', 'pseudo'),), ('mwd-256', 'mwd-256[psd]'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from stochdef.defenses import data as datasets
from stochdef.defenses import zoo
from stochdef.defenses.surrogate import declared

from .compute.certify import method
from .config import PSEUDO, EvalConfig, base_name

PSEUDO_NAME = "pseudo"  # the surrogate an MWD layer declares, which ``NAME[psd]`` already uses


def _zoo_model(defense: str, dataset: str) -> nn.Module | None:
    """An untrained copy of zoo ``defense`` (built off the run's random stream), or None for an unknown name
    (which :func:`..engine.prepare` refuses with the valid names)."""
    try:
        spec = zoo.get(base_name(defense))
    except ValueError:
        return None
    data = datasets.load(dataset)
    with torch.random.fork_rng():
        return spec.build(data.input_shape, data.num_classes)


def with_declarations(config: EvalConfig, models: Mapping[str, nn.Module] | None = None) -> EvalConfig:
    """``config`` with ``surrogates``, the (defense, surrogate) pairs its defenses declare, and ``certificates``,
    the defenses a certificate exists for, in defense order."""
    pairs, certificates = [], []
    for defense in config.defenses:
        model = (models or {}).get(defense)
        if model is None and config.dataset in datasets.DATASETS:
            model = _zoo_model(defense, config.dataset)
        if model is not None and method(model) is not None:
            certificates.append(defense)
        for name in declared(model) if model is not None else ():
            if not (defense.endswith(PSEUDO) and name == PSEUDO_NAME):
                pairs.append((defense, name))
    return dataclasses.replace(config, surrogates=tuple(pairs), certificates=tuple(certificates))
