"""The plain architectures the defenses are built on or converted from.

Activations are modules (never ``F.relu`` inside a ``forward``) and every activation is its own
instance, so post-hoc transforms such as ``apply_sap`` (insert after every ReLU) and ``to_bayesian``
(swap Linear/Conv2d/BatchNorm2d) can find and replace them.

* :func:`mlp`: the SDR paper's 784-100-100-100-10 ReLU MLP (any sizes, any layer factory).
* :func:`small_cnn`: a 2-conv CNN for the Adv-BNN family (28x28 or 8x8 inputs).
* :class:`SmallResNet`: a ResNet-20-style CNN (3 stages of residual units) for SAP on Fashion-MNIST.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .validation import check_int

__all__ = ["ResidualUnit", "SmallResNet", "mlp", "small_cnn"]


LayerFactory = Callable[[int, int], nn.Module]
ActivationFactory = Callable[[], nn.Module]


def mlp(
    sizes: Sequence[int] = (784, 100, 100, 100, 10),
    *,
    layer: LayerFactory = nn.Linear,
    activation: ActivationFactory = nn.ReLU,
) -> nn.Sequential:
    """Flatten, then ``layer(sizes[i], sizes[i+1])`` with an ``activation()`` between (none after the last).

    Example:
        >>> net = mlp((64, 32, 10))
        >>> net(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)}")
    for i, s in enumerate(sizes):
        check_int(f"sizes[{i}]", s)
    modules: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        modules.append(layer(n_in, n_out))
        if i < len(sizes) - 2:
            modules.append(activation())
    return nn.Sequential(*modules)


def small_cnn(
    *,
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    width: int = 16,
    batch_norm: bool = True,
) -> nn.Sequential:
    """conv-(BN)-ReLU-pool x2, then a 128-unit hidden layer: a small VGG-style net.

    Example:
        >>> small_cnn(image_size=8)(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """
    check_int("width", width)
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4, got {image_size}")

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        return [*layers, nn.ReLU(), nn.MaxPool2d(2)]

    flat = 2 * width * (image_size // 4) ** 2
    return nn.Sequential(
        *block(in_channels, width),
        *block(width, 2 * width),
        nn.Flatten(),
        nn.Linear(flat, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class ResidualUnit(nn.Module):
    """ResNet basic unit: conv-BN-ReLU-conv-BN, plus the (projected) input, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-20-style network: a stem, three stages of ``units`` residual units, global pooling.

    ``units=3`` with widths (16, 32, 64) is ResNet-20's layout (Dhillon et al. used ResNet-20 on
    CIFAR-10); ``units=1`` is a fast stand-in for tests.

    Example:
        >>> SmallResNet(units=1, width=8)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, width: int = 16, units: int = 3) -> None:
        super().__init__()
        check_int("width", width)
        check_int("units", units)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for unit in range(units):
                stages.append(ResidualUnit(c_in, c_out, stride=2 if stage > 0 and unit == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
