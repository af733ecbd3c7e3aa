"""The bad-input corpus (issue 14): every case gets a clear error that names the argument, on one line with exit
status 2 on the command line, before anything is computed; nothing in ``--out`` is lost or altered.

API: the in-house attacks, ``ensemble_accuracy``, ``certified_accuracy`` and ``to_art`` share the checks of
``stochdef.defenses.validation`` (empty batch: empty result; dtype, device, labels, model output: errors).
CLI: ``stochdef evaluate`` options, ``--out``, checkpoints, a locked or corrupt results file, mixed provenance,
Ctrl-C.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stochdef.adapters import ensemble_accuracy, to_art
from stochdef.defenses import zoo
from stochdef.defenses.intervals import certified, certified_accuracy
from stochdef.defenses.mwd import MWDLayer
from stochdef.evaluations import cli
from stochdef.evaluations.attacks import deepfool, fgsm, fgsm_minimal, local_search, pgd
from stochdef.evaluations.evaluate import CleanCell, EvalConfig
from stochdef.evaluations.evaluate.store.results import CorruptResultsError, ResultsFile, merge

# ---- API --------------------------------------------------------------------------------------------------------

ATTACKS: dict[str, Callable[..., Any]] = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, eps=0.1),
    "fgsm_minimal": lambda m, x, y: fgsm_minimal(m, x, y, epsilons=10),
    "pgd": lambda m, x, y: pgd(m, x, y, eps=0.1, step=0.05, steps=2),
    "deepfool": lambda m, x, y: deepfool(m, x, y, steps=2),
    "local_search": lambda m, x, y: local_search(m, x, y, rounds=2),
    "ensemble_accuracy": lambda m, x, y: ensemble_accuracy(m, x, y, samples=2),
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


class _Tuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out, out


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 4, 4), torch.arange(n) % 3


@pytest.mark.parametrize("name", ATTACKS)
def test_an_empty_batch_gets_an_empty_result(name: str) -> None:
    x, y = _batch(0)
    result = ATTACKS[name](_net(), x, y)
    if name == "ensemble_accuracy":
        assert math.isnan(result)
        return
    assert result.x_adv.shape == x.shape and result.success.shape == (0,) and result.success.dtype == torch.bool


BAD_BATCHES: list[tuple[str, Callable[[], tuple[nn.Module, torch.Tensor, torch.Tensor]], type[Exception], str]] = [
    ("float64 batch", lambda: (_net(), _batch()[0].double(), _batch()[1]), TypeError, "x must have the model's dtype"),
    ("model on another device", lambda: (_net().to("meta"), *_batch()), ValueError, "x must be on the model's device"),
    ("float labels", lambda: (_net(), _batch()[0], _batch()[1].float()), TypeError, "y must hold int64"),
    ("int32 labels", lambda: (_net(), _batch()[0], _batch()[1].int()), TypeError, "y must hold int64"),
    ("label out of range", lambda: (_net(), _batch()[0], torch.tensor([0, 1, 2, 3])), ValueError, "y must be < 3"),
    ("negative label", lambda: (_net(), _batch()[0], torch.tensor([0, -1, 2, 0])), ValueError, "y must be >= 0"),
    (
        "labels of another shape",
        lambda: (_net(), _batch()[0], torch.arange(3)),
        ValueError,
        r"y must have shape \(4,\)",
    ),
    ("tuple output", lambda: (_Tuple(), *_batch()), TypeError, "model must return a tensor of logits.*got tuple"),
    ("probabilities", lambda: (nn.Sequential(_net(), nn.Softmax(dim=1)), *_batch()), ValueError, "probabilities"),
]


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize(("case", "make", "error", "match"), BAD_BATCHES, ids=[c[0] for c in BAD_BATCHES])
def test_bad_batches_are_refused_naming_the_argument(
    name: str, case: str, make: Callable[[], Any], error: type[Exception], match: str
) -> None:
    model, x, y = make()
    with pytest.raises(error, match=match):
        ATTACKS[name](model, x, y)


def test_to_art_checks_the_class_count_without_a_trace() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.Dropout(0.5))
    net.train()
    with pytest.raises(ValueError, match="nb_classes is 5 but model returns 10"):
        to_art(net, input_shape=(1, 4, 4), nb_classes=5, clip_values=(0.0, 1.0), samples=1)
    with pytest.raises(ValueError, match="probabilities"):
        to_art(
            nn.Sequential(net, nn.Softmax(dim=1)), input_shape=(1, 4, 4), nb_classes=10, clip_values=(0, 1), samples=1
        )
    with pytest.raises(TypeError, match="got tuple"):
        to_art(_Tuple(), input_shape=(1, 4, 4), nb_classes=3, clip_values=(0.0, 1.0), samples=1)
    state = torch.get_rng_state()
    to_art(net, input_shape=(1, 4, 4), nb_classes=10, clip_values=(0.0, 1.0), samples=1)
    assert torch.equal(torch.get_rng_state(), state)  # the probe drew nothing from the caller's stream
    assert all(m.training for m in net.modules())  # and left every module's mode as it was


def test_certified_accuracy_checks_its_labels() -> None:
    net = nn.Sequential(MWDLayer(4, 3, generator=torch.Generator().manual_seed(0)), nn.Linear(3, 2))
    x = torch.rand(5, 4)
    y = net(x).argmax(1)
    with pytest.raises(TypeError, match="y must hold int64"):
        certified_accuracy(net, x, y.float(), 0.1)
    with pytest.raises(ValueError, match="y must be < 2"):
        certified_accuracy(net, x, y + 2, 0.1)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        certified_accuracy(net, x.long(), y, 0.1)
    assert math.isnan(certified_accuracy(net, x[:0], y[:0], 0.1))
    assert certified(net, x[:0], y[:0], 0.1).shape == (0,)
    assert certified_accuracy(net, x, y, 0.0) == 1.0  # the checks change nothing on good input


def test_a_record_missing_a_field_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    good = {"key": "a", "kind": "transfer", "source": "s", "target": "t", "acc_ensemble": 0.5}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"key": "b", "kind": "clean", "defense": "d"}) + "\n")
    with pytest.raises(CorruptResultsError, match=rf"{path}, line 2: a clean record must have the fields 'random'"):
        ResultsFile(path)


def test_merge_keeps_every_cell_once_and_refuses_two_results_for_one() -> None:
    a = [{"key": "1", "acc": 0.5, "seconds": 1.0}, {"key": "2", "acc": 0.25}]
    b = [{"key": "3", "acc": 0.75}, {"key": "1", "acc": 0.5, "seconds": 9.0}]
    assert [r["key"] for r in merge([a, b])] == ["1", "2", "3"]
    with pytest.raises(CorruptResultsError, match=r"cell 1 has two different results \(\['acc'\]\)"):
        merge([a, [{"key": "1", "acc": 0.0}]])


# ---- CLI --------------------------------------------------------------------------------------------------------

TINY = ["--attack", "fgsm", "--library", "inhouse", "--eps", "0.1", "--samples", "1", "--n", "8"]
TINY_FLAGS = ["--no-indicators", "--no-transfer"]
TINY_CONFIG = EvalConfig(
    defenses=("vanilla-mlp",), attacks=("fgsm",), libraries=("inhouse",), eps=(0.1,), samples=(1,), n=8
)


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` but lock files (a lock file is empty and stays), with its bytes."""
    if not out.exists():
        return {}
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".lock"}


