"""The distribution: every sub-package is listed, nothing installs a top-level `adapters`/`evaluations`."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


def test_the_wheel_holds_the_three_packages_typed_with_the_console_script(tmp_path: Path) -> None:
    """Build the real wheel (as `pip install .` does) and read what it would install."""
    pytest.importorskip("setuptools", reason="the build backend is needed to build the wheel")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *TOP):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if name in TOP else {}))
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(tmp_path)!r})"],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("stochdef-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"stochdef", dist_info}
    modules = {n for n in names if n.endswith(".py")}
    on_disk = {
        "/".join(["stochdef", *path.relative_to(ROOT).parts])
        for folder in TOP
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules == on_disk
    assert {f"stochdef/{folder}/py.typed" for folder in TOP} <= names
    data = {path.relative_to(ROOT).as_posix() for path in (ROOT / "defenses" / "checkpoints").glob("*.*")}
    assert {f"stochdef/{name}" for name in data} <= names  # shipped checkpoints, if any
    assert "stochdef = stochdef.evaluations.cli:main" in entry_points
