"""Zoo entries for MWD networks and their ReLU / sigmoid baselines (Agrawal, de Alfaro & Helmbold 2019).

The paper's setup (Sections 6-7 and the authors' code): permutation-invariant MNIST, 512-512-512-10 nets,
AdaDelta, minibatches of 100; MWD layers U, U^NEG, U, U^NEG with ``u`` in [0.01, 3] and ``w`` in [0, 1],
trained by pseudogradient on the square error to the one-hot target; ReLU nets with softmax +
cross-entropy; sigmoid nets (sigmoid outputs too) with the square error. AdaDelta's learning rate is the
authors' default (5 for MWD nets, 1 for linear ones) except for sigmoid nets: MNIST-5k gives 40 steps an
epoch where MNIST gave 600, and at 1 a square-error sigmoid net reached 69% after 60 epochs (93% at 5).

Names: ``mwd``, ``relu-512``, ``sigmoid-512`` have the paper's shape. A 512-wide MWD net holds ``u`` and
``w`` per input per unit, 1.86M floats (7.4 MB in float32, 3.7 MB even in float16), so the shipped
checkpoints are the 256-wide ``mwd-256``, ``relu-256``, ``sigmoid-256`` (2.7 / 1.3 / 1.3 MB); the
512-wide ones train on first use.

Example:
    >>> [spec.name for spec in SPECS][:3]
    ['mwd', 'relu-512', 'sigmoid-512']
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..data import Dataset
from ..models import mlp
from ..mwd import GradientMode, gradient_mode, mwd_net, parameter_clamp, square_error_loss
from ..training import History, LossFn, cross_entropy_loss
from .spec import Spec, Trainer, TrainSettings, fit_settings, flat

__all__ = ["EPOCHS", "LEARNING_RATES", "SPECS", "sigmoid_mlp", "train_mwd_family"]

PAPER = "Agrawal, de Alfaro & Helmbold 2019 (MWD networks)"
EPOCHS = {"mwd": 30, "relu": 30, "sigmoid": 100}
LEARNING_RATES = {"mwd": 5.0, "relu": 1.0, "sigmoid": 5.0}
QUICK_EPOCHS, QUICK_TRAIN = 2, 1000
BATCH_SIZE = 100


def sigmoid_mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """An MLP with sigmoid hidden units *and* sigmoid outputs (trained on the square error)."""
    return nn.Sequential(*mlp(sizes, activation=nn.Sigmoid).children(), nn.Sigmoid())


def train_mwd_family(
    kind: str, model: nn.Module, data: Dataset, s: TrainSettings, *, gradient: GradientMode = "pseudo"
) -> History:
    """Train a ``kind`` in {"mwd", "relu", "sigmoid"} net as the paper did (MWD: with ``gradient``)."""
    if s.quick:
        data = data.subset(train=QUICK_TRAIN)

    def run(loss: LossFn, after_step: Callable[[int], None] | None = None) -> History:
        return fit_settings(
            model,
            data,
            s,
            desc=kind,
            epochs=QUICK_EPOCHS if s.quick else EPOCHS[kind],
            batch_size=BATCH_SIZE,
            lr=LEARNING_RATES[kind],
            optimizer="adadelta",
            loss=loss,
            after_step=after_step,
        )

    if kind == "relu":
        return run(cross_entropy_loss)
    if kind == "sigmoid":
        return run(square_error_loss)
    with gradient_mode(model, gradient):
        return run(square_error_loss, after_step=parameter_clamp(model))


def _trainer(kind: str) -> Trainer:
    return lambda model, data, s: train_mwd_family(kind, model, data, s)


def _specs(width: int) -> list[Spec]:
    hidden = (width, width, width)
    return [
        Spec(
            name="mwd" if width == 512 else f"mwd-{width}",
            family="mwd",
            paper=PAPER,
            description=f"MWD net {width}-{width}-{width}-10, layers U, U^NEG, U, U^NEG, pseudogradient-trained",
            build=lambda shape, k: mwd_net((flat(shape), *hidden, k)),
            train=_trainer("mwd"),
        ),
        Spec(
            name=f"relu-{width}",
            family="mwd",
            paper=PAPER + ", ReLU baseline",
            description=f"ReLU MLP {width}-{width}-{width}-10, softmax + cross-entropy, AdaDelta",
            build=lambda shape, k: mlp((flat(shape), *hidden, k)),
            train=_trainer("relu"),
        ),
        Spec(
            name=f"sigmoid-{width}",
            family="mwd",
            paper=PAPER + ", sigmoid baseline",
            description=f"sigmoid MLP {width}-{width}-{width}-10 with sigmoid outputs, square error, AdaDelta",
            build=lambda shape, k: sigmoid_mlp((flat(shape), *hidden, k)),
            train=_trainer("sigmoid"),
        ),
    ]


SPECS: list[Spec] = [*_specs(512), *_specs(256)]
