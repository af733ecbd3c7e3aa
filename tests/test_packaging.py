"""The distribution: every sub-package is listed, nothing installs a top-level `adapters`/`evaluations`."""

from __future__ import annotations

import importlib.metadata
import os
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
# stochdef/ itself: a namespace folder (no __init__.py) that holds only __main__.py, for `python -m stochdef`.
NAMESPACE = "stochdef"
HEAVY = ("torch", "foolbox", "art", "torchattacks")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed() -> None:
    listed = set(_config()["packages"])
    on_disk = {
        ".".join([TOP[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
        for folder in TOP
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert on_disk | {NAMESPACE} == listed


def test_the_stochdef_folder_stays_a_namespace_with_only_main() -> None:
    """An __init__.py here would make stochdef a regular package that shadows the installed one from the root."""
    files = {p.name for p in (ROOT / NAMESPACE).iterdir() if p.name != "__pycache__"}
    assert files == {"__main__.py"}


def test_package_dir_maps_the_three_folders_and_the_namespace() -> None:
    assert _config()["package-dir"] == {NAMESPACE: NAMESPACE, **{v: k for k, v in TOP.items()}}


def test_the_only_top_level_name_installed_is_stochdef() -> None:
    top_level = importlib.metadata.distribution("stochdef").read_text("top_level.txt") or ""
    assert top_level.split() == ["stochdef"]


def test_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["stochdef"] == "stochdef.evaluations.cli:main"


def _build(tmp: Path, hook: str) -> Path:
    """Build the wheel with setuptools' `hook` (build_wheel as `pip install .`, build_editable as `pip install -e .`)
    from a copy of the sources, and unpack it as pip would lay it out in site-packages."""
    source = tmp / "src"
    if not source.exists():
        source.mkdir()
        for name in ("pyproject.toml", "README.md", NAMESPACE, *TOP):
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / name, source / name)
    out = tmp / hook
    out.mkdir()
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.{hook}({str(out)!r})"],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("stochdef-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(out / "site-packages")
    return wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real wheel and the editable wheel, each unpacked into its own site-packages folder."""
    pytest.importorskip("setuptools", reason="the build backend is needed to build the wheel")
    tmp = tmp_path_factory.mktemp("build")
    return {hook: _build(tmp, hook) for hook in ("build_wheel", "build_editable")}


def test_the_wheel_holds_the_three_packages_typed_with_the_console_script(built: dict[str, Path]) -> None:
    """Read what the real wheel (as `pip install .` builds it) would install."""
    with zipfile.ZipFile(built["build_wheel"]) as archive:
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
    assert modules == on_disk | {"stochdef/__main__.py"}
    assert "stochdef/__init__.py" not in names  # still a namespace package
    assert {f"stochdef/{folder}/py.typed" for folder in TOP} <= names
    data = {path.relative_to(ROOT).as_posix() for path in (ROOT / "defenses" / "checkpoints").glob("*.*")}
    assert {f"stochdef/{name}" for name in data} <= names  # shipped checkpoints, if any
    assert "stochdef = stochdef.evaluations.cli:main" in entry_points


# `python -m stochdef` after the site-packages folder in argv[1] is added as site does it (its .pth files run).
_RUN_MODULE = (
    "import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); "
    "runpy.run_module('stochdef', run_name='__main__', alter_sys=True)"
)
_HEAVY_LOADED = f"import atexit, sys; atexit.register(lambda: print([m for m in {HEAVY!r} if m in sys.modules]))"


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
@pytest.mark.parametrize("option", ["--version", "--help"])
def test_python_m_stochdef_runs_from_the_installed_wheel(
    built: dict[str, Path], tmp_path: Path, hook: str, option: str
) -> None:
    """`python -m stochdef` in an install of the wheel and in an editable install, away from the checkout.
    `-S` hides this environment's site-packages (and its own stochdef): the site-packages folder the wheel
    was unpacked into is the only one, and --help / --version need nothing outside the standard library."""
    site_packages = built[hook].parent / "site-packages"
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"{_HEAVY_LOADED}; {_RUN_MODULE}", str(site_packages), option],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "[]"  # none of torch, foolbox, art, torchattacks imported
    if option == "--version":
        assert lines[:-1] == [f"stochdef {importlib.metadata.version('stochdef')}"]
    else:
        assert lines[0].startswith("usage: stochdef ") and "evaluate" in done.stdout


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_python_m_stochdef_runs_from_the_checkout(option: str) -> None:
    """From the repository root, stochdef/ joins the installed namespace instead of shadowing it."""
    done = subprocess.run(
        [sys.executable, "-m", "stochdef", option], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    if option == "--version":
        assert done.stdout == f"stochdef {importlib.metadata.version('stochdef')}\n"
    else:
        assert done.stdout.startswith("usage: stochdef ") and "crosscheck" in done.stdout
