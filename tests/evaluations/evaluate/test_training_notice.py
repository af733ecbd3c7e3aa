"""A defense without a checkpoint is announced before the run starts, with the training time the zoo recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from stochdef.defenses.zoo.store import SHIPPED_DIR
from stochdef.evaluations.evaluate import EvalConfig, evaluate
from stochdef.evaluations.evaluate.compute.run import training_notice


def test_notice_quotes_the_recorded_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCHDEF_CACHE", str(tmp_path))  # an empty cache: only shipped checkpoints count
    assert training_notice("vanilla-mlp", "mnist5k") is None
    assert training_notice("mwd-256[psd]", "mnist5k") is None
    shipped = json.loads((SHIPPED_DIR / "vanilla-mlp--mnist5k.json").read_text())
    notice = training_notice("vanilla-mlp", "digits")
    assert notice is not None and "will be trained first" in notice
    assert f"{shipped['train_seconds']:.0f} s on mnist5k" in notice
    family = [
        json.loads(p.read_text())["train_seconds"]
        for p in SHIPPED_DIR.glob("*.json")
        if json.loads(p.read_text())["family"] == "mwd"
    ]
    notice = training_notice("mwd", "mnist5k")  # the 512-wide net ships no checkpoint: its family's range
    assert notice is not None and f"{min(family):.0f}-{max(family):.0f} s" in notice


def test_evaluate_warns_before_it_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("STOCHDEF_CACHE", str(tmp_path / "cache"))
    from stochdef.evaluations.evaluate import engine

    def stop(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # stop before any cell: the notice must already be out

    monkeypatch.setattr(engine, "ResultsFile", stop)
    config = EvalConfig(dataset="digits", defenses=("vanilla-mlp",), n=10, indicators=False)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        evaluate(config, out=tmp_path / "out", progress=False)
    assert any("vanilla-mlp has no checkpoint for digits" in r.getMessage() for r in caplog.records)
