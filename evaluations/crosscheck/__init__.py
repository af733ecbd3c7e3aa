"""``stochdef crosscheck``: the in-house attacks against Foolbox 3, ART, torchattacks and advertorch.

* :mod:`.models` -- the small models the harness trains (seconds) and attacks;
* :mod:`.references` -- the advertorch LocalSearch reference and torchattacks' ``EOTPGD`` loop (every other
  library attack comes from :mod:`stochdef.evaluations.libraries`);
* :mod:`.checks` -- :class:`~.checks.Setting` (a row label and its attack object); exact parity, minimal-eps
  FGSM and DeepFool agreement on deterministic models;
* :mod:`.randomized` -- LocalSearch rates and robust accuracy on randomized models, with intervals;
* :mod:`.report` -- the console table and the Markdown report;
* :mod:`.harness` -- :func:`run` (every check on every model) and :func:`save`.
"""

from __future__ import annotations

from .harness import PACKAGES, run, save, settings, sizes, versions

__all__ = ["PACKAGES", "run", "save", "settings", "sizes", "versions"]
