"""The import graph of the three packages: one way down, no cycle anywhere (DESIGN.md, "Dependencies between parts").

Every ``import`` statement counts, function-local ones too (a local import hides a cycle, it does not remove
it). Edges go from a module to the stochdef modules it names; ``from package import name`` counts as an
import of the submodule ``package.name`` when that is a module, else of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"adapters": "stochdef.adapters", "defenses": "stochdef.defenses", "evaluations": "stochdef.evaluations"}
# defenses know nothing of adapters; adapters know defenses only as the bottom layer; evaluations use both
ALLOWED = {
    "stochdef.defenses": {"stochdef.defenses"},
    "stochdef.adapters": {"stochdef.adapters", "stochdef.defenses"},
    "stochdef.evaluations": {"stochdef.evaluations", "stochdef.adapters", "stochdef.defenses"},
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read() -> None:
    assert "stochdef.evaluations.evaluate.compute.run" in GRAPH["stochdef.evaluations.evaluate.grid.cells"]


def _folder(module: str) -> str:
    """The sub-package of ``stochdef.evaluations.evaluate`` a module sits in (its own name at the top)."""
    parts = module.split(".")
    return ".".join(parts[:4]) if len(parts) > 4 else module


def test_evaluates_folders_import_one_way() -> None:
    """The folders of ``evaluate/`` (store, compute, grid, outputs) and its top modules form no cycle either:
    a folder is a layer, not only its modules."""
    inner = {m: t for m, t in GRAPH.items() if m.startswith("stochdef.evaluations.evaluate.")}
    folders: dict[str, set[str]] = {}
    for module, targets in inner.items():
        here = _folder(module)
        folders.setdefault(here, set()).update(
            _folder(t) for t in targets if t.startswith("stochdef.evaluations.evaluate.") and _folder(t) != here
        )
    assert _cycles(folders) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package: str) -> None:
    wrong = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.startswith(package)
        for target in targets
        if not any(target == p or target.startswith(p + ".") for p in ALLOWED[package])
    }
    assert wrong == set()
