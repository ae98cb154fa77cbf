"""NumPy in, NumPy out: one thin function per op, named and called like torch.nn.functional.

Each `op` has `op_backward(dy, <op's inputs>, <op's arguments>)` returning the gradient of each array
input, in order. Arrays may be any real dtype and layout: they are converted once to C-contiguous
float32 (a float32 C-contiguous array is used as is). Caller arrays are never modified, except the
running statistics that `batch_norm` updates in place, as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastcnn import _core
from fastcnn._args import IntPair, as_float, as_int, nonnegative_pair, positive_pair

# --- activations ---------------------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), elementwise; any shape."""
    return _core.relu_forward(x)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of relu w.r.t. x: dy where x > 0, else 0."""
    return _core.relu_backward(dy, x)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x where x > 0, else negative_slope * x; any shape."""
    return _core.leaky_relu_forward(x, as_float(negative_slope, "negative_slope"))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Gradient of leaky_relu w.r.t. x."""
    return _core.leaky_relu_backward(dy, x, as_float(negative_slope, "negative_slope"))


# --- conv2d --------------------------------------------------------------------------------------


def _conv2d_padding(
    padding: IntPair | str, weight: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) zero padding for conv2d's `padding` argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(
                f"padding: expected 'same', 'valid', an int or a pair, got {padding!r}"
            )
        if stride != (1, 1):
            raise ValueError(f"padding: 'same' needs stride 1, got stride={stride}")
        shape = np.shape(weight)
        if len(shape) != 4:
            return 0, 0, 0, 0  # _core reports the weight's rank
        # Like torch, the odd cell of an even dilated kernel goes on the bottom/right.
        th, tw = dilation[0] * (shape[2] - 1), dilation[1] * (shape[3] - 1)
        return th // 2, tw // 2, th - th // 2, tw - tw // 2
    ph, pw = nonnegative_pair(padding, "padding")
    return ph, pw, ph, pw


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """2-D convolution: x (N, C, H, W), weight (K, C/groups, R, S), bias (K,) -> (N, K, P, Q).

    padding is an int, a pair (ph, pw), "valid" (none) or "same" (output size = input size; stride 1).
    """
    st = positive_pair(stride, "stride")
    dil = positive_pair(dilation, "dilation")
    pad = _conv2d_padding(padding, weight, st, dil)
    return _core.conv2d_forward(x, weight, bias, st, pad, dil, as_int(groups, "groups"))


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    output_mask: Sequence[bool] = (True, True, True),
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients (dx, dw, db) of conv2d for the output gradient dy (N, K, P, Q).

    output_mask[i] False skips that gradient and returns None in its place.
    """
    if len(output_mask) != 3:
        raise ValueError(f"output_mask: expected 3 flags (dx, dw, db), got {output_mask!r}")
    want_dx, want_dw, want_db = (bool(m) for m in output_mask)
    st = positive_pair(stride, "stride")
    dil = positive_pair(dilation, "dilation")
    pad = _conv2d_padding(padding, weight, st, dil)
    g = as_int(groups, "groups")
    dx = dw = db = None
    if want_dx:
        dx = _core.conv2d_backward_input(dy, weight, np.shape(x), st, pad, dil, g)
    if want_dw or want_db:
        dw, db = _core.conv2d_backward_weight(
            dy, x, np.shape(weight), st, pad, dil, g, want_dw, want_db
        )
    return dx, dw, db


# --- linear --------------------------------------------------------------------------------------


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x @ weight.T + bias: x (..., in_features), weight (out_features, in_features) -> (..., out)."""
    return _core.linear_forward(x, weight, bias)


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    output_mask: Sequence[bool] = (True, True, True),
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients (dx, dw, db) of linear for the output gradient dy (..., out_features).

    output_mask[i] False skips that gradient and returns None in its place.
    """
    if len(output_mask) != 3:
        raise ValueError(f"output_mask: expected 3 flags (dx, dw, db), got {output_mask!r}")
    want_dx, want_dw, want_db = (bool(m) for m in output_mask)
    dx = dw = db = None
    if want_dx:
        dx = _core.linear_backward_input(dy, weight)
    if want_dw or want_db:
        dw, db = _core.linear_backward_weight(dy, x, want_dw, want_db)
    return dx, dw, db
