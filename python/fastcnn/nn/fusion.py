"""Inference-time folding of BatchNorm2d into the Conv2d before it, as PyTorch's
`torch.ao.quantization.fuse_modules` / `torch.nn.utils.fusion.fuse_conv_bn_eval` do.

In eval mode a batch norm is a per-channel affine map, y = (z - mean) * gamma / sqrt(var + eps) +
beta, so it folds into the convolution z = w * x + b that feeds it:
    scale = gamma / sqrt(var + eps),  w' = w * scale (per output channel),
    b' = (b - mean) * scale + beta
and the pair costs one convolution. The folded model is a snapshot: see `fuse_conv_bn`.
"""

from __future__ import annotations

import copy

import numpy as np

from fastcnn.nn.containers import Sequential
from fastcnn.nn.layers import BatchNorm2d, Conv2d, Identity
from fastcnn.nn.module import Module
from fastcnn.parameter import Parameter

__all__ = ["fold_conv_bn", "fuse_conv_bn"]


def fold_conv_bn(conv: Conv2d, bn: BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """The (weight, bias) of one convolution equal to `bn(conv(x))` with bn in eval mode.

    Computed in float64 and rounded once to float32. Raises ValueError when bn has no running
    statistics (track_running_stats=False normalizes with batch statistics even in eval mode) or
    its channel count is not conv's out_channels.
    """
    if not isinstance(conv, Conv2d) or not isinstance(bn, BatchNorm2d):
        raise TypeError(
            f"conv, bn: expected a Conv2d and a BatchNorm2d, got {type(conv).__name__} and "
            f"{type(bn).__name__}"
        )
    mean, var = bn._buffers.get("running_mean"), bn._buffers.get("running_var")
    if mean is None or var is None:
        raise ValueError("bn: has no running statistics (track_running_stats=False); cannot fold")
    weight = conv._parameters["weight"].data
    k = weight.shape[0]
    if np.shape(mean) != (k,) or np.shape(var) != (k,):
        raise ValueError(
            f"bn: expected running statistics of shape ({k},) (conv's out_channels), got "
            f"{np.shape(mean)} and {np.shape(var)}"
        )
    gamma, beta = bn._parameters.get("weight"), bn._parameters.get("bias")
    gamma = np.ones(k) if gamma is None else gamma.data.astype(np.float64)
    beta = np.zeros(k) if beta is None else beta.data.astype(np.float64)
    bias = conv._parameters.get("bias")
    bias = np.zeros(k) if bias is None else bias.data.astype(np.float64)
    scale = gamma / np.sqrt(np.asarray(var, np.float64) + bn.eps)
    w = weight.astype(np.float64) * scale.reshape(k, 1, 1, 1)
    b = (bias - np.asarray(mean, np.float64)) * scale + beta
    return w.astype(np.float32), b.astype(np.float32)


def _foldable(bn: Module) -> bool:
    return (
        isinstance(bn, BatchNorm2d)
        and bn.track_running_stats
        and bn._buffers.get("running_mean") is not None
        and bn._buffers.get("running_var") is not None
    )


def _fuse_children(module: Module) -> int:
    """Folds every Conv2d -> BatchNorm2d pair among module's descendants in place; returns how many.

    Only children that run one after the other are paired: consecutive entries of a Sequential.
    The batch norm's slot gets an Identity, so indices (and the conv's state_dict keys) stay.
    """
    folded = 0
    if isinstance(module, Sequential):
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if type(conv) is Conv2d and _foldable(bn):
                w, b = fold_conv_bn(conv, bn)
                # a frozen convolution stays frozen, as with torch's fuse_conv_bn_eval
                trains = conv.weight.requires_grad
                bias_trains = trains if conv.bias is None else conv.bias.requires_grad
                conv.weight = Parameter(w, requires_grad=trains)
                conv.bias = Parameter(b, requires_grad=bias_trains)
                module._modules[second] = Identity()
                folded += 1
        if folded:
            module._steps = None  # the order its last forward ran in names the old children
    for child in module._modules.values():
        folded += _fuse_children(child)
    return folded


def fuse_conv_bn(model: Module) -> Module:
    """A copy of `model` in eval mode with each BatchNorm2d that directly follows a Conv2d in a
    Sequential folded into that convolution (the batch norm's place holds an Identity).

    The result computes what `model.eval()` computes (up to float32 rounding) with one kernel per
    pair instead of two. It is a snapshot, as in PyTorch: it copies the weights and running
    statistics when called, so training `model` further, `model.load_state_dict(...)` or editing
    its parameters does not reach the fused copy; call `fuse_conv_bn` again afterwards. `model`
    itself is not changed. The copy is an ordinary module tree (Conv2d, Identity, ...): it can be
    saved with `fastcnn.save`, and training it trains a network without those batch norms.
    Batch norms with track_running_stats=False (batch statistics in eval mode too) stay as they are.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a fastcnn.nn.Module, got {type(model).__name__}")
    fused = copy.deepcopy(model)
    fused.eval()
    _fuse_children(fused)
    return fused
