"""The ``stochdef`` command line: bad input gets a clear message and exit status 2, never a traceback; the top
level (--help, --version) imports no subcommand; global options go before or after the subcommand."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from stochdef.defenses import data as datasets
from stochdef.evaluations import cli

HEAVY = ("torch", "foolbox", "art", "torchattacks")


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


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"stochdef {importlib.metadata.version('stochdef')}\n"


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert set(cli.COMMANDS) == {"evaluate", "reproduce", "demo", "train", "bench", "crosscheck", "verify"}
    for name in cli.COMMANDS:
        assert f"    {name} " in out


@pytest.mark.parametrize(
    ("argv", "command", "verbose"),
    [
        (["train"], "train", False),
        (["-v", "train"], "train", True),
        (["train", "-v"], "train", True),
        (["train", "--verbose", "mlp"], "train", True),
        (["evaluate", "--n", "10", "-v"], "evaluate", True),
        (["-v", "evaluate", "--n", "10"], "evaluate", True),
    ],
)
def test_global_options_are_accepted_before_and_after_the_subcommand(
    argv: list[str], command: str, verbose: bool
) -> None:
    args = cli.parse_args(argv)  # what main parses, without running the job
    assert args.command == command
    assert args.verbose is verbose


def test_version_is_accepted_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "--version"])
    assert capsys.readouterr().out.startswith("stochdef ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["--help"], "crosscheck"),
        (["--version"], "stochdef "),
        (["--help", "evaluate"], "reproduce"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_the_top_level_imports_no_attack_library(argv: list[str], expected: str) -> None:
    """The top-level parser lists the subcommands from a static table: none of their modules is imported."""
    code = (
        "import sys\n"
        "from stochdef.evaluations import cli\n"
        "cli.build_parser()\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
    assert expected in done.stdout + done.stderr


def test_eps_list_names_the_bad_item(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--eps", "0.1,abc")
    assert code == 2
    assert "argument --eps: 'abc' is not a number (in '0.1,abc')" in err
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--samples", "1,2.5")
    assert code == 2 and "'2.5' is not an integer" in err


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_help_shows_every_default(command: str) -> None:
    import argparse

    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    text = " ".join(sub.format_help().split())  # argparse wraps lines: compare with single spaces
    for action in sub._actions:
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            continue  # flags, and options whose absence means "all" / "none" (their help says so)
        default = action.default
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
        assert action.help, f"{command} {action.option_strings}: no help"
        assert "default" in action.help or f"(default: {shown})" in text.replace("- ", "-"), (
            command,
            action.option_strings,
        )


def test_docs_list_every_evaluate_option() -> None:
    import argparse

    readme = (Path(__file__).resolve().parents[3] / "docs" / "guide" / "evaluate.md").read_text()
    parser = cli.build_parser("evaluate")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    options = [o for a in sub._actions for o in a.option_strings if o.startswith("--") and o not in ("--help",)]
    missing = [o for o in options if f"`{o}" not in readme and o not in ("--verbose", "--version")]
    assert not missing, missing
