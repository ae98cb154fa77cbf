"""Layers, containers and losses with PyTorch's names; explicit forward and backward."""

from fastcnn.nn.containers import Residual, Sequential
from fastcnn.nn.fusion import fold_conv_bn, fuse_conv_bn
from fastcnn.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
)
from fastcnn.nn.losses import CrossEntropyLoss, MSELoss
from fastcnn.nn.module import Module
from fastcnn.parameter import Parameter

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Softmax",
    "fold_conv_bn",
    "fuse_conv_bn",
]
