"""The distribution: every sub-package is listed, nothing installs a top-level `adapters`/`evaluations`."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TOP = {"adapters": "stochdef.adapters", "defenses": "stochdef.defenses", "evaluations": "stochdef.evaluations"}


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed() -> None:
    listed = set(_config()["packages"])
    on_disk = {
        ".".join([TOP[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
        for folder in TOP
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert on_disk == listed


def test_package_dir_maps_the_three_folders() -> None:
    assert _config()["package-dir"] == {v: k for k, v in TOP.items()}


def test_the_only_top_level_name_installed_is_stochdef() -> None:
    top_level = importlib.metadata.distribution("stochdef").read_text("top_level.txt") or ""
    assert top_level.split() == ["stochdef"]


def test_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["stochdef"] == "stochdef.evaluations.cli:main"
