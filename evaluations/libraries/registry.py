"""The registry of attacks: every :class:`~.base.Attack` subclass with a ``name`` defined in a module of the
:mod:`.attacks` sub-package, discovered (``pkgutil``) rather than listed, so adding an attack is one new
module (and its test). Names must be unique: a second class with a name raises naming both modules.

>>> from stochdef.evaluations.libraries import DEFAULT_ATTACKS, get, make, names
>>> names(evaluate=True)[:3], DEFAULT_ATTACKS
(('fgsm', 'pgd', 'pgd-rs'), ('fgsm', 'pgd', 'apgd-ce'))
>>> make("pgd", eps=0.1, steps=5) == get("pgd")(eps=0.1, steps=5)
True
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from dataclasses import fields
from typing import Any

from stochdef.defenses.validation import check_choice

from .base import Attack

PACKAGE = __package__ + ".attacks"


def discover(package: str) -> dict[str, type[Attack]]:
    """``name -> class`` for the attacks of the modules of ``package`` (a dotted name), in ``rank`` order;
    modules whose name starts with ``_`` are skipped. Raises ``ValueError`` naming both modules when two
    classes share a name."""
    found: dict[str, type[Attack]] = {}
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not (issubclass(cls, Attack) and cls.__module__ == module.__name__ and "name" in vars(cls)):
                continue
            if cls.name in found:
                other = found[cls.name]
                raise ValueError(
                    f"attack name {cls.name!r} is defined twice: {other.__module__}.{other.__qualname__} and "
                    f"{cls.__module__}.{cls.__qualname__}"
                )
            found[cls.name] = cls
    return dict(sorted(found.items(), key=lambda item: (item[1].rank, item[0])))


@functools.cache
def registry() -> dict[str, type[Attack]]:
    """Every attack of :mod:`.attacks`, by name, in registry order."""
    return discover(PACKAGE)


def names(*, evaluate: bool = False) -> tuple[str, ...]:
    """The attack names in registry order; ``evaluate=True``: only those ``stochdef evaluate`` may run."""
    return tuple(name for name, cls in registry().items() if cls.in_evaluate or not evaluate)


def get(name: str) -> type[Attack]:
    """The class of the attack called ``name``; ``ValueError`` listing the names for an unknown one."""
    return registry()[check_choice("attack", name, names())]


def make(name: str, **settings: Any) -> Attack:
    """The attack ``name`` with ``settings``; ``ValueError`` naming a setting the attack does not take."""
    cls = get(name)
    own = {f.name for f in fields(cls)}
    for key in settings:
        if key not in own:
            raise ValueError(f"{key} is not a setting of {name} (its settings: {', '.join(sorted(own))})")
    return cls(**settings)


def default_attacks() -> tuple[str, ...]:
    return tuple(name for name, cls in registry().items() if cls.default)
