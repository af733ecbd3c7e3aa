"""The ``stochdef`` command line: bad input gets a clear message and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from stochdef.defenses import data as datasets
from stochdef.evaluations import cli


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse rejects choices itself
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--defense", "no-such-defense"], ["no-such-defense", "vanilla-mlp", "sdr-learnable", "mwd-256"]),
        (["--attack", "cw"], ["attack", "fgsm", "pgd"]),
        (["--library", "cleverhans"], ["library", "foolbox", "art", "torchattacks", "inhouse"]),
        (["--eps", "-0.1"], ["eps", "-0.1"]),
        (["--samples", "0"], ["samples", "0"]),
        (["--samples", "1,-3"], ["samples", "-3"]),
        (["--n", "100000"], ["n must be <= 1000"]),
        (["--dataset", "cifar10"], ["dataset", "mnist5k", "digits", "fashion-mnist"]),
    ],
)
def test_evaluate_rejects_bad_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), *args)
    assert code == 2
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert not (tmp_path / "results.jsonl").exists()


def test_missing_dataset_says_how_to_install(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    datasets._fashion_mnist.cache_clear()
    try:
        code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--dataset", "fashion-mnist")
    finally:
        datasets._fashion_mnist.cache_clear()
    assert code == 2
    assert "apt-get install dataset-fashion-mnist" in err


def test_corrupt_results_file_names_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"key": "a"}\n{"key": "b", \n')
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--defense", "vanilla-mlp")
    assert code == 2
    assert "line 2" in err
    assert (tmp_path / "results.jsonl").read_text() == '{"key": "a"}\n{"key": "b", \n'  # left for the user


def test_reproduce_rejects_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "reproduce", "cifar")
    assert code == 2
    for target in ("sdr", "sap", "advbnn", "mwd", "noise"):
        assert target in err


def test_pseudogradient_suffix_needs_an_mwd_network(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--defense", "relu-256[psd]")
    assert code == 2
    assert "[psd]" in err and "mwd-256[psd]" in err
