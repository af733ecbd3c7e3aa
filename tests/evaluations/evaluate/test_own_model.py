"""Your own model: ``evaluate_model``, ``--model MODULE:ATTR`` with ``--checkpoint`` and ``--data``, the model card.

Exact properties (the worst case against a brute-force AND of the cells, the card against the store and the
``.npz``, broken examples misclassified by a deterministic model) and clear errors on bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from stochdef.defenses.models import mlp
from stochdef.defenses.training import fit
from stochdef.evaluations import evaluate_model
from stochdef.evaluations.evaluate.user_model import load_checkpoint, load_data, load_model
from stochdef.evaluations.stats import wilson_interval

N = 40
CONSTANT = 0  # the class the "weak" checkpoint always answers: 1 of the first 40 test digits
ARCH = """
from torch import nn
from stochdef.defenses import NoiseInjection
from stochdef.defenses.models import mlp


def build():
    return nn.Sequential(NoiseInjection(std=0.2), mlp((64, 32, 10)))
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, digits: Any) -> Path:
    """A temporary package ``owndefs`` with a randomized ``build()``, two checkpoints and a data file."""
    root = tmp_path_factory.mktemp("own")
    (root / "owndefs").mkdir()
    (root / "owndefs" / "__init__.py").write_text("")
    (root / "owndefs" / "nets.py").write_text(textwrap.dedent(ARCH))
    sys.path.insert(0, str(root))
    try:
        from owndefs.nets import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(root))
    torch.manual_seed(0)
    model = build()
    fit(model, digits.x_train, digits.y_train, epochs=15, batch_size=64, lr=3e-3, progress=False, seed=0)
    torch.save(model.state_dict(), root / "strong.pt")
    # "weak": the same weights but an output layer that answers CONSTANT whatever the input, so that its every
    # number is known exactly on any machine (a 1-epoch model's accuracy moves with the CPU's float kernels)
    weak = {k: v.clone() for k, v in model.state_dict().items()}
    weak["1.3.weight"].zero_()
    weak["1.3.bias"].copy_(5.0 * torch.nn.functional.one_hot(torch.tensor(CONSTANT), 10) - 1.0)  # logits
    torch.save(weak, root / "weak.pt")
    np.savez(root / "test.npz", x=digits.x_test[:N].numpy(), y=digits.y_test[:N].numpy())
    return root


