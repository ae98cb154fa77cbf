"""NumPy in, NumPy out: one thin function per op, named and called like torch.nn.functional.

Each `op` has `op_backward(dy, <op's inputs>, <op's arguments>)` returning the gradient of each array
input, in order. Arrays may be any real dtype and layout: they are converted once to C-contiguous
float32 (a float32 C-contiguous array is used as is). Caller arrays are never modified, except the
running statistics that `batch_norm` updates in place, as PyTorch does.
"""

from __future__ import annotations

import numpy as np

from fastcnn import _core
from fastcnn._args import as_float, as_int

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


# --- batchnorm -----------------------------------------------------------------------------------
# x is (N, C), (N, C, L) or (N, C, H, W) (any rank >= 2), normalized per channel (dim 1).
# running_mean / running_var are updated IN PLACE in training mode, as PyTorch does: they must be
# float32 C-contiguous writable (C,) arrays (a converted copy would silently drop the update).


def batch_norm(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
    """Batch normalization, as torch.nn.functional.batch_norm.

    Training: normalizes with the batch mean and biased variance and, when given, updates
    running_mean / running_var in place (`(1 - momentum) * running + momentum * batch`, unbiased
    variance). Raises ValueError when a channel has a single value. Eval: uses the running stats,
    which are then required. An empty batch gives an empty result and leaves the stats untouched.
    """
    if training:
        return batch_norm_train(x, running_mean, running_var, weight, bias, momentum, eps)[0]
    _require_running_stats(running_mean, running_var)
    return _core.batchnorm2d_forward_eval(
        x, weight, bias, running_mean, running_var, as_float(eps, "eps")
    )


def batch_norm_train(
    x: np.ndarray,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode batch_norm that also returns what backward needs: (y, save_mean, save_invstd).

    save_mean and save_invstd = 1 / sqrt(biased batch variance + eps) are (C,) float32 arrays; pass
    them to batch_norm_backward to skip recomputing the statistics (an empty batch gives zeros).
    """
    return _core.batchnorm2d_forward_train(
        x,
        weight,
        bias,
        running_mean,
        running_var,
        as_float(momentum, "momentum"),
        as_float(eps, "eps"),
    )


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray | None = None,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    training: bool = True,
    eps: float = 1e-5,
    save_mean: np.ndarray | None = None,
    save_invstd: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of batch_norm -> (dx, dweight, dbias); dweight is returned even when weight is None.

    Training: the batch statistics are recomputed from x unless save_mean and save_invstd (from
    batch_norm_train) are given; dx includes the paths through the batch mean and variance.
    Eval: the running stats are constants, dx = dy * weight / sqrt(running_var + eps).
    """
    eps = as_float(eps, "eps")
    if not training:
        _require_running_stats(running_mean, running_var)
        return _core.batchnorm2d_backward_eval(dy, x, weight, running_mean, running_var, eps)
    if (save_mean is None) != (save_invstd is None):
        raise ValueError("save_mean, save_invstd: give both (from batch_norm_train) or neither")
    if save_mean is None:
        _, save_mean, save_invstd = _core.batchnorm2d_forward_train(
            x, None, None, None, None, 0.0, eps
        )
    return _core.batchnorm2d_backward(dy, x, weight, save_mean, save_invstd, True)


def _require_running_stats(running_mean: object, running_var: object) -> None:
    if running_mean is None or running_var is None:
        raise ValueError(
            "running_mean, running_var: required when training=False, got "
            f"{type(running_mean).__name__} and {type(running_var).__name__}"
        )


# --- softmax_xent --------------------------------------------------------------------------------
# softmax / log_softmax reduce over `dim` of any rank (negative dims count from the end); `axis=`
# is the NumPy spelling of the same argument. dim defaults to 1, the class dim of (N, C, ...).


def _softmax_dim(dim: int | None, axis: int | None) -> int:
    if axis is not None:
        if dim is not None and as_int(dim, "dim") != as_int(axis, "axis"):
            raise TypeError(f"dim, axis: give one of them, got dim={dim!r} and axis={axis!r}")
        return as_int(axis, "axis")
    return 1 if dim is None else as_int(dim, "dim")


def softmax(x: np.ndarray, dim: int | None = None, *, axis: int | None = None) -> np.ndarray:
    """exp(x) / sum(exp(x)) along dim (default 1), computed stably (max subtracted first)."""
    return _core.softmax_forward(x, _softmax_dim(dim, axis))


def log_softmax(x: np.ndarray, dim: int | None = None, *, axis: int | None = None) -> np.ndarray:
    """x - log(sum(exp(x))) along dim (default 1), computed stably."""
    return _core.log_softmax_forward(x, _softmax_dim(dim, axis))


def softmax_backward(
    dy: np.ndarray,
    x: np.ndarray | None,
    dim: int | None = None,
    *,
    axis: int | None = None,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of softmax w.r.t. x: y * (dy - sum(dy * y)) along dim.

    y, softmax's output, may be passed for reuse; then x is not read (it may be None).
    """
    d = _softmax_dim(dim, axis)
    if y is None:
        y = _core.softmax_forward(x, d)
    return _core.softmax_backward(dy, y, d)


def log_softmax_backward(
    dy: np.ndarray,
    x: np.ndarray | None,
    dim: int | None = None,
    *,
    axis: int | None = None,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of log_softmax w.r.t. x: dy - exp(y) * sum(dy) along dim.

    y, log_softmax's output, may be passed for reuse; then x is not read (it may be None).
    """
    d = _softmax_dim(dim, axis)
    if y is None:
        y = _core.log_softmax_forward(x, d)
    return _core.log_softmax_backward(dy, y, d)


def cross_entropy(logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0) -> float:
    """Mean cross-entropy of softmax(logits) against integer class labels, as a Python float.

    logits (N, C) or (N, C, d1, ...); labels (N,) or (N, d1, ...) integer ids in [0, C). With
    label_smoothing e the target is (1 - e) * onehot + e / C (PyTorch's definition). The mean is over
    the N * d1 * ... positions, accumulated in double; with none (N == 0) it is NaN, like PyTorch.
    """
    return cross_entropy_with_probabilities(logits, labels, label_smoothing)[0]


def cross_entropy_with_probabilities(
    logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """cross_entropy plus softmax(logits) along dim 1, which cross_entropy_backward can reuse."""
    return _core.softmax_xent_forward(logits, labels, as_float(label_smoothing, "label_smoothing"))


def cross_entropy_backward(
    logits: np.ndarray | None,
    labels: np.ndarray,
    label_smoothing: float = 0.0,
    grad_output: float = 1.0,
    *,
    probabilities: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of cross_entropy w.r.t. logits: (softmax(logits) - target) * grad_output / positions.

    probabilities (from cross_entropy_with_probabilities) may be passed for reuse; then logits is
    not read (it may be None).
    """
    e = as_float(label_smoothing, "label_smoothing")
    if probabilities is None:
        _, probabilities = _core.softmax_xent_forward(logits, labels, e)
    return _core.softmax_xent_backward(
        probabilities, labels, e, as_float(grad_output, "grad_output")
    )


def _real_f32(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _mse_operands(input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _real_f32(input, "input"), _real_f32(target, "target")
    if a.shape != b.shape:
        raise ValueError(f"target: expected shape {a.shape} (the input's), got shape {b.shape}")
    return a, b


def mse_loss(input: np.ndarray, target: np.ndarray) -> float:
    """mean((input - target)**2) over all elements, accumulated in double; NaN when empty."""
    a, b = _mse_operands(input, target)
    if a.size == 0:
        return float("nan")
    d = a.astype(np.float64).ravel() - b.ravel()
    return float(np.dot(d, d) / d.size)


def mse_loss_backward(
    input: np.ndarray, target: np.ndarray, grad_output: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of mse_loss -> (dinput, dtarget) = (+-2 * (input - target) * grad_output / n)."""
    a, b = _mse_operands(input, target)
    scale = np.float32(2.0 * as_float(grad_output, "grad_output") / max(a.size, 1))
    da = (a - b) * scale
    return da, -da
