"""Every ``>>>`` example in the three packages runs, as a user would paste it (DESIGN.md, "Testing")."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest
import torch

PACKAGES = ("stochdef.adapters", "stochdef.defenses", "stochdef.evaluations")


def _modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}.")]
    return sorted(n for n in names if not n.endswith("__main__"))


def _with_examples() -> list[str]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [name for name in _modules() if any(t.examples for t in finder.find(importlib.import_module(name)))]


MODULES = _with_examples()


def test_the_examples_are_found() -> None:
    assert len(MODULES) >= 30  # the packages carry examples in most modules; losing them all is a bug


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    torch.manual_seed(0)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