def _cli(root: Path, out: Path, checkpoint: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "stochdef", "evaluate", "--model", "owndefs.nets:build", "--checkpoint",
        str(root / checkpoint), "--data", str(root / "test.npz"), "--attack", "fgsm,pgd,apgd-ce",
        "--library", "inhouse,torchattacks", "--eps", "0.1,0.2", "--samples", "1,2", "--steps", "3",
        "--judge-samples", "4", "--no-indicators", "--out", str(out), "--device", "cpu",
    ]  # fmt: skip
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cli_runs(package: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outs = {}
    for name in ("weak", "strong"):
        out = tmp_path_factory.mktemp(f"out-{name}")
        done = _cli(package, out, f"{name}.pt")
        assert done.returncode == 0, done.stderr[-2000:]
        outs[name] = out
    return outs


def test_a_user_model_runs_end_to_end_from_the_command_line(cli_runs: dict[str, Path]) -> None:
    out = cli_runs["strong"]
    for name in ("results.jsonl", "report.md", "model-card.json", "worst-case.npz", "accuracy_vs_eps.png"):
        assert (out / name).exists(), name
    card = json.loads((out / "model-card.json").read_text())
    assert card["model"] == "owndefs.nets:build" and card["random"] is True
    assert card["eps"] == 0.2 and card["norm"] == "linf" and card["n"] == N
    assert card["attacks"] == ["fgsm", "pgd", "apgd-ce"] and card["eot_samples"] == [1, 2]
    assert isinstance(card["clean_accuracy"], float) and isinstance(card["robust_accuracy"], float)
    assert card["forward_passes"] > N and len(card["examples"]) == N
    assert "worst case over every attack" in (out / "report.md").read_text()


def test_a_retrained_checkpoint_changes_the_numbers(cli_runs: dict[str, Path], package: Path) -> None:
    weak, strong = (json.loads((cli_runs[k] / "model-card.json").read_text()) for k in ("weak", "strong"))
    assert weak["source"] != strong["source"]  # the checkpoint's weights are part of every cell key
    labels = torch.from_numpy(np.load(package / "test.npz")["y"])
    exact = float((labels == CONSTANT).float().mean())  # a constant answer is right on its class only
    assert weak["clean_accuracy"] == pytest.approx(exact) and weak["robust_accuracy"] == pytest.approx(exact)
    # the trained checkpoint is right far more often: the lower end of its accuracy's 1 - 1e-6 Wilson interval
    # (a false failure ~1e-6) is above the constant answer's exact rate (0.025): it holds from 6 right of 40 up
    low, _ = wilson_interval(round(strong["clean_accuracy"] * N), N, confidence=1 - 1e-6)
    assert low > exact
    # the same folder, another checkpoint: no cell of the first is reused
    done = _cli(package, cli_runs["weak"], "strong.pt")
    assert done.returncode == 0, done.stderr[-2000:]
    reused = json.loads((cli_runs["weak"] / "model-card.json").read_text())
    assert reused["clean_accuracy"] == strong["clean_accuracy"] and reused["source"] == strong["source"]


def test_the_card_agrees_with_the_worst_case_file_and_the_store(cli_runs: dict[str, Path]) -> None:
    out = cli_runs["strong"]
    card = json.loads((out / "model-card.json").read_text())
    with np.load(out / "worst-case.npz") as f:
        eps, robust, broken_by, x, x_adv = f["eps"], f["robust"], f["broken_by"], f["x"], f["x_adv"]
    assert eps.tolist() == [0.1, 0.2] and x_adv.shape == (2, *x.shape)  # keyed by eps: one row per eps
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for k, e in enumerate(eps.tolist()):
        cells = [r for r in records if r["kind"] == "clean" or (r["kind"] == "attack" and r["eps"] == e)]
        bits = [r["correct"] for r in cells if "correct" in r]
        brute = [all(b[i] == "1" for b in bits) for i in range(N)]  # the per-example AND, by hand
        assert robust[k].tolist() == brute
        assert [ex["robust"] for ex in card["examples_by_eps"][str(e)]] == brute
        assert all((b == "") == r for b, r in zip(broken_by[k].tolist(), brute, strict=True))
        assert float(np.abs(x_adv[k] - x).max()) <= e + 1e-6
    assert card["robust_accuracy"] == pytest.approx(sum(brute) / N)  # the card's eps: the largest
    assert [ex["robust"] for ex in card["examples"]] == brute
    singles = [r["acc_ensemble"] for r in cells if r["kind"] == "attack" and "acc_ensemble" in r]
    assert card["robust_accuracy"] <= min(singles)  # never above any single attack


def test_evaluate_model_on_a_deterministic_model(plain_digits_mlp: nn.Module, digits: Any, tmp_path: Path) -> None:
    """The worst case is at most every single cell, and every example it counts broken is misclassified."""
    x, y = digits.x_test[:N], digits.y_test[:N]
    result = evaluate_model(
        plain_digits_mlp, x, y, eps=(0.05, 0.15), attacks=("fgsm", "pgd", "apgd-ce", "square"),
        libraries=("inhouse", "art", "torchattacks"), samples=(1,), steps=5, queries=100, out=tmp_path,
    )  # fmt: skip
    assert result.eps == 0.15 and result.per_attack
    assert result.robust_accuracy <= min(result.per_attack.values())
    assert result.robust_accuracy_ci[0] <= result.robust_accuracy <= result.robust_accuracy_ci[1]
    with torch.no_grad():
        assert result.clean_accuracy == pytest.approx(float((plain_digits_mlp(x).argmax(1) == y).float().mean()))
    with np.load(tmp_path / "worst-case.npz") as f:
        x_adv, robust = torch.from_numpy(f["x_adv"][-1]), torch.from_numpy(f["robust"][-1])  # the largest eps
    with torch.no_grad():
        correct = plain_digits_mlp(x_adv).argmax(1) == y
    assert torch.equal(correct, robust)  # a deterministic judge: the file's examples are the proof
    assert result.robust_accuracy == pytest.approx(float(robust.float().mean()))


def test_evaluate_model_in_l2(plain_digits_mlp: nn.Module, digits: Any) -> None:
    x, y = digits.x_test[:N], digits.y_test[:N]
    result = evaluate_model(
        plain_digits_mlp, x, y, eps=1.0, norm="l2", attacks=("fgsm", "pgd", "apgd-dlr"),
        libraries=("inhouse", "torchattacks"), samples=(1,), steps=5,
    )  # fmt: skip
    assert result.norm == "l2" and result.out is None
    assert all(not key.startswith("fgsm") for key in result.per_attack)  # FGSM is L-inf only
    records = [r for r in result.store if r["kind"] == "attack" and "l2" in r]
    assert records and all(r["l2"] <= 1.0 + 1e-4 and r["norm"] == "l2" for r in records)


def test_bad_input_is_refused_with_the_argument_named(tmp_path: Path, digits: Any) -> None:
    net = mlp((64, 10))
    x, y = digits.x_test[:4], digits.y_test[:4]
    with pytest.raises(TypeError, match="y"):
        evaluate_model(net, x, y.float(), eps=0.1)
    with pytest.raises(ValueError, match="bounds"):
        evaluate_model(net, x * 3, y, eps=0.1)
    with pytest.raises(ValueError, match="samples"):
        evaluate_model(net, x, y, eps=0.1, samples="many")
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        load_model("no_colon_here")
    with pytest.raises(ValueError, match="cannot import"):
        load_model("surely_not_a_module_xyz:build")
    np.savez(tmp_path / "bad.npz", x=x.numpy())
    with pytest.raises(ValueError, match="'x' and 'y'"):
        load_data(tmp_path / "bad.npz")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(net, tmp_path / "bad.pt")


def test_the_cli_reports_a_bad_model_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stochdef", "evaluate", "--model", "nope_xyz:build", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "stochdef evaluate: error: model 'nope_xyz:build': cannot import" in done.stderr


def test_the_readme_example_runs(tmp_path: Path) -> None:
    """The README's evaluate_model example runs as written and writes what it says."""
    text = (Path(__file__).parents[3] / "README.md").read_text()
    block = text.split("<!-- example-evaluate -->", 1)[1].split("<!-- /example-evaluate -->", 1)[0]
    code = block.split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "worst case at eps 0.1" in done.stdout
    card = json.loads((tmp_path / "my-eval" / "model-card.json").read_text())
    assert card["attacks"] == ["pgd", "apgd-ce", "square"] and card["eps"] == 0.1
    assert card["robust_accuracy"] <= card["best_single_attack_accuracy"]
    assert (tmp_path / "my-eval" / "worst-case.npz").exists() and (tmp_path / "my-eval" / "report.md").exists()


def test_an_explicit_checkpoint_wins_over_the_zoo_one(tmp_path: Path) -> None:
    """``--defense NAME --checkpoint PATH`` loads PATH into the zoo architecture, and PATH enters the keys."""
    from stochdef.defenses import zoo
    from stochdef.evaluations.evaluate import CleanCell, EvalConfig, Run
    from stochdef.evaluations.evaluate.store.results import ResultsFile

    shipped, _ = zoo.load("vanilla-mlp", dataset="mnist5k")
    zeros = {k: torch.zeros_like(v) for k, v in shipped.state_dict().items()}
    torch.save(zeros, tmp_path / "zeros.pt")
    torch.save({"state_dict": shipped.state_dict()}, tmp_path / "same.pt")
    config = EvalConfig(defenses=("vanilla-mlp",), checkpoint=str(tmp_path / "zeros.pt"), indicators=False)
    x = torch.rand(3, 1, 28, 28)
    run = Run(config, ResultsFile(tmp_path / "r.jsonl"), x, torch.zeros(3, dtype=torch.long), 10)
    model = run.model("vanilla-mlp")
    assert all(float(p.detach().abs().max()) == 0.0 for p in model.parameters())
    assert not torch.equal(shipped(x), model(x))
    other = EvalConfig(defenses=("vanilla-mlp",), checkpoint=str(tmp_path / "same.pt"), indicators=False)
    plain = EvalConfig(defenses=("vanilla-mlp",), indicators=False)
    keys = {CleanCell.of(c, "vanilla-mlp").key for c in (config, other, plain)}
    assert len(keys) == 3  # each checkpoint its own cells; the zoo run's keys unchanged
