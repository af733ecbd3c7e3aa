"""Options as users write them (issue 27): negative bounds after a space, fractions of eps, and the libraries' own
spellings and case of attack, library and norm names, recorded under the canonical name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stochdef.evaluations import cli, evaluate_model
from stochdef.evaluations.cli.evaluate import build_from_args


def _config(*argv: str):  # type: ignore[no-untyped-def]
    return build_from_args(cli.parse_args(["evaluate", *argv]))


def test_negative_bounds_and_fractions_are_taken_as_written() -> None:
    config = _config("--bounds", "-1,1", "--eps", "8/255,0.1,1e-2")
    assert config.bounds == (-1.0, 1.0)
    assert config.eps == (8 / 255, 0.1, 0.01)
    assert _config("--bounds", "-0.5,0.5").bounds == (-0.5, 0.5)
    assert _config("--eps", "16/255").eps == (16 / 255,)


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        (["--attack", "Square,APGD-CE,FGSM,apgd_dlr"], "attacks", ("square", "apgd-ce", "fgsm", "apgd-dlr")),
        (["--library", "ART,Foolbox,in-house"], "libraries", ("art", "foolbox", "inhouse")),
        (["--norm", "L2"], "norm", "l2"),
        (["--norm", "Linf"], "norm", "linf"),
        (["--norm", "L-inf"], "norm", "linf"),
    ],
)
def test_the_libraries_spellings_become_the_canonical_names(argv: list[str], field: str, expected: object) -> None:
    assert getattr(_config(*argv), field) == expected


@pytest.mark.parametrize(("argv", "message"), [
    (["--eps", "1/0"], "'1/0' is not a number (in '1/0')"),
    (["--attack", "Sqare"], "attack must be one of"),
    (["--attack", "pgd,PGD"], "attack lists 'pgd' twice"),
    (["--norm", "l3"], "norm must be one of"),
])  # fmt: skip
def test_a_misspelling_is_still_refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    try:
        code = cli.main(["evaluate", *argv, "--out", "/nonexistent/never"])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_evaluate_model_records_the_canonical_names(tmp_path: Path) -> None:
    import torch
    from torch import nn

    from stochdef.defenses import load_dataset

    digits = load_dataset("digits")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = evaluate_model(net, digits.x_test[:8], digits.y_test[:8], eps=0.1, attacks=("FGSM",),
                            libraries=("InHouse",), norm="Linf", samples=(1,), out=tmp_path)  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    attacks = [r for r in records if r["kind"] == "attack"]
    assert [(r["attack"], r["library"]) for r in attacks] == [("fgsm", "inhouse")]
    assert result.norm == "linf" and result.card["attacks"] == ["fgsm"]


def test_the_device_help_states_its_default_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "torch device (default: cuda when a GPU is available, else cpu)" in text
    assert "(default: cpu)" not in text and "(default: cuda)" not in text
