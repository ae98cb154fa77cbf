"""Ready-made networks for 28x28 single-channel images (MNIST, Fashion-MNIST): the CLI's --model."""

from __future__ import annotations

from fastcnn import nn


def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """LeNet-5 (ReLU and max pooling): 6 and 16 5x5 filters, then 120-84-classes."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def fmnist_bn(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """Two 3x3 conv + batch norm + ReLU + 2x2 max-pool stages (32, 64 filters), then 128 hidden."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def _basic_block(channels: int, out_channels: int, stride: int) -> nn.Module:
    body = nn.Sequential(
        nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )
    shortcut = None
    if stride != 1 or channels != out_channels:
        shortcut = nn.Sequential(
            nn.Conv2d(channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return nn.Sequential(nn.Residual(body, shortcut), nn.ReLU())


def resnet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """A small ResNet: a 16-filter stem, basic blocks at 16, 32 (stride 2) and 64 (stride 2)
    filters, global average pooling and a linear classifier."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _basic_block(16, 16, 1),
        _basic_block(16, 32, 2),
        _basic_block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


MODELS = {"lenet5": lenet5, "fmnist-bn": fmnist_bn, "resnet-mini": resnet_mini}


def build(name: str, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """One of MODELS by name."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels)
