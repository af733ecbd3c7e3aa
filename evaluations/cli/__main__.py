"""``python -m stochdef.evaluations.cli``: the ``stochdef`` command."""

from stochdef.evaluations.cli import main

raise SystemExit(main())