def _prefilled(out: Path) -> dict[str, bytes]:
    """``out`` holding a finished cell of another run and a report: what a bad command must leave as it is."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"key": "other", "kind": "transfer", "source": "a", "target": "b", "acc_ensemble": 0.5}
    (out / "results.jsonl").write_text(json.dumps(record) + "\n")
    (out / "report.md").write_text("# an earlier report\n")
    return _snapshot(out)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("stochdef evaluate: error: ") and "Traceback" not in err
    return lines[0]


CLI_CASES = [
    (["--eps", ""], "eps must list at least one value"),
    (["--library", ""], "library must list at least one value"),
    (["--attack", ""], "attack must list at least one value"),
    (["--defense", ""], "defenses must list at least one value"),
    (["--eps", "0.1,0.1"], "eps lists 0.1 twice"),
    (["--samples", "1,1"], "samples lists 1 twice"),
    (["--library", "inhouse,inhouse"], "library lists 'inhouse' twice"),
    (["--defense", "vanilla-mlp,vanilla-mlp"], "defenses lists 'vanilla-mlp' twice"),
    (["--eps", "inf"], "eps must be finite"),
    (["--eps", "abc"], "argument --eps"),
    (["--bounds", "0,abc"], "'abc' is not a number (in '0,abc')"),
    (["--bounds", "0,1,2"], "bounds must be LOW,HIGH, got '0,1,2'"),
    (["--seed", "-1"], "seed must be >= 0, got -1"),
    (["--seed", str(2**32)], "seed must be <="),
    (["--device", "tpu"], "device must be one of"),
    (["--steps", "0"], "steps must be >= 1"),
    (["--judge-samples", "0"], "judge_samples must be >= 1"),
    (["--n", "0"], "n must be >= 1"),
]


@pytest.mark.parametrize(("args", "message"), CLI_CASES, ids=[" ".join(c[0]) or "empty" for c in CLI_CASES])
def test_bad_options_fail_up_front_on_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    before = _prefilled(out)
    code, err = _run(capsys, "evaluate", "--out", str(out), *args)
    assert code == 2
    assert message in _one_line_error(err) if args[0] != "--eps" or args[1] != "abc" else message in err
    assert _snapshot(out) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_cuda_without_a_gpu_fails_up_front(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = _prefilled(tmp_path)
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--device", "cuda")
    assert code == 2 and "no CUDA GPU is available" in _one_line_error(err)
    assert _snapshot(tmp_path) == before


def test_out_naming_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    code, err = _run(capsys, "evaluate", "--out", str(target), *TINY)
    assert code == 2 and f"out {str(target)!r} is a file" in _one_line_error(err)
    assert target.read_text() == "keep me\n"


def test_out_that_cannot_be_created(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parent = tmp_path / "a-file"
    parent.write_text("x")
    code, err = _run(capsys, "evaluate", "--out", str(parent / "sub"), *TINY)
    assert code == 2 and "cannot create the folder" in _one_line_error(err)


def _read_only_run(capsys: pytest.CaptureFixture[str], out: Path, *argv: str) -> tuple[int, str]:
    """``stochdef evaluate --out OUT ARGV`` with ``out`` read-only to it: ``(exit status, stderr)``.

    A user other than root: ``out`` without write permission. Root writes whatever the permissions say, so for
    root ``out`` is bind-mounted read-only in a mount namespace of the command's own (``unshare -m``), where
    writing fails with EROFS for root too; nothing outside that command sees the mount.
    """
    if os.geteuid() != 0:
        out.chmod(0o555)
        try:
            return _run(capsys, "evaluate", "--out", str(out), *argv)
        finally:
            out.chmod(0o755)
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("root without a mount namespace (unshare -m) cannot make a folder read-only to itself")
    q = shlex.quote(str(out))
    command = shlex.join([sys.executable, "-m", "stochdef.evaluations.cli", "evaluate", "--out", str(out), *argv])
    script = f"mount --bind {q} {q} && mount -o remount,ro,bind {q} {q} && exec {command}"
    done = subprocess.run([unshare, "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and mounts")
def test_out_read_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "ro"
    before = _prefilled(out)
    code, err = _read_only_run(capsys, out, *TINY)
    assert code == 2 and "not writable" in _one_line_error(err)
    assert _snapshot(out) == before


def test_a_record_missing_a_field_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text(json.dumps({"key": "x", "kind": "attack", "defense": "d"}) + "\n")
    before = _snapshot(tmp_path)
    code, err = _run(capsys, "evaluate", "--out", str(tmp_path), *TINY, *TINY_FLAGS)
    assert code == 2 and "line 1: an attack record must have the fields 'acc_single'" in _one_line_error(err)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_bad_checkpoint_is_named_before_any_cell(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("STOCHDEF_CACHE", str(cache))
    good = (zoo.SHIPPED_DIR / "vanilla-mlp--mnist5k.pt").read_bytes()
    path = cache / "vanilla-mlp--digits.pt"
    path.write_bytes(good[:3000] if damage == "truncated" else os.urandom(3000))
    out = tmp_path / "out"
    before = _prefilled(out)
    code, err = _run(
        capsys, "evaluate", "--out", str(out), "--dataset", "digits", "--defense", "vanilla-mlp", *TINY, *TINY_FLAGS
    )
    assert code == 2 and f"checkpoint {path}" in _one_line_error(err)
    assert _snapshot(out) == before


def test_a_second_run_into_a_folder_in_use_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = _prefilled(tmp_path)
    with ResultsFile(tmp_path / "results.jsonl", lock=True):  # another run holds the folder
        code, err = _run(capsys, "evaluate", "--out", str(tmp_path), "--defense", "vanilla-mlp", *TINY, *TINY_FLAGS)
    assert code == 2 and "is in use by another process" in _one_line_error(err)
    assert _snapshot(tmp_path) == before
    with pytest.raises(Exception, match="in use"), ResultsFile(tmp_path / "results.jsonl", lock=True):
        ResultsFile(tmp_path / "results.jsonl", lock=True)


def test_cells_of_other_provenance_are_refused_then_recomputed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stale = {
        "key": CleanCell.of(TINY_CONFIG, "vanilla-mlp").key,
        "kind": "clean",
        "defense": "vanilla-mlp",
        "random": False,
        **{f: 1.0 for f in ("acc_single", "acc_ensemble")},
        **{f: [0.0, 1.0] for f in ("acc_single_ci", "acc_ensemble_ci")},
        "calibration": {},
        "provenance": {"weights": {"vanilla-mlp": "0" * 64}, "device": "cpu", "cpu_capability": "AVX2", "gpu": None},
    }
    (tmp_path / "results.jsonl").write_text(json.dumps(stale) + "\n")
    before = _snapshot(tmp_path)
    argv = ["evaluate", "--out", str(tmp_path), "--defense", "vanilla-mlp", *TINY, *TINY_FLAGS, "--device", "cpu"]
    code, err = _run(capsys, *argv)
    line = _one_line_error(err)
    assert code == 2 and "1 cell(s) of this run computed under other conditions" in line
    assert "weights of vanilla-mlp 000000000000 ->" in line and "--recompute-stale" in line
    assert _snapshot(tmp_path) == before  # refused before computing: nothing changed

    assert _run(capsys, *argv, "--recompute-stale")[0] == 0
    assert [json.loads(s) for s in (tmp_path / "results.stale.jsonl").read_text().splitlines()] == [stale]  # kept
    records = [json.loads(s) for s in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2  # the clean cell, computed again, and the attack cell
    _, meta = zoo.load("vanilla-mlp")
    for record in records:
        provenance = record["provenance"]
        assert provenance["weights"] == {"vanilla-mlp": meta["weights_sha256"]}
        assert provenance["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert provenance["device"] == "cpu" and provenance["gpu"] is None
        assert record["versions"]["torch"] == torch.__version__
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "results.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert _run(capsys, *argv)[0] == 0  # same provenance now: resumes with nothing to do


# A model that stalls in the first attack cell: its forward, asked for an input gradient (the clean cell asks for
# none), touches STARTED and then waits until RELEASE exists. A test that signals the run or starts a second one
# once STARTED appears acts at a known point of the run (the clean cell recorded, an attack cell started), not
# after a time that a faster or slower machine would not match.
STALLING = """
import time
from pathlib import Path

