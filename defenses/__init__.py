"""stochdef.defenses: randomized defenses as ordinary PyTorch modules, one family per file.

Every defense stays random in ``eval()`` mode, draws independent randomness for each row of a batch
(vectorized), repeats exactly under ``torch.manual_seed``, and rejects bad configuration with a
``ValueError`` naming the argument (DESIGN.md contracts). Trained models come from :mod:`.zoo`.
"""

from __future__ import annotations

from .data import DATASETS, Dataset
from .data import load as load_dataset
from .models import SmallResNet, mlp, small_cnn
from .noise import NoiseInjection
from .training import accuracy, fit, pgd_adversary

__all__ = [
    "DATASETS",
    "Dataset",
    "NoiseInjection",
    "SmallResNet",
    "accuracy",
    "fit",
    "load_dataset",
    "mlp",
    "pgd_adversary",
    "small_cnn",
]
