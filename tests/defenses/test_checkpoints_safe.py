"""Checkpoints hold tensors and plain data only: every shipped one loads with ``torch.load(weights_only=True)``,
nothing read from a checkpoint runs code, every error names the file, and a file made for another model is
refused (its recorded name, dataset or architecture differs)."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch.torch_version import TorchVersion

from stochdef.defenses import zoo
from stochdef.defenses.files import atomic_write_text, current_umask
from stochdef.defenses.zoo.checkpoint import (
    CheckpointError,
    convert_checkpoint,
    read_checkpoint,
    save_checkpoint,
    weights_digest,
)

SHIPPED = sorted(zoo.SHIPPED_DIR.glob("*.pt"))
PLAIN = (str, int, float, bool, type(None))


def _plain(value: object) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return type(value) in PLAIN


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STOCHDEF_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoints_load_with_weights_only(path: Path) -> None:
    blob = torch.load(path, map_location="cpu", weights_only=True)  # no allow-listed class at all
    assert set(blob) == {"format", "state_dict", "meta"}
    assert all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values())
    meta = blob["meta"]
    assert _plain(meta)
    assert meta["weights_sha256"] == weights_digest(blob["state_dict"])  # the hash it records is its weights'
    assert json.loads(path.with_suffix(".json").read_text()) == meta  # the sidecar repeats the metadata
    name, dataset = path.stem.split("--")
    assert (meta["name"], meta["dataset"]) == (name, dataset)


def test_zoo_load_checks_the_shipped_checkpoint_against_its_spec() -> None:
    model, meta = zoo.load("relu-256")
    assert meta["path"] == str(zoo.SHIPPED_DIR / "relu-256--mnist5k.pt")
    assert weights_digest(model.state_dict()) == meta["weights_sha256"]


def _legacy_file(path: Path, state: dict[str, torch.Tensor], meta: dict[str, object]) -> None:
    """A checkpoint as the zoo wrote them before: its metadata holds torch's ``TorchVersion`` object."""
    torch.save({"state_dict": state, "meta": {**meta, "torch": TorchVersion("2.14.1")}}, path)


