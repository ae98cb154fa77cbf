"""Plain NumPy float32 versions of the fastcnn ops: the baseline `fastcnn bench` times them against.

Written the way a NumPy user would write them (vectorized: im2col + matmul, reshapes, broadcasting),
not tuned. Layout key: x is (N, C, H, W), w is (K, C/groups, R, S), y and dy are (N, K, P, Q).
Every function takes and returns float32 arrays and never modifies its inputs, except batch_norm's
running statistics, which it updates in place as torch and fastcnn.functional do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

IntPair = Union[int, Sequence[int]]


def _pair(v: IntPair) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    h, w = v
    return int(h), int(w)


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


# --- convolution ----------------------------------------------------------------------------------
# Dense and grouped convolutions go through im2col + matmul; depthwise ones (one filter per channel)
# are a sum over the R*S filter taps of shifted inputs times a per-channel weight, which is what a
# NumPy user writes for them: their im2col would copy the input R*S times to feed a matmul of
# width 1.


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x


def _tap(r: int, s: int, st, dil, P: int, Q: int) -> tuple[slice, ...]:
    """The (N, C, P, Q) slice of the padded input that filter tap (r, s) reads."""
    h0, w0 = r * dil[0], s * dil[1]
    return (
        slice(None),
        slice(None),
        slice(h0, h0 + st[0] * (P - 1) + 1, st[0]),
        slice(w0, w0 + st[1] * (Q - 1) + 1, st[1]),
    )


def _im2col(x, R, S, stride, padding, dilation, groups) -> tuple[np.ndarray, int, int]:
    """Return (cols, P, Q) with cols of shape (G, N*P*Q, C/G*R*S): one row per output position."""
    N, C, _H, _W = x.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = _pad(x, *padding)
    win = sliding_window_view(xp, ((R - 1) * dh + 1, (S - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, P, Q, R, S), still a view of xp
    P, Q = win.shape[2], win.shape[3]
    G = groups
    win = win.reshape(N, G, C // G, P, Q, R, S).transpose(1, 0, 3, 4, 2, 5, 6)
    return win.reshape(G, N * P * Q, C // G * R * S), P, Q


def _is_depthwise(x: np.ndarray, w: np.ndarray, groups: int) -> bool:
    return groups > 1 and groups == x.shape[1] == w.shape[0]


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """y = b + cross-correlation of x with w: im2col, then one matmul per group. (N, K, P, Q)."""
    x, w = _f32(x), _f32(w)
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    G = groups
    st, pad, dil = _pair(stride), _pair(padding), _pair(dilation)
    if _is_depthwise(x, w, G):
        P = (H + 2 * pad[0] - dil[0] * (R - 1) - 1) // st[0] + 1
        Q = (W + 2 * pad[1] - dil[1] * (S - 1) - 1) // st[1] + 1
        xp = _pad(x, *pad)
        y = np.zeros((N, K, P, Q), np.float32)
        for r in range(R):
            for s in range(S):
                y += xp[_tap(r, s, st, dil, P, Q)] * w[:, 0, r, s].reshape(1, K, 1, 1)
    else:
        cols, P, Q = _im2col(x, R, S, st, pad, dil, G)
        y = cols @ w.reshape(G, K // G, -1).transpose(0, 2, 1)  # (G, N*P*Q, K/G)
        y = y.reshape(G, N, P, Q, K // G).transpose(1, 0, 4, 2, 3).reshape(N, K, P, Q)
    if b is not None:
        y = y + _f32(b).reshape(1, K, 1, 1)
    return np.ascontiguousarray(y)


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    output_mask: Sequence[bool] = (True, True, True),
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Return (dx, dw, db) of conv2d, None where output_mask is False.

    dw = dy^T @ im2col(x); dx = col2im(dy @ w), where col2im adds each filter tap's columns back
    onto the input positions it read; db = dy summed over (N, P, Q).
    """
    dy, x, w = _f32(dy), _f32(x), _f32(w)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    G = groups
    st, pad, dil = _pair(stride), _pair(padding), _pair(dilation)
    P, Q = dy.shape[2], dy.shape[3]
    depthwise = _is_depthwise(x, w, G)
    dx = dw = db = None
    if output_mask[0]:
        if not depthwise:
            dycols = dy.reshape(N, G, K // G, P, Q).transpose(1, 0, 3, 4, 2)
            cols = dycols.reshape(G, N * P * Q, K // G) @ w.reshape(G, K // G, Cg * R * S)
            cols = cols.reshape(G, N, P, Q, Cg, R, S).transpose(1, 0, 4, 2, 3, 5, 6)
            cols = cols.reshape(N, C, P, Q, R, S)
        dxp = np.zeros((N, C, H + 2 * pad[0], W + 2 * pad[1]), np.float32)
        for r in range(R):
            for s in range(S):
                # Within one tap the output positions read distinct inputs, so a sliced += is exact;
                # across taps they overlap, hence the accumulation.
                if depthwise:
                    dxp[_tap(r, s, st, dil, P, Q)] += dy * w[:, 0, r, s].reshape(1, C, 1, 1)
                else:
                    dxp[_tap(r, s, st, dil, P, Q)] += cols[..., r, s]
        dx = np.ascontiguousarray(dxp[:, :, pad[0] : pad[0] + H, pad[1] : pad[1] + W])
    if output_mask[1]:
        if depthwise:
            xp = _pad(x, *pad)
            dw = np.empty_like(w)
            for r in range(R):
                for s in range(S):
                    dw[:, 0, r, s] = np.einsum("ncpq,ncpq->c", dy, xp[_tap(r, s, st, dil, P, Q)])
        else:
            cols, _, _ = _im2col(x, R, S, st, pad, dil, G)
            dycols = dy.reshape(N, G, K // G, P, Q).transpose(1, 2, 0, 3, 4)
            dw = (dycols.reshape(G, K // G, N * P * Q) @ cols).reshape(K, Cg, R, S)
    if output_mask[2]:
        db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


# --- pooling (non-overlapping windows: kernel_size == stride, no padding) -------------------------


def _windows(x: np.ndarray, k: int) -> np.ndarray:
    """(N, C, P, Q, k*k) copy of the k x k windows of x; rows/columns past the last one dropped."""
    N, C, H, W = x.shape
    P, Q = H // k, W // k
    xr = x[:, :, : P * k, : Q * k].reshape(N, C, P, k, Q, k).transpose(0, 1, 2, 4, 3, 5)
    return xr.reshape(N, C, P, Q, k * k)


def _unwindow(dwin: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """Inverse of _windows: scatter (N, C, P, Q, k*k) back to a zero-filled array of `shape`."""
    N, C, P, Q, _ = dwin.shape
    dx = np.zeros(shape, np.float32)
    dx[:, :, : P * k, : Q * k] = (
        dwin.reshape(N, C, P, Q, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, P * k, Q * k)
    )
    return dx


def _check_pool(kernel_size: int, stride: int | None) -> int:
    if stride is not None and stride != kernel_size:
        raise ValueError(
            f"stride: the NumPy baseline pools non-overlapping windows only, expected "
            f"{kernel_size} (= kernel_size), got {stride}"
        )
    return kernel_size


def max_pool2d(
    x: np.ndarray, kernel_size: int, stride: int | None = None, return_indices: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Max over each k x k window: (N, C, H//k, W//k); indices are the argmax within each window."""
    k = _check_pool(kernel_size, stride)
    x = _f32(x)
    N, C, H, W = x.shape
    if not return_indices:
        P, Q = H // k, W // k
        return x[:, :, : P * k, : Q * k].reshape(N, C, P, k, Q, k).max(axis=(3, 5))
    win = _windows(x, k)
    idx = win.argmax(axis=-1)
    return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx


def max_pool2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel_size: int,
    stride: int | None = None,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """dx: each dy goes to its window's first maximum (torch's rule); indices from max_pool2d."""
    k = _check_pool(kernel_size, stride)
    x, dy = _f32(x), _f32(dy)
    if indices is None:
        indices = _windows(x, k).argmax(axis=-1)
    onehot = np.arange(k * k) == indices[..., None]
    return _unwindow(dy[..., None] * onehot, x.shape, k)


def avg_pool2d(x: np.ndarray, kernel_size: int, stride: int | None = None) -> np.ndarray:
    """Mean over each k x k window: (N, C, H//k, W//k)."""
    k = _check_pool(kernel_size, stride)
    x = _f32(x)
    N, C, H, W = x.shape
    P, Q = H // k, W // k
    return x[:, :, : P * k, : Q * k].reshape(N, C, P, k, Q, k).mean(axis=(3, 5))


def avg_pool2d_backward(
    dy: np.ndarray, x: np.ndarray, kernel_size: int, stride: int | None = None
) -> np.ndarray:
    """dx = dy / k^2 spread over each window; 0 for rows/columns no window covers."""
    k = _check_pool(kernel_size, stride)
    dy = _f32(dy)
    N, C, P, Q = dy.shape
    share = np.broadcast_to((dy / np.float32(k * k))[..., None], (N, C, P, Q, k * k))
    return _unwindow(share, np.shape(x), k)


# --- activations ----------------------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(_f32(x), np.float32(0))


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy where x > 0, else 0."""
    # Multiplying by the mask is the fast spelling: np.where with a scalar takes a slow path.
    return _f32(dy) * (_f32(x) > 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) (NumPy warns of, and survives, the overflow of exp for x < -88)."""
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-_f32(x)))


def sigmoid_backward(dy: np.ndarray, x: np.ndarray | None, *, y: np.ndarray | None = None):
    """dy * y * (1 - y), y = sigmoid(x) unless given."""
    y = sigmoid(x) if y is None else _f32(y)
    return _f32(dy) * y * (np.float32(1) - y)


def tanh(x: np.ndarray) -> np.ndarray:
    """np.tanh."""
    return np.tanh(_f32(x))


def tanh_backward(dy: np.ndarray, x: np.ndarray | None, *, y: np.ndarray | None = None):
    """dy * (1 - y**2), y = tanh(x) unless given."""
    y = tanh(x) if y is None else _f32(y)
    return _f32(dy) * (np.float32(1) - y * y)


# --- linear ---------------------------------------------------------------------------------------


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """y = x @ w^T + b for x (M, in), w (out, in): (M, out)."""
    y = _f32(x) @ _f32(w).T
    return y if b is None else y + _f32(b)


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    output_mask: Sequence[bool] = (True, True, True),
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Return (dx, dw, db) = (dy @ w, dy^T @ x, sum of dy over rows), None where masked out."""
    dy, x, w = _f32(dy), _f32(x), _f32(w)
    dx = dy @ w if output_mask[0] else None
    dw = dy.T @ x if output_mask[1] else None
    db = dy.sum(axis=0) if output_mask[2] else None
    return dx, dw, db


# --- batch normalization (over N, H, W per channel) -----------------------------------------------


def batch_norm(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel; (N, C, H, W).

    Training uses the batch mean and biased variance, and updates running_mean and running_var in
    place (with the unbiased variance); eval uses the running statistics.
    """
    x = _f32(x)
    C = x.shape[1]
    if training:
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
        n = x.size // C
        running_mean *= np.float32(1 - momentum)
        running_mean += np.float32(momentum) * mean
        running_var *= np.float32(1 - momentum)
        running_var += np.float32(momentum * n / (n - 1)) * var
    else:
        mean, var = _f32(running_mean), _f32(running_var)
    scale = _f32(weight) / np.sqrt(var + np.float32(eps))
    shift = _f32(bias) - mean * scale
    return x * scale.reshape(1, C, 1, 1) + shift.reshape(1, C, 1, 1)


def batch_norm_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) of training-mode batch_norm, batch statistics recomputed from x."""
    dy, x = _f32(dy), _f32(x)
    C = x.shape[1]
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + np.float32(eps))
    xhat = (x - mean) * invstd
    dbias = dy.sum(axis=axes)
    dweight = (dy * xhat).sum(axis=axes)
    # The two means are the gradient paths through the batch mean and the batch variance.
    n = np.float32(x.size // C)
    scale = _f32(weight).reshape(1, C, 1, 1) * invstd
    dx = scale * (dy - (dbias / n).reshape(1, C, 1, 1) - xhat * (dweight / n).reshape(1, C, 1, 1))
    return dx, dweight, dbias


# --- softmax cross-entropy (logits (N, classes), integer labels (N,)) ----------------------------


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the batch of -log softmax(logits)[label]."""
    z = _f32(logits)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(z)), labels].mean())


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dlogits = (softmax(logits) - onehot(labels)) / N."""
    z = _f32(logits)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(len(z)), labels] -= 1
    return p / np.float32(len(z))
