"""The pre-flight of a user's own model (issue 27): data checked against the model before any forward pass, and a
checkpoint that is no state dict or one for another architecture, each on one line that says what to change, with
exit status 2 and nothing computed (no ``results.jsonl``)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from stochdef.evaluations import cli, evaluate_model

ARCH = """
import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.head(h)


def build():
    return ConvNet()


def other():
    return ConvNet(width=6)
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "prenets.py").write_text(textwrap.dedent(ARCH))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.random((6, 3, 8, 8))  # NumPy's default float64
    y = np.arange(6) % 10
    np.savez(tmp_path / "f64.npz", x=x, y=y)
    np.savez(tmp_path / "good.npz", x=x.astype(np.float32), y=y)
    np.savez(tmp_path / "last.npz", x=x.transpose(0, 2, 3, 1).astype(np.float32), y=y)
    import prenets  # type: ignore[import-not-found]

    torch.save(prenets.build().state_dict(), tmp_path / "good.pt")
    torch.save(prenets.build(), tmp_path / "pickled.pt")
    torch.save(prenets.other().state_dict(), tmp_path / "other.pt")
    torch.save({"module." + k: v for k, v in prenets.build().state_dict().items()}, tmp_path / "dp.pt")
    return tmp_path


def _evaluate(capsys: pytest.CaptureFixture[str], root: Path, data: str, checkpoint: str) -> str:
    argv = ["evaluate", "--model", "prenets:build", "--checkpoint", str(root / checkpoint), "--data",
            str(root / data), "--attack", "fgsm", "--library", "inhouse", "--eps", "0.1", "--samples", "1",
            "--no-indicators", "--judge-samples", "2", "--out", str(root / "out"), "--device", "cpu"]  # fmt: skip
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (root / "out" / "results.jsonl").exists()  # refused before the first cell
    return err


CASES: list[tuple[str, str, Callable[[Path], str]]] = [
    ("f64.npz", "good.pt", lambda r: "x is float64 but the model's parameters are float32: cast x to float32"),
    ("last.npz", "good.pt", lambda r: "the model expects (N, 3, 8, 8), got (N, 8, 8, 3): channels first"),
    (
        "good.npz",
        "pickled.pt",
        lambda r: "this file holds a pickled model (prenets.ConvNet), not a state dict: save model.state_dict()",
    ),
    ("good.npz", "good.npz", lambda r: f"checkpoint {str(r / 'good.npz')!r} is a NumPy .npz, not a torch state dict"),
    (
        "good.npz",
        "other.pt",
        lambda r: (
            "shapes differ: conv.weight (6, 3, 3, 3) in the file, (4, 3, 3, 3) in the model, conv.bias (6,) in the "
            "file, (4,) in the model, head.weight (10, 6) in the file, (10, 4) in the model"
        ),
    ),
    (
        "good.npz",
        "dp.pt",
        lambda r: (
            "missing keys ['conv.weight', 'conv.bias', 'head.weight', 'head.bias']; "
            "unexpected keys ['module.conv.weight', 'module.conv.bias', 'module.head.weight', 'module.head.bias']"
        ),
    ),
]


@pytest.mark.parametrize(("data", "checkpoint", "message"), CASES, ids=[f"{d}-{c}" for d, c, _ in CASES])
def test_a_mistake_is_one_line_saying_what_to_change(
    capsys: pytest.CaptureFixture[str], package: Path, data: str, checkpoint: str, message: Callable[[Path], str]
) -> None:
    assert message(package) in _evaluate(capsys, package, data, checkpoint)


def test_evaluate_model_checks_the_data_against_the_model_first(package: Path) -> None:
    import prenets

    x = torch.rand(4, 8, 8, 3)
    with pytest.raises(ValueError, match=r"got \(N, 8, 8, 3\): channels first") as caught:
        evaluate_model(prenets.build(), x, torch.arange(4), eps=0.1, attacks=("fgsm",), libraries=("inhouse",))
    assert caught.value.__traceback__ is not None and "\n" not in str(caught.value)
    with pytest.raises(TypeError, match="cast x to float32"):
        evaluate_model(prenets.build(), x.permute(0, 3, 1, 2).double(), torch.arange(4), eps=0.1, attacks=("fgsm",))


def test_several_models_run_side_by_side_from_the_command_line(
    capsys: pytest.CaptureFixture[str], package: Path
) -> None:
    torch.manual_seed(1)
    import prenets

    torch.save(prenets.other().state_dict(), package / "other-good.pt")
    argv = ["evaluate", "--model", "prenets:build,prenets:other", "--checkpoint",
            f"{package / 'good.pt'},{package / 'other-good.pt'}", "--data", str(package / "good.npz"), "--attack",
            "fgsm", "--library", "inhouse", "--eps", "0.1", "--samples", "1", "--no-indicators", "--judge-samples",
            "2", "--out", str(package / "out"), "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    out = package / "out"
    report = (out / "report.md").read_text()
    assert "| prenets:build | no |" in report and "| prenets:other | no |" in report  # one report, both models
    cards = {
        name: json.loads((out / f"model-card--{name}.json").read_text()) for name in ("prenets_build", "prenets_other")
    }
    assert cards["prenets_build"]["checkpoint"] == str(package / "good.pt")
    assert cards["prenets_other"]["checkpoint"] == str(package / "other-good.pt")
    capsys.readouterr()
    for extra, message in (
        (["--defense", "adv-bnn"], "--model replaces --defense: pass one or the other"),
        (["--checkpoint", str(package / "good.pt")], "--checkpoint lists 1 file(s) for 2 --model entries"),
    ):
        code = cli.main([*argv[:1], "--model", "prenets:build,prenets:other", "--data", str(package / "good.npz"),
                         *extra, "--out", str(package / "out2")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and message in err, err


def test_evaluate_model_takes_several_models(package: Path) -> None:
    import prenets

    torch.manual_seed(0)
    x, y = torch.rand(20, 3, 8, 8), torch.arange(20) % 10
    models = {"base": prenets.build(), "wide": prenets.other()}
    result = evaluate_model(models, x, y, eps=0.1, attacks=("fgsm",), libraries=("inhouse",), samples=(1,),
                            judge_samples=2, out=package / "two")  # fmt: skip
    assert set(result.by_model) == {"base", "wide"} and result.by_model["base"].clean_accuracy == result.clean_accuracy
    for name, model in models.items():
        with torch.no_grad():  # deterministic models: each clean accuracy is its own model's argmax accuracy
            expected = float((model(x).argmax(1) == y).float().mean())
        assert result.by_model[name].clean_accuracy == pytest.approx(expected)
    assert (package / "two" / "model-card--base.json").exists() and (package / "two" / "model-card--wide.json").exists()
    with pytest.raises(ValueError, match="checkpoint is for one model"):
        evaluate_model({"a": prenets.build(), "b": prenets.build()}, x, y, eps=0.1, checkpoint=package / "good.pt")