def test_conversion_keeps_the_weights_bit_for_bit(tmp_path: Path) -> None:
    model = zoo.build("sdr-learnable", "digits")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "sdr-learnable--digits.pt"
    _legacy_file(path, state, {"name": "sdr-learnable", "dataset": "digits", "quick": False, "seed": 0})
    with pytest.raises(Exception, match="[Ww]eights only"):
        torch.load(path, weights_only=True)
    meta = zoo.convert(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["state_dict"].keys() == state.keys()
    for key, tensor in state.items():
        assert blob["state_dict"][key].dtype == tensor.dtype and torch.equal(blob["state_dict"][key], tensor)
    assert meta["torch"] == "2.14.1" and type(blob["meta"]["torch"]) is str
    assert meta["weights_sha256"] == weights_digest(state) and "architecture" in meta


def test_training_writes_the_safe_format(tmp_path: Path) -> None:
    settings = zoo.TrainSettings(quick=True, progress=False)
    model, meta = zoo.train("vanilla-mlp", dataset="digits", settings=settings, out_dir=tmp_path)
    path = tmp_path / zoo.checkpoint_name("vanilla-mlp", "digits", quick=True)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert _plain(blob["meta"]) and blob["meta"] == meta
    assert weights_digest(blob["state_dict"]) == weights_digest(model.state_dict()) == meta["weights_sha256"]


class _RunsCode:
    """A pickle whose loading would call ``os.system`` (what ``weights_only=False`` would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(cache: Path) -> None:
    marker = cache / "ran"
    path = cache / "vanilla-mlp--digits.pt"
    torch.save({"state_dict": {}, "meta": {"evil": _RunsCode(marker)}}, path)
    with pytest.raises(CheckpointError, match=str(path)):
        zoo.load("vanilla-mlp", dataset="digits", train_if_missing=False)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty", "plain pickle", "not a dict"])
def test_a_damaged_checkpoint_is_named(cache: Path, damage: str) -> None:
    good = (zoo.SHIPPED_DIR / "vanilla-mlp--mnist5k.pt").read_bytes()
    buffer = io.BytesIO()
    torch.save([1, 2, 3], buffer)
    data = {
        "truncated": good[: len(good) // 2],
        "random bytes": bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).tolist()),
        "empty": b"",
        "plain pickle": pickle.dumps({"state_dict": {}}, protocol=2),
        "not a dict": buffer.getvalue(),
    }[damage]
    path = cache / "vanilla-mlp--digits.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        zoo.load("vanilla-mlp", dataset="digits", train_if_missing=False)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_checkpoint_of_another_model_is_refused(cache: Path) -> None:
    # relu-256 and sigmoid-256 have the same state-dict keys and shapes: only the recorded name tells them apart
    relu = zoo.build("relu-256", "digits")
    sigmoid = zoo.build("sigmoid-256", "digits")
    assert {k: v.shape for k, v in relu.state_dict().items()} == {k: v.shape for k, v in sigmoid.state_dict().items()}
    path = cache / "sigmoid-256--digits.pt"
    save_checkpoint(path, relu, {"name": "relu-256", "dataset": "digits", "quick": False})
    with pytest.raises(CheckpointError, match=rf"{path}.*name 'relu-256', not 'sigmoid-256'"):
        zoo.load("sigmoid-256", dataset="digits", train_if_missing=False)
    # the right name but the other network's layers: the architecture fingerprint differs
    save_checkpoint(path, relu, {"name": "sigmoid-256", "dataset": "digits", "quick": False})
    with pytest.raises(CheckpointError, match=rf"{path}.*architecture"):
        zoo.load("sigmoid-256", dataset="digits", train_if_missing=False)
    # another dataset's checkpoint under this dataset's name
    mnist = zoo.build("sigmoid-256", "mnist5k")
    save_checkpoint(path, mnist, {"name": "sigmoid-256", "dataset": "mnist5k", "quick": False})
    with pytest.raises(CheckpointError, match=rf"{path}.*dataset 'mnist5k', not 'digits'"):
        zoo.load("sigmoid-256", dataset="digits", train_if_missing=False)


def test_a_checkpoint_that_does_not_fit_names_the_file_and_the_tensors(cache: Path) -> None:
    path = cache / "vanilla-mlp--digits.pt"
    other = zoo.build("vanilla-cnn", "digits")
    torch.save({"state_dict": other.state_dict(), "meta": {}}, path)  # an old file: nothing recorded to compare
    with pytest.raises(CheckpointError, match=rf"{path} does not fit the model: missing .*unexpected"):
        zoo.load("vanilla-mlp", dataset="digits", train_if_missing=False)


def test_altered_weights_do_not_match_the_recorded_hash(tmp_path: Path) -> None:
    model = zoo.build("vanilla-mlp", "digits")
    path = tmp_path / "vanilla-mlp--digits.pt"
    meta = save_checkpoint(path, model, {"name": "vanilla-mlp", "dataset": "digits"})
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(iter(state))
    state[first].view(-1)[0] += 1.0
    torch.save({"format": 1, "state_dict": state, "meta": meta}, path)
    with pytest.raises(CheckpointError, match=rf"{path}: the weights do not match"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=rf"{path}: the weights do not match"):
        convert_checkpoint(path)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_are_written_with_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        path = tmp_path / "a.txt"
        atomic_write_text(path, "x")
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2), {"name": "m"})
    finally:
        os.umask(previous)
    for written in (path, tmp_path / "m.pt", tmp_path / "m.json"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask


def test_stochdef_train_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stochdef.evaluations import cli

    model = zoo.build("relu-256", "digits")
    path = tmp_path / "relu-256--digits.pt"
    _legacy_file(path, model.state_dict(), {"name": "relu-256", "dataset": "digits", "quick": False})
    assert cli.main(["train", "--convert", str(path)]) == 0
    assert "relu-256 on digits" in capsys.readouterr().out
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["meta"]["weights_sha256"] == weights_digest(model.state_dict())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert cli.main(["train", "--convert", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stochdef train: error: checkpoint ") and str(tmp_path / "bad.pt") in err
