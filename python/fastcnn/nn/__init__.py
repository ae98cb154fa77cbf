"""Layers, containers and losses with PyTorch's names; explicit forward and backward. Gradient
clipping is in fastcnn.nn.utils, as in torch.nn.utils."""

from fastcnn.nn import init, utils
from fastcnn.nn.containers import ModuleList, Residual, Sequential
from fastcnn.nn.fusion import fold_conv_bn, fuse_conv_bn
from fastcnn.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from fastcnn.nn.losses import CrossEntropyLoss, MSELoss, NLLLoss
from fastcnn.nn.module import Module
from fastcnn.parameter import Parameter

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "fold_conv_bn",
    "fuse_conv_bn",
    "init",
    "utils",
]
