"""`.ci/run` extracts the README's one test command and would run exactly that (checked without running it)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPEN, CLOSE = "<!-- test-command -->", "<!-- /test-command -->"


def _readme_command(text: str) -> str:
    """An independent reading of the README: the one line of the ```bash fence between the markers."""
    assert text.count(OPEN) == 1 and text.count(CLOSE) == 1
    block = text.split(OPEN, 1)[1].split(CLOSE, 1)[0]
    match = re.fullmatch(r"\n```bash\n([^\n]+)\n```\n", block)
    assert match is not None, f"not a one-line bash fence: {block!r}"
    return match.group(1)


def _ci_run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(root / ".ci" / "run"), *args], capture_output=True, text=True, timeout=60)


def _checkout_with_readme(tmp_path: Path, readme: str) -> Path:
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(readme)
    return tmp_path


def test_ci_runs_the_readmes_test_command() -> None:
    command = _readme_command((ROOT / "README.md").read_text())
    printed = _ci_run(ROOT, "--print")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == command + "\n"
    # CI starts from a clean checkout: the command must make its own venv and install the test extra.
    assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert "pip install -e '.[test]'" in command and "python -m pytest" in command


# A stand-in for the venv's python that the README's command makes: it reports CAPABILITY as torch's CPU
# capability, and records how the second step runs it (after the README's command: ran.txt exists).
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = -c ]; then echo {capability}; exit 0; fi
test -f ran.txt && echo "$ATEN_CPU_CAPABILITY $OMP_NUM_THREADS $*" > second.txt
"""


@pytest.mark.parametrize(("capability", "second"), [("AVX512", "avx2"), ("AVX2", "default"), ("DEFAULT", None)])
def test_ci_executes_the_extracted_line_then_the_float_sensitive_tests_under_a_second_capability(
    tmp_path: Path, capability: str, second: str | None
) -> None:
    command = "echo ok > ran.txt && test -f README.md"  # runs in the checkout's root
    root = _checkout_with_readme(tmp_path, f"# x\n\n{OPEN}\n```bash\n{command}\n```\n{CLOSE}\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.format(capability=capability))
    python.chmod(0o755)
    result = _ci_run(root)
    assert result.returncode == 0, result.stderr
    assert (root / "ran.txt").read_text() == "ok\n"
    assert result.stdout.startswith("+ echo ok > ran.txt")
    if second is None:  # one capability only: nothing to compare with
        assert not (root / "second.txt").exists() and "no second run" in result.stdout
    else:
        assert (root / "second.txt").read_text() == f"{second} 1 -m pytest -q -m float_sensitive\n"


def test_ci_fails_when_the_readme_command_makes_no_venv(tmp_path: Path) -> None:
    root = _checkout_with_readme(tmp_path, f"{OPEN}\n```bash\ntrue\n```\n{CLOSE}\n")
    result = _ci_run(root)
    assert result.returncode == 1 and "made no .venv/bin/python" in result.stderr


@pytest.mark.parametrize(
    ("readme", "match"),
    [
        ("# no block\n", "found 0 opening and 0 closing"),
        (f"{OPEN}\n```bash\ntrue\n```\n{CLOSE}\n" * 2, "found 2 opening and 2 closing"),
        (f"{OPEN}\n```bash\ntrue\ntrue\n```\n{CLOSE}\n", "exactly one command line"),
        (f"{OPEN}\n```\ntrue\n```\n{CLOSE}\n", "exactly one command line"),
        (f"{OPEN}\n```bash\n\n```\n{CLOSE}\n", "exactly one command line"),
    ],
)
def test_ci_refuses_a_readme_without_exactly_one_command(tmp_path: Path, readme: str, match: str) -> None:
    result = _ci_run(_checkout_with_readme(tmp_path, readme))
    assert result.returncode == 1
    assert match in result.stderr
    assert result.stdout == ""  # nothing was run


def test_readme_example_runs(tmp_path: Path) -> None:
    """The README's Foolbox + ART example runs as written and attacks successfully through both."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- example -->", 1)[1].split("<!-- /example -->", 1)[0]
    match = re.fullmatch(r"\n```python\n(.+)\n```\n", block, flags=re.DOTALL)
    assert match is not None
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    values = dict(line.rsplit(":", 1) for line in result.stdout.splitlines())
    assert float(values["Foolbox attack success"]) > 0.5  # PGD at eps 0.1 breaks most of SDR-Learnable
    assert float(values["ART: accuracy of the 8-draw ensemble"]) < 0.5


def test_every_float_sensitive_entry_names_a_test() -> None:
    """A renamed file or test would drop out of the second-capability run silently: each entry must exist."""
    # by path: pytest may have imported another folder's conftest.py (tests/adapters/) under the name `conftest`
    spec = importlib.util.spec_from_file_location("tests_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for entry in module.FLOAT_SENSITIVE:
        path, _, name = entry.partition("::")
        assert (ROOT / path).is_file(), entry
        assert not name or f"def {name}(" in (ROOT / path).read_text(), entry
