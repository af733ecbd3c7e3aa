"""``stochdef evaluate``: cells, library parity on a deterministic model, resume after a kill, report, plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, evaluate
from stochdef.evaluations.evaluate.outputs.plots import all_plots
from stochdef.evaluations.evaluate.outputs.report import markdown
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.libraries import DEFAULT_LIBRARIES, PGD

SMALL = EvalConfig(
    defenses=("vanilla-mlp", "sdr-learnable"),
    attacks=("fgsm", "pgd"),
    eps=(0.05, 0.1),
    samples=(1, 2),
    n=24,
    steps=2,
    judge_samples=2,
    indicators=False,
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultsFile, Path]:
    out = tmp_path_factory.mktemp("evaluate")
    store = evaluate(SMALL, out=out, progress=False).store
    assert store is not None
    return store, out


def test_every_cell_is_recorded_once(small_run: tuple[ResultsFile, Path]) -> None:
    store, out = small_run
    keys = [json.loads(line)["key"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys))
    # clean + attacks (defense x attack x eps x samples x library) + transfer (defense x defense)
    assert len(keys) == 2 + 2 * 2 * 2 * 2 * len(DEFAULT_LIBRARIES) + 2 * 2
    for d in SMALL.defenses:
        assert CleanCell.of(SMALL, d).key in store


def test_clean_cells_know_which_defense_is_random(small_run: tuple[ResultsFile, Path]) -> None:
    store, _ = small_run
    assert store.get(CleanCell.of(SMALL, "vanilla-mlp").key)["random"] is False
    assert store.get(CleanCell.of(SMALL, "sdr-learnable").key)["random"] is True
    # how each draws (DESIGN.md, §C2): SDR samples its weights per row; the plain MLP does not draw
    assert store.get(CleanCell.of(SMALL, "sdr-learnable").key)["draws"] == "per-row"
    assert store.get(CleanCell.of(SMALL, "vanilla-mlp").key)["draws"] == "deterministic"
    eot = _attack(store, "sdr-learnable", "inhouse", "pgd", 0.1, 2)
    assert eot["draws"] == "2 draws, one call on the batch replicated 2 times" and eot["estimator"].endswith(
        "; 2 draws, one call on the batch replicated 2 times"
    )


def _attack(store: ResultsFile, defense: str, library: str, attack: str, eps: float, samples: int) -> dict[str, Any]:
    record = AttackCell.of(SMALL, defense, library, SMALL.attack(attack, eps, samples)).record(store)  # type: ignore[arg-type]
    assert record is not None
    return record


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_libraries_agree_on_a_deterministic_model(small_run: tuple[ResultsFile, Path], attack: str) -> None:
    """FGSM and PGD without random start are bit-identical across libraries (the cross-check's parity)."""
    store, _ = small_run
    for eps in SMALL.eps:
        accs = {lib: _attack(store, "vanilla-mlp", lib, attack, eps, 1)["acc_single"] for lib in DEFAULT_LIBRARIES}
        assert len(set(accs.values())) == 1, accs
        for lib in DEFAULT_LIBRARIES:
            record = _attack(store, "vanilla-mlp", lib, attack, eps, 1)
            assert record["linf"] <= eps + 1e-6
            assert record["acc_single_ci"][0] <= record["acc_single"] <= record["acc_single_ci"][1]
            # EoT on a deterministic model is the naive attack: skipped with the reason, not recomputed
            assert "deterministic" in _attack(store, "vanilla-mlp", lib, attack, eps, 2)["skipped"]


def test_attacks_lower_accuracy(small_run: tuple[ResultsFile, Path]) -> None:
    store, _ = small_run
    clean = store.get(CleanCell.of(SMALL, "vanilla-mlp").key)["acc_single"]
    assert _attack(store, "vanilla-mlp", "inhouse", "pgd", 0.1, 1)["acc_single"] < clean - 0.2


def test_report_and_plots(small_run: tuple[ResultsFile, Path]) -> None:
    store, out = small_run
    plots = all_plots(store, SMALL, out)
    assert {"accuracy_vs_eps.png", "accuracy_vs_samples.png", "calibration.png"} <= set(plots)
    for name in plots:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown(store, SMALL, seconds=1.0, plots=plots)
    for d in SMALL.defenses:
        assert d in text
    for lib in DEFAULT_LIBRARIES:
        assert lib in text
    assert "accuracy_vs_eps.png" in text


def _cli(out: Path) -> list[str]:
    return [
        sys.executable, "-m", "stochdef.evaluations.cli", "evaluate", "--out", str(out),
        "--defense", ",".join(SMALL.defenses), "--attack", "fgsm,pgd", "--library", "inhouse,torchattacks",
        "--eps", "0.05,0.1,0.15", "--samples", "1,4", "--n", "60", "--steps", "5", "--judge-samples", "4",
        "--no-indicators",
    ]  # fmt: skip


def _records(path: Path) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["key"]: {k: v for k, v in r.items() if k not in ("seconds", "versions")} for r in records}


def test_resume_after_kill_gives_identical_results(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_cli(whole), check=True, env=env, capture_output=True, timeout=600)
    expected = _records(whole / "results.jsonl")

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 6:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _records(results)  # parses: nothing half-written
    assert 6 <= len(partial) < len(expected), "the run was not killed mid-way"

    resumed = subprocess.run(_cli(killed), check=True, env=env, capture_output=True, text=True, timeout=600)
    assert f"{len(partial)} already done" in resumed.stderr
    lines = results.read_text().splitlines()
    assert len(lines) == len({json.loads(line)["key"] for line in lines})  # no duplicate cells
    final = _records(results)
    assert final == expected
    for key, record in partial.items():  # finished cells were kept, not recomputed
        assert final[key] == record


def test_pseudogradient_variant_attacks_through_the_pseudogradient(tmp_path: Path) -> None:
    """``mwd-256[psd]``: same clean outputs as ``mwd-256``, but attacks back-propagate the pseudogradient."""
    config = EvalConfig(
        defenses=("mwd-256", "mwd-256[psd]"), attacks=("pgd",), libraries=("inhouse", "foolbox"), eps=(0.3,),
        samples=(1,), n=40, steps=5, judge_samples=1, indicators=False, transfer=False,
    )  # fmt: skip
    store = evaluate(config, out=tmp_path, progress=False).store
    assert store is not None
    true, pseudo = (store.get(CleanCell.of(config, d).key) for d in config.defenses)
    assert true["acc_single"] == pseudo["acc_single"]
    spec = PGD(eps=0.3, samples=1, steps=5)
    for lib in config.libraries:
        a = store.get(AttackCell.of(config, "mwd-256", lib, spec).key)["acc_single"]
        b = store.get(AttackCell.of(config, "mwd-256[psd]", lib, spec).key)["acc_single"]
        assert b < a, (lib, a, b)  # the pseudogradient attack is the stronger one on MWD (paper Table 1 [psd])
