"""``python -m stochdef``: the ``stochdef`` command (also ``torchrun -m stochdef``).

This folder has no ``__init__.py`` on purpose: ``stochdef`` is a namespace package whose sub-packages live in
adapters/, defenses/ and evaluations/ (pyproject.toml maps them). Being a namespace portion, this folder
merges with the installed package instead of shadowing it when Python runs from the repository root.
"""

from stochdef.evaluations.cli import main

raise SystemExit(main())