from torch import nn

from stochdef.defenses.models import mlp

STARTED, RELEASE = Path({started!r}), Path({release!r})


class Stalling(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp((64, 10))

    def forward(self, x):
        if x.requires_grad:
            STARTED.touch()
            deadline = time.monotonic() + 600  # a run left behind by a failed test ends by itself
            while not RELEASE.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return self.net(x)


def build():
    return Stalling()
"""


def _stalling(tmp_path: Path) -> tuple[list[str], dict[str, str], Path, Path]:
    """``stochdef evaluate`` of the stalling model into ``tmp_path / "out"``: argv, env, STARTED, RELEASE."""
    started, release, code = tmp_path / "started", tmp_path / "release", tmp_path / "code"
    code.mkdir()
    (code / "stalling.py").write_text(STALLING.format(started=str(started), release=str(release)))
    argv = [
        sys.executable, "-m", "stochdef.evaluations.cli", "evaluate", "--out", str(tmp_path / "out"), "--model",
        "stalling:build", "--dataset", "digits", "--attack", "fgsm,pgd", "--library", "inhouse", "--eps",
        "0.05,0.1,0.2", "--samples", "1", "--n", "8", "--steps", "2", *TINY_FLAGS, "--device", "cpu",
    ]  # fmt: skip
    path = os.pathsep.join(p for p in (str(code), os.environ.get("PYTHONPATH", "")) if p)
    return argv, {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}, started, release


def _wait_for(path: Path, proc: subprocess.Popen[Any]) -> None:
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name}: {proc.communicate()[1]}"
        time.sleep(0.01)


def test_ctrl_c_says_where_it_stopped_and_how_to_resume(tmp_path: Path) -> None:
    argv, env, started, _ = _stalling(tmp_path)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(started, proc)  # the clean cell is recorded and the first attack cell has started
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    results = tmp_path / "out" / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stochdef evaluate: interrupted after ") and "run the same command again to resume" in last
    assert f"1 cells are recorded in {results}" in last
    assert [r["kind"] for r in records] == ["clean"]  # stopped in the first attack cell of 1 clean + 6


def test_two_runs_into_one_folder_lose_no_cell(tmp_path: Path) -> None:
    """The issue's case: two runs with different seeds into one --out. The second is refused before computing
    while the first runs; the first keeps every cell."""
    argv, env, started, release = _stalling(tmp_path)
    first = subprocess.Popen(
        [*argv, "--seed", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(started, first)  # the first run holds the folder, stalled in its first attack cell
        second = subprocess.run([*argv, "--seed", "1"], env=env, capture_output=True, text=True, timeout=300)
        release.touch()
        _, first_err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and "is in use by another process" in second.stderr.strip().splitlines()[-1]
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 7 and all('"seed":0' in r["key"] for r in records)  # 1 clean + 6 attack cells, run A's
