"""Attacks as objects, and how each library runs each one: one place for the evaluation, the cross-check, the
demo and the tests.

* :mod:`.base` -- :class:`Attack` (the threat model every attack shares, checked at construction),
  :class:`Runner`, :data:`LIBRARIES`, :data:`NORMS`, :data:`ESTIMATORS`;
* :mod:`.attacks` -- one module per attack family, each with its classes and their per-library runners
  (fgsm, iterative, deepfool, localsearch, apgd, apgd_t, square, autoattack);
* :mod:`.registry` -- the attacks discovered in :mod:`.attacks`: :func:`names`, :func:`get`, :func:`make`;
* :mod:`.wrapping` -- :func:`wrap`, :func:`run`, :func:`run_inhouse`, :func:`unsupported`, :func:`estimator`;
* :mod:`.calls` -- what the runners share: :func:`library_seed`, :func:`restarted`, each library's call.

Importing this package imports none of the attack libraries. Example:

>>> from stochdef.evaluations.libraries import FGSM, PGD, make, unsupported
>>> unsupported("foolbox", FGSM(eps=0.1, targeted=True))
"Foolbox 3's FGSM has no targeted mode"
>>> unsupported("art", make("pgd", eps=0.1)) is None
True
"""

from __future__ import annotations

from .attacks.apgd import APGDCE, APGDDLR
from .attacks.autoattack import AutoAttackRand
from .attacks.deepfool import DeepFool
from .attacks.fgsm import FGSM, FGSMMinimal
from .attacks.iterative import BIM, PGD, PGDRS
from .attacks.localsearch import LocalSearch
from .attacks.square import Square
from .base import DEFAULT_LIBRARIES, ESTIMATORS, LIBRARIES, NORMS, Attack, Runner
from .calls import library_seed, restarted
from .registry import default_attacks, get, make, names
from .wrapping import estimator, run, run_inhouse, unsupported, wrap

DEFAULT_ATTACKS: tuple[str, ...] = default_attacks()

__all__ = [
    "APGDCE",
    "APGDDLR",
    "BIM",
    "DEFAULT_ATTACKS",
    "ESTIMATORS",
    "FGSM",
    "DEFAULT_LIBRARIES",
    "LIBRARIES",
    "NORMS",
    "PGD",
    "PGDRS",
    "Attack",
    "AutoAttackRand",
    "DeepFool",
    "FGSMMinimal",
    "LocalSearch",
    "Runner",
    "Square",
    "estimator",
    "get",
    "library_seed",
    "make",
    "names",
    "restarted",
    "run",
    "run_inhouse",
    "unsupported",
    "wrap",
]
