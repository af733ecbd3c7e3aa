"""One module per attack family, each holding its attack classes and their per-library runners.

The registry (:mod:`stochdef.evaluations.libraries.registry`) discovers these modules: a module whose name
does not start with ``_`` contributes every :class:`~stochdef.evaluations.libraries.base.Attack` subclass it
defines with a ``name``. Adding an attack is one new module here (and its test).
"""
