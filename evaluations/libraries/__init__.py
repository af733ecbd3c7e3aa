"""How each library runs each attack: one table for the evaluation, the cross-check, the demo and the tests.

* :mod:`.spec` -- :class:`AttackSpec`, one attack's configuration, checked at construction;
* :mod:`.runners` -- the calls themselves, one small function per (library, attack); :mod:`.strong` the
  stronger ones (PGD with restarts, APGD-CE / APGD-DLR, Square, AutoAttack-rand);
* :mod:`.table` -- :data:`TABLE` (for every attack and library, a :class:`Runner` or the reason the
  library has no counterpart), :func:`wrap`, :func:`run`, :func:`run_inhouse`, :func:`unsupported`.

Importing this package imports none of the attack libraries. Example:

>>> from stochdef.evaluations.libraries import AttackSpec, unsupported
>>> unsupported("foolbox", AttackSpec("fgsm", 0.1, targeted=True))
"Foolbox 3's FGSM has no targeted mode"
>>> unsupported("art", AttackSpec("pgd", 0.1)) is None
True
"""

from __future__ import annotations

from .spec import ATTACKS, DEFAULT_EVAL_ATTACKS, EPS_ATTACKS, EVAL_ATTACKS, NORMS, RESTART_ATTACKS, AttackSpec
from .table import ESTIMATORS, LIBRARIES, TABLE, Runner, estimator, run, run_inhouse, unsupported, wrap

__all__ = [
    "ATTACKS",
    "DEFAULT_EVAL_ATTACKS",
    "EPS_ATTACKS",
    "ESTIMATORS",
    "EVAL_ATTACKS",
    "LIBRARIES",
    "NORMS",
    "RESTART_ATTACKS",
    "TABLE",
    "AttackSpec",
    "Runner",
    "estimator",
    "run",
    "run_inhouse",
    "unsupported",
    "wrap",
]
