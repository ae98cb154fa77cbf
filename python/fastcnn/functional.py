"""NumPy in, NumPy out: one thin function per op, named and called like torch.nn.functional.

Each `op` has `op_backward(dy, <op's inputs>, <op's arguments>)` returning the gradient of each array
input, in order. Arrays may be any real dtype and layout: they are converted once to C-contiguous
float32 (a float32 C-contiguous array is used as is). Caller arrays are never modified, except the
running statistics that `batch_norm` updates in place, as PyTorch does.
"""

from __future__ import annotations

import numpy as np

from fastcnn import _core
from fastcnn._args import as_float

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
