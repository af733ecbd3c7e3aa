"""The static checks run with the tests, so they cannot regress unseen: ruff (lint, format) and mypy.

The tools are pinned in the ``test`` extra (pyproject.toml) because their verdicts change between releases;
``tox -e lint`` runs the same three commands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("argv", [("ruff", "check", "."), ("ruff", "format", "--check", ".")], ids=["lint", "format"])
def test_ruff(argv: tuple[str, ...]) -> None:
    done = _run(*argv)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_covers_the_three_packages() -> None:
    subprocess.run(["bash", str(ROOT / ".ci" / "devshim"), str(ROOT)], check=True, capture_output=True)
    done = _run("mypy")  # the packages and the path are configured in pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues found" in done.stdout
