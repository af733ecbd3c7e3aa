"""``stochdef verify``: a folder just made agrees with itself, cell for cell; an edited record, a key this version
does not make, other provenance and a caller's own model are each reported as what they are."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stochdef.evaluations.cli import main
from stochdef.evaluations.evaluate.verify import verify
from stochdef.evaluations.stats import wilson_interval

N = 20
MADE = (
    "evaluate --dataset mnist5k --defense vanilla-mlp,sdr-learnable --attack fgsm,pgd --library inhouse,art "
    f"--eps 0.1 --samples 1,2 --examples {N} --steps 2 --judge-samples 2 --no-indicators --no-transfer --out"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with a deterministic (vanilla-mlp) and a random (sdr-learnable) defense."""
    out = tmp_path_factory.mktemp("verify") / "out"
    assert main([*MADE.split(), str(out)]) == 0
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    return out


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _write(out: Path, records: list[dict[str, Any]]) -> None:
    (out / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def test_a_folder_just_made_agrees_bit_for_bit(folder: Path) -> None:
    before = _digests(folder)
    records = [r for r in _records(folder) if "skipped" not in r]
    checks, overridden = verify(folder, cells=len(records), seed=0)
    assert overridden == []
    assert {c.key for c in checks} == {r["key"] for r in records}  # every clean and attack cell that ran
    assert {c.random for c in checks} == {True, False}
    # same machine, same seeds: even the random defense's draws come out the same
    assert [(c.status, c.identical) for c in checks] == [("agrees", True)] * len(checks), checks
    assert _digests(folder) == before  # verify reads the folder only


def test_an_edited_deterministic_number_disagrees(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(folder, tmp_path)
    records = _records(out)
    target = next(r for r in records if r["kind"] == "attack" and r["defense"] == "vanilla-mlp" and "l2" in r)
    target["l2"] = target["l2"] * (1 + 1e-12)  # the last bits only: bit for bit is bit for bit
    _write(out, records)
    report = tmp_path / "verify.json"
    assert main(["verify", str(out), "--cells", str(len(records)), "--report", str(report)]) == 1
    printed = capsys.readouterr().out
    assert f"disagrees: {target['key']}" in printed and "l2 " in printed
    found = {c["key"]: c for c in json.loads(report.read_text())["cells"]}
    assert found[target["key"]]["status"] == "disagrees"
    assert [c["status"] for k, c in found.items() if k != target["key"]] == ["agrees"] * (len(found) - 1)


def test_a_random_accuracy_moved_out_of_its_interval_disagrees(folder: Path, tmp_path: Path) -> None:
    out = _copy(folder, tmp_path)
    records = _records(out)
    target = next(r for r in records if r["kind"] == "attack" and r["defense"] == "sdr-learnable" and "l2" in r)
    # N or 0 of N correct, at least 0.5 away from the recorded rate: at N = 20 the edited 95% Wilson interval is
    # [0.839, 1] or [0, 0.161], and the recorded one reaches at most about 0.70 up (from 0.5) or 0.30 down, so each rate
    # lies outside the other's interval whatever the recorded rate
    edited = 1.0 if target["acc_ensemble"] <= 0.5 else 0.0
    target["acc_ensemble"], target["acc_ensemble_ci"] = edited, list(wilson_interval(round(edited * N), N))
    _write(out, records)
    checks, _ = verify(out, cells=len(records), seed=0)
    verdict = {c.key: c for c in checks}[target["key"]]
    assert verdict.status == "disagrees" and verdict.random is True
    assert "acc_ensemble" in verdict.why and "outside the recorded interval" in verdict.why


def test_other_provenance_is_refused_unless_forced(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(folder, tmp_path)
    records = _records(out)
    for record in records:
        record["provenance"]["cpu_capability"] = "NEON"
    _write(out, records)
    assert main(["verify", str(out), "--cells", "3"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cpu_capability NEON ->" in error and "--force" in error
    assert main(["verify", str(out), "--cells", "3", "--force"]) == 0  # the numbers are this machine's after all
    assert "every cell judged by its 95% interval" in capsys.readouterr().out


def test_a_key_this_version_does_not_make_and_an_own_model_cell(folder: Path, tmp_path: Path) -> None:
    out = _copy(folder, tmp_path)
    records = [r for r in _records(out) if "skipped" not in r]
    renamed, own = [r for r in records if r["kind"] == "attack"][:2]
    renamed["key"] = renamed["key"].replace('"kind":', '"temperature":2,"kind":')
    own["key"] = own["key"].replace('"kind":', '"fingerprint":"abc","kind":')
    _write(out, records)
    found = {c.key: c for c in verify(out, cells=len(records), seed=0)[0]}
    assert (found[renamed["key"]].status, found[renamed["key"]].why) == (
        "not reproducible",
        "key field(s) temperature unknown to this version",
    )
    assert found[own["key"]].status == "skipped" and "own model" in found[own["key"]].why


def test_bad_requests_are_refused(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no results file"):
        verify(tmp_path, cells=2, seed=0)
    with pytest.raises(ValueError, match="cells must be >= 1"):
        verify(folder, cells=0, seed=0)
    for inside in (folder / "verify.json", folder / "sub" / "verify.json"):
        assert main(["verify", str(folder), "--report", str(inside)]) == 2
        assert not inside.exists()
    assert not (folder / "sub").exists()


ROOT = Path(__file__).resolve().parents[3]
FAKE = """#!/usr/bin/env bash
if [ "$1" = -c ]; then echo DEFAULT; exit 0; fi
echo "$OMP_NUM_THREADS $*" >> "$(dirname "$0")/calls.txt"
exit {status}
"""


@pytest.mark.parametrize("status", [0, 1])
def test_ci_runs_verify_on_the_committed_folder_and_fails_with_it(tmp_path: Path, status: int) -> None:
    """`.ci/run` calls the venv's stochdef verify on the committed sample after the README's command (here `true`,
    with stand-ins for the venv's python and stochdef), and a disagreeing cell (exit 1) fails CI."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text("<!-- test-command -->\n```bash\ntrue\n```\n<!-- /test-command -->\n")
    sample = tmp_path / "evaluations" / "reports" / "verify-sample"
    sample.mkdir(parents=True)
    shutil.copy(ROOT / "evaluations" / "reports" / "verify-sample" / "results.jsonl", sample)
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    for name in ("python", "stochdef"):
        (venv / name).write_text(FAKE.format(status=status if name == "stochdef" else 0))
        (venv / name).chmod(0o755)
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60)
    assert (venv / "calls.txt").read_text() == "1 verify evaluations/reports/verify-sample --cells 8 --force\n"
    assert done.returncode == status, done.stderr


def test_the_committed_sample_has_both_kinds_of_defense_and_its_command() -> None:
    """The folder CI verifies holds deterministic and random cells (else the check would test one verdict only)."""
    sample = ROOT / "evaluations" / "reports" / "verify-sample"
    records = _records(sample)
    assert {r["random"] for r in records if r["kind"] == "clean"} == {True, False}
    command = (sample / "command.txt").read_text().splitlines()[-1]
    assert command.startswith("OMP_NUM_THREADS=1 stochdef evaluate ")
    assert command.endswith("--out evaluations/reports/verify-sample")
