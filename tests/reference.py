"""Float64 NumPy oracle for every fastcnn forward and backward, written for clarity, not speed.

Layout key: x is (N, C, H, W), w is (K, C/groups, R, S), y and dy are (N, K, P, Q). Every function
computes in float64 and returns float64 arrays; inputs are never modified. Semantics follow PyTorch.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "adam_step",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "conv2d",
    "conv2d_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "dropout_apply",
    "dropout_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "mse_loss",
    "mse_loss_backward",
    "relu",
    "relu_backward",
    "nll_loss",
    "nll_loss_backward",
    "rmsprop_step",
    "sgd_step",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]


# ---------------------------------------------------------------------------------------------
# Argument helpers
# ---------------------------------------------------------------------------------------------


def _f64(a) -> np.ndarray:
    """Return a as a float64 array (a copy only when the dtype differs)."""
    return np.asarray(a, dtype=np.float64)


def _pair(v, name: str) -> tuple[int, int]:
    """Normalize an int or an (h, w) pair to a tuple of two ints."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return int(t[0]), int(t[1])


def _check_nchw(x: np.ndarray, name: str = "x") -> None:
    """Raise ValueError unless x has rank 4."""
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {x.shape}")


def _pool_out_size(size: int, k: int, pad: int, stride: int, dil: int, ceil_mode: bool) -> int:
    """Output length of one pooling axis, torch's rule (pooling_output_shape)."""
    span = size + 2 * pad - dil * (k - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        # The last window must start inside the input or the left padding, else it is dropped.
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Normalize pooling arguments, validate them like torch, and return them with (P, Q)."""
    _check_nchw(x)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError("kernel_size, stride and dilation must be >= 1 and padding >= 0")
    # torch compares against half the plain (not dilated) kernel, with integer division.
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding {(ph, pw)} must be at most half of kernel_size {(kh, kw)}")
    H, W = x.shape[2], x.shape[3]
    P = _pool_out_size(H, kh, ph, sh, dh, ceil_mode)
    Q = _pool_out_size(W, kw, pw, sw, dw, ceil_mode)
    if P < 1 or Q < 1:
        raise ValueError(f"output size {(P, Q)} is too small for input {x.shape}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (P, Q)


def _padded(x: np.ndarray, top: int, bottom: int, left: int, right: int, value: float):
    """Pad the two spatial axes of x with a constant."""
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------


def _conv_padding(padding, ksize, dilation, stride) -> tuple[int, int, int, int]:
    """Return (top, bottom, left, right) zero padding for conv2d's padding argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(f"padding must be 'same', 'valid', an int or a pair, got {padding!r}")
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        # torch puts the odd cell of an even effective kernel on the bottom/right.
        th, tw = dilation[0] * (ksize[0] - 1), dilation[1] * (ksize[1] - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got {(ph, pw)}")
    return ph, ph, pw, pw


def _conv_setup(x, w, stride, padding, dilation, groups):
    """Validate conv2d arguments; return padded x and the geometry."""
    _check_nchw(x)
    _check_nchw(w, "w")
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    if groups < 1 or C % groups or K % groups or Cg != C // groups:
        raise ValueError(f"x {x.shape} and w {w.shape} do not match groups={groups}")
    st = _pair(stride, "stride")
    dil = _pair(dilation, "dilation")
    top, bottom, left, right = _conv_padding(padding, (R, S), dil, st)
    xp = _padded(x, top, bottom, left, right, 0.0)
    eff_r, eff_s = dil[0] * (R - 1) + 1, dil[1] * (S - 1) + 1
    if xp.shape[2] < eff_r or xp.shape[3] < eff_s:
        raise ValueError(f"kernel {(eff_r, eff_s)} (dilated) is larger than padded input")
    P = (xp.shape[2] - eff_r) // st[0] + 1
    Q = (xp.shape[3] - eff_s) // st[1] + 1
    return xp, (top, left), st, dil, (P, Q)


def _window(r: int, s: int, st, dil, P: int, Q: int) -> tuple[slice, ...]:
    """Slice of padded a seen by filter tap (r, s) at every output position: (N, C, P, Q)."""
    h0, w0 = r * dil[0], s * dil[1]
    return (
        slice(None),
        slice(None),
        slice(h0, h0 + st[0] * (P - 1) + 1, st[0]),
        slice(w0, w0 + st[1] * (Q - 1) + 1, st[1]),
    )


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """y[n,k,p,q] = b[k] + sum_{c,r,s} x_pad[n, g*Cg+c, p*sh + r*dh, q*sw + s*dw] * w[k,c,r,s]."""
    x, w = _f64(x), _f64(w)
    xp, _, st, dil, (P, Q) = _conv_setup(x, w, stride, padding, dilation, groups)
    N, C = x.shape[:2]
    K, Cg, R, S = w.shape
    G = groups
    wg = w.reshape(G, K // G, Cg, R, S)
    y = np.zeros((N, G, K // G, P, Q))
    for r in range(R):
        for s in range(S):
            patch = xp[_window(r, s, st, dil, P, Q)].reshape(N, G, Cg, P, Q)
            y += np.einsum("ngcpq,gkc->ngkpq", patch, wg[:, :, :, r, s])
    y = y.reshape(N, K, P, Q)
    if b is not None:
        y += _f64(b).reshape(1, K, 1, 1)
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """Return (dx, dw, db) of conv2d; db = dy summed over (N, P, Q)."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    xp, (top, left), st, dil, (P, Q) = _conv_setup(x, w, stride, padding, dilation, groups)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    G = groups
    if dy.shape != (N, K, P, Q):
        raise ValueError(f"dy must have shape {(N, K, P, Q)}, got {dy.shape}")
    wg = w.reshape(G, K // G, Cg, R, S)
    dyg = dy.reshape(N, G, K // G, P, Q)
    dxp = np.zeros_like(xp)
    dwg = np.zeros_like(wg)
    for r in range(R):
        for s in range(S):
            win = _window(r, s, st, dil, P, Q)
            patch = xp[win].reshape(N, G, Cg, P, Q)
            dwg[:, :, :, r, s] = np.einsum("ngkpq,ngcpq->gkc", dyg, patch)
            # Windows of different taps overlap, so accumulate rather than assign.
            dxp[win] += np.einsum("ngkpq,gkc->ngcpq", dyg, wg[:, :, :, r, s]).reshape(N, C, P, Q)
    dx = dxp[:, :, top : top + H, left : left + W]
    return dx, dwg.reshape(K, Cg, R, S), dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------


def _max_pool_scan(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Return (y, flat indices) of max pooling with torch's CPU scan order and tie rules."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (P, Q) = _pool_params(
        x, kernel_size, stride, padding, dilation, ceil_mode
    )
    N, C, H, W = x.shape
    # ceil_mode windows may run past the bottom/right padding; -inf cells never win a comparison.
    need_h = (P - 1) * sh + dh * (kh - 1) + 1
    need_w = (Q - 1) * sw + dw * (kw - 1) + 1
    xp = _padded(x, ph, max(0, need_h - H - ph), pw, max(0, need_w - W - pw), -np.inf)
    h_start = np.arange(P) * sh - ph
    w_start = np.arange(Q) * sw - pw
    # torch starts each window at its first in-bounds tap, so an all -inf window reports that one.
    h_first = h_start + dh * np.maximum(0, -(h_start // dh))
    w_first = w_start + dw * np.maximum(0, -(w_start // dw))
    best = np.full((N, C, P, Q), -np.inf)
    index = np.broadcast_to((h_first[:, None] * W + w_first[None, :]), (N, C, P, Q)).copy()
    for i in range(kh):
        for j in range(kw):
            h = h_start + i * dh
            w = w_start + j * dw
            inside = ((h >= 0) & (h < H))[:, None] & ((w >= 0) & (w < W))[None, :]
            v = xp[:, :, h + ph][:, :, :, w + pw]
            # A NaN always takes over, even from an earlier NaN, as in torch's CPU kernel.
            take = ((v > best) | np.isnan(v)) & inside
            best = np.where(take, v, best)
            index = np.where(take, h[:, None] * W + w[None, :], index)
    return best, index


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Return (y, indices): window maxima and their flat h*W+w positions in each (n, c) plane."""
    return _max_pool_scan(_f64(x), kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Return dx: each dy added to the input position its window's max came from."""
    dy, x = _f64(dy), _f64(x)
    y, index = _max_pool_scan(x, kernel_size, stride, padding, dilation, ceil_mode)
    if dy.shape != y.shape:
        raise ValueError(f"dy must have shape {y.shape}, got {dy.shape}")
    N, C, H, W = x.shape
    dx = np.zeros((N * C, H * W))
    rows = np.arange(N * C)[:, None]
    # Overlapping windows can share an argmax, so scatter with add.
    np.add.at(dx, (rows, index.reshape(N * C, -1)), dy.reshape(N * C, -1))
    return dx.reshape(N, C, H, W)


def _avg_pool_geometry(
    x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    """Return the clipped window bounds per axis and the (P, Q) divisor grid, torch's rule."""
    k, st, pad, _, (P, Q) = _pool_params(x, kernel_size, stride, padding, 1, ceil_mode)
    H, W = x.shape[2], x.shape[3]
    axes = []
    for size, kk, ss, pp, out in ((H, k[0], st[0], pad[0], P), (W, k[1], st[1], pad[1], Q)):
        start = np.arange(out) * ss - pp
        # The window is first clipped to the padded border (counted cells), then to the input.
        end = np.minimum(start + kk, size + pp)
        padded_len = end - start
        start, end = np.maximum(start, 0), np.minimum(end, size)
        axes.append((start, end, padded_len))
    (h0, h1, hlen), (w0, w1, wlen) = axes
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must be nonzero")
        div = np.full((P, Q), float(divisor_override))
    elif count_include_pad:
        div = (hlen[:, None] * wlen[None, :]).astype(np.float64)
    else:
        div = ((h1 - h0)[:, None] * (w1 - w0)[None, :]).astype(np.float64)
    return (h0, h1), (w0, w1), div


def avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
) -> np.ndarray:
    """y[n,c,p,q] = sum of x over the window's cells inside the input / torch's divisor."""
    x = _f64(x)
    (h0, h1), (w0, w1), div = _avg_pool_geometry(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    N, C = x.shape[:2]
    y = np.zeros((N, C, len(h0), len(w0)))
    for p in range(len(h0)):
        for q in range(len(w0)):
            # An empty window (only padding) yields 0, as torch does.
            if h0[p] < h1[p] and w0[q] < w1[q]:
                y[:, :, p, q] = x[:, :, h0[p] : h1[p], w0[q] : w1[q]].sum(axis=(2, 3)) / div[p, q]
    return y


def avg_pool2d_backward(
    dy,
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
) -> np.ndarray:
    """Return dx: dy / divisor spread over each window's cells inside the input."""
    dy, x = _f64(dy), _f64(x)
    (h0, h1), (w0, w1), div = _avg_pool_geometry(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    if dy.shape != x.shape[:2] + div.shape:
        raise ValueError(f"dy must have shape {x.shape[:2] + div.shape}, got {dy.shape}")
    dx = np.zeros_like(x)
    for p in range(len(h0)):
        for q in range(len(w0)):
            share = (dy[:, :, p, q] / div[p, q])[:, :, None, None]
            dx[:, :, h0[p] : h1[p], w0[q] : w1[q]] += share
    return dx


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """Windows of adaptive pooling: start = floor(i*size/out), end = ceil((i+1)*size/out)."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _adaptive_out(x: np.ndarray, output_size) -> tuple[int, int]:
    """Normalize output_size (int, pair, None in a pair keeps that input size)."""
    _check_nchw(x)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        oh = ow = output_size
    else:
        oh, ow = tuple(output_size)
    oh = x.shape[2] if oh is None else int(oh)
    ow = x.shape[3] if ow is None else int(ow)
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be >= 1, got {(oh, ow)}")
    return oh, ow


def adaptive_avg_pool2d(x, output_size) -> np.ndarray:
    """Average x over torch's adaptive windows to reach output_size."""
    x = _f64(x)
    OH, OW = _adaptive_out(x, output_size)
    hb, wb = _adaptive_bounds(x.shape[2], OH), _adaptive_bounds(x.shape[3], OW)
    y = np.zeros(x.shape[:2] + (OH, OW))
    for i, (a, b) in enumerate(hb):
        for j, (c, d) in enumerate(wb):
            y[:, :, i, j] = x[:, :, a:b, c:d].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(dy, x, output_size) -> np.ndarray:
    """Return dx: dy / window area spread over each adaptive window."""
    dy, x = _f64(dy), _f64(x)
    OH, OW = _adaptive_out(x, output_size)
    if dy.shape != x.shape[:2] + (OH, OW):
        raise ValueError(f"dy must have shape {x.shape[:2] + (OH, OW)}, got {dy.shape}")
    hb, wb = _adaptive_bounds(x.shape[2], OH), _adaptive_bounds(x.shape[3], OW)
    dx = np.zeros_like(x)
    for i, (a, b) in enumerate(hb):
        for j, (c, d) in enumerate(wb):
            dx[:, :, a:b, c:d] += (dy[:, :, i, j] / ((b - a) * (d - c)))[:, :, None, None]
    return dx


# ---------------------------------------------------------------------------------------------
# Activations and linear
# ---------------------------------------------------------------------------------------------


def relu(x) -> np.ndarray:
    """y = max(x, 0); NaN stays NaN, as torch."""
    return np.maximum(_f64(x), 0.0)


def relu_backward(dy, x) -> np.ndarray:
    """dx = dy where x > 0, else 0 (the gradient at exactly 0 is 0; torch's x <= 0 test)."""
    dy, x = _f64(dy), _f64(x)
    return np.where(x <= 0, 0.0, dy)


def leaky_relu(x, negative_slope=0.01) -> np.ndarray:
    """y = x if x > 0 else x * negative_slope."""
    x = _f64(x)
    return np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(dy, x, negative_slope=0.01) -> np.ndarray:
    """dx = dy if x > 0 else dy * negative_slope."""
    dy, x = _f64(dy), _f64(x)
    return np.where(x > 0, dy, dy * negative_slope)


def sigmoid(x) -> np.ndarray:
    """y = 1 / (1 + exp(-x)), from exp(-|x|) so that nothing overflows."""
    x = _f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy, x) -> np.ndarray:
    """dx = dy * y * (1 - y)."""
    y = sigmoid(x)
    return _f64(dy) * y * (1.0 - y)


def tanh(x) -> np.ndarray:
    """y = tanh(x)."""
    return np.tanh(_f64(x))


def tanh_backward(dy, x) -> np.ndarray:
    """dx = dy * (1 - tanh(x)**2)."""
    return _f64(dy) * (1.0 - np.tanh(_f64(x)) ** 2)


def linear(x, w, b=None) -> np.ndarray:
    """y = x @ w.T + b for x of shape (..., in) and w of shape (out, in)."""
    x, w = _f64(x), _f64(w)
    y = x @ w.T
    return y if b is None else y + _f64(b)


def linear_backward(dy, x, w):
    """Return (dx, dw, db) of linear; leading dims of x are all batch dims."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    dy2 = dy.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, w.shape[1])
    return dy @ w, dy2.T @ x2, dy2.sum(axis=0)


# ---------------------------------------------------------------------------------------------
# Batch normalization (channel axis 1; x is (N, C), (N, C, L) or (N, C, H, W))
# ---------------------------------------------------------------------------------------------


def _bn_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return (reduction axes, broadcast shape of a per-channel vector) for x."""
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, ...), got {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    return axes, (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _bn_affine(weight, bias, C: int):
    """Return float64 weight and bias, defaulting to 1 and 0."""
    wt = np.ones(C) if weight is None else _f64(weight)
    bs = np.zeros(C) if bias is None else _f64(bias)
    return wt, bs


def batch_norm(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Return (y, new_running_mean, new_running_var, save_mean, save_invstd); inputs untouched.

    Training normalizes with the biased batch variance and updates the running variance with the
    unbiased one. Eval normalizes with the running stats, returns them unchanged (as copies) and
    None for save_mean/save_invstd. Missing running stats come back as None.
    """
    x = _f64(x)
    axes, vec = _bn_axes(x)
    C = x.shape[1]
    wt, bs = _bn_affine(weight, bias, C)
    rm = None if running_mean is None else _f64(running_mean).copy()
    rv = None if running_var is None else _f64(running_var).copy()
    if not training:
        if rm is None or rv is None:
            raise ValueError("running_mean and running_var are required when training=False")
        invstd = 1.0 / np.sqrt(rv + eps)
        y = (x - rm.reshape(vec)) * (invstd * wt).reshape(vec) + bs.reshape(vec)
        return y, rm, rv, None, None
    if momentum is None:
        raise NotImplementedError("momentum=None (cumulative moving average) is not supported")
    n = x.size // C
    if n <= 1:
        raise ValueError(f"expected more than 1 value per channel when training, got {x.shape}")
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(vec)) ** 2).mean(axis=axes)
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean.reshape(vec)) * (invstd * wt).reshape(vec) + bs.reshape(vec)
    if rm is not None:
        rm = (1.0 - momentum) * rm + momentum * mean
    if rv is not None:
        rv = (1.0 - momentum) * rv + momentum * var * (n / (n - 1))
    return y, rm, rv, mean, invstd


def batch_norm_backward(dy, x, weight=None, eps=1e-5):
    """Return (dx, dweight, dbias) of training-mode batch_norm (batch statistics)."""
    dy, x = _f64(dy), _f64(x)
    axes, vec = _bn_axes(x)
    wt, _ = _bn_affine(weight, None, x.shape[1])
    mean = x.mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = (x - mean) * invstd
    dbias = dy.sum(axis=axes)
    dweight = (dy * xhat).sum(axis=axes)
    # dx = w*invstd * (dy - mean(dy) - xhat*mean(dy*xhat)): the two means are the gradient paths
    # through the batch mean and the batch variance.
    dx = (wt.reshape(vec) * invstd) * (
        dy - dy.mean(axis=axes, keepdims=True) - xhat * (dy * xhat).mean(axis=axes, keepdims=True)
    )
    return dx, dweight, dbias


def batch_norm_eval_backward(dy, x, running_mean, running_var, weight=None, eps=1e-5):
    """Return (dx, dweight, dbias) of eval-mode batch_norm (fixed running statistics)."""
    dy, x = _f64(dy), _f64(x)
    axes, vec = _bn_axes(x)
    wt, _ = _bn_affine(weight, None, x.shape[1])
    invstd = (1.0 / np.sqrt(_f64(running_var) + eps)).reshape(vec)
    xhat = (x - _f64(running_mean).reshape(vec)) * invstd
    return dy * wt.reshape(vec) * invstd, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


# ---------------------------------------------------------------------------------------------
# Softmax and losses
# ---------------------------------------------------------------------------------------------


def log_softmax(x, dim=1) -> np.ndarray:
    """log(exp(x) / sum exp(x)) along dim, computed after subtracting the max for stability."""
    x = _f64(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def softmax(x, dim=1) -> np.ndarray:
    """exp(x) / sum exp(x) along dim."""
    return np.exp(log_softmax(x, dim))


def softmax_backward(dy, x, dim=1) -> np.ndarray:
    """dx = y * (dy - sum(dy * y)) along dim."""
    dy = _f64(dy)
    y = softmax(x, dim)
    return y * (dy - (dy * y).sum(axis=dim, keepdims=True))


def log_softmax_backward(dy, x, dim=1) -> np.ndarray:
    """dx = dy - softmax(x) * sum(dy) along dim."""
    dy = _f64(dy)
    return dy - softmax(x, dim) * dy.sum(axis=dim, keepdims=True)


def _xent_flat(logits, labels):
    """Return logits as (M, C) float64 and labels as (M,) ints, class axis 1 moved last."""
    logits = _f64(logits)
    labels = np.asarray(labels)
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (N, C, ...), got {logits.shape}")
    if labels.shape != logits.shape[:1] + logits.shape[2:]:
        want = logits.shape[:1] + logits.shape[2:]
        raise ValueError(f"labels must have shape {want}, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    C = logits.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must lie in [0, {C})")
    return np.moveaxis(logits, 1, -1).reshape(-1, C), labels.reshape(-1).astype(np.int64)


def cross_entropy(logits, labels, label_smoothing=0.0) -> float:
    """Mean over label positions of (1-e)*nll + e*mean_c(-log p_c), torch's label smoothing."""
    z, t = _xent_flat(logits, labels)
    logp = log_softmax(z, dim=1)
    nll = -logp[np.arange(len(t)), t]
    smooth = -logp.mean(axis=1)
    return float(((1.0 - label_smoothing) * nll + label_smoothing * smooth).mean())


def cross_entropy_backward(logits, labels, label_smoothing=0.0, grad_output=1.0) -> np.ndarray:
    """dlogits = (softmax - target) / M * grad_output, target = (1-e)*onehot + e/C."""
    logits = _f64(logits)
    z, t = _xent_flat(logits, labels)
    M, C = z.shape
    target = np.full((M, C), label_smoothing / C)
    target[np.arange(M), t] += 1.0 - label_smoothing
    dz = (softmax(z, dim=1) - target) * (grad_output / M)
    moved = np.moveaxis(logits, 1, -1).shape
    return np.moveaxis(dz.reshape(moved), -1, 1)


def nll_loss(logp, labels, weight=None, ignore_index=-100, reduction="mean"):
    """Per position -weight[t] * logp[n, t, ...] for class ids t (0 where t == ignore_index);
    "mean" divides the sum by the summed weight[t] of the positions not ignored, "sum" sums,
    "none" returns the (N, d...) array."""
    z, t = _f64(logp), np.asarray(labels)
    if z.ndim < 2 or t.shape != z.shape[:1] + z.shape[2:]:
        raise ValueError(f"expected logp (N, C, ...) and labels (N, ...), got {z.shape}, {t.shape}")
    w = np.ones(z.shape[1]) if weight is None else _f64(weight)
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    picked = np.take_along_axis(z, np.expand_dims(safe, 1), axis=1)[:, 0]
    losses = np.where(kept, -w[safe] * picked, 0.0)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return float(losses.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(losses.sum() / np.where(kept, w[safe], 0.0).sum())


def nll_loss_backward(logp, labels, weight=None, ignore_index=-100, reduction="mean", grad=1.0):
    """dlogp: -weight[t] * g at each position's class t, 0 elsewhere; g is grad (a float, or an
    (N, d...) array for "none"), divided by the summed weights for "mean"."""
    z, t = _f64(logp), np.asarray(labels)
    w = np.ones(z.shape[1]) if weight is None else _f64(weight)
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    g = np.broadcast_to(_f64(grad), t.shape)
    if reduction == "mean":
        g = g / np.where(kept, w[safe], 0.0).sum()
    dz = np.zeros_like(z)
    np.put_along_axis(dz, np.expand_dims(safe, 1), np.expand_dims(-w[safe] * g * kept, 1), axis=1)
    return dz


def mse_loss(a, b) -> float:
    """mean((a - b)**2) over all elements of the broadcast shape (torch broadcasts and warns)."""
    a, b = _f64(a), _f64(b)
    return float(((a - b) ** 2).mean())


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g summed down to `shape` (undoing broadcasting)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for k, n in enumerate(shape):
        if n == 1 and g.shape[k] != 1:
            g = g.sum(axis=k, keepdims=True)
    return g


def mse_loss_backward(a, b, grad_output=1.0):
    """Return (da, db) = (+-2*(a - b)/n * grad_output), n the broadcast element count, each summed
    back to its operand's shape."""
    a, b = _f64(a), _f64(b)
    d = 2.0 * (a - b) * (grad_output / (a - b).size)
    return _sum_to(d, a.shape), -_sum_to(d, b.shape)


def dropout_apply(x, mask, p) -> np.ndarray:
    """y = x * mask / (1 - p); p == 1 drops everything (zeros, no division by zero)."""
    x, mask = _f64(x), _f64(mask)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    if p == 1.0:
        return np.zeros_like(x)
    return x * mask / (1.0 - p)


def dropout_backward(dy, mask, p) -> np.ndarray:
    """dx = dy * mask / (1 - p), the same scaling as forward."""
    return dropout_apply(dy, mask, p)


# --- optimizer updates ----------------------------------------------------------------------------


def sgd_step(
    param,
    grad,
    momentum_buffer,
    lr,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    first_step=False,
):
    """One torch.optim.SGD step: (param, momentum_buffer) after it; the buffer is None without
    momentum, and on the first step it starts as the decayed gradient."""
    p, g = _f64(param), _f64(grad)
    d = g + weight_decay * p
    buf = None
    if momentum != 0:
        buf = d.copy() if first_step else momentum * _f64(momentum_buffer) + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    step,
    lr,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    decoupled=False,
):
    """One torch.optim.Adam (or, decoupled, AdamW) step number `step` (1 for the first): (param,
    exp_avg, exp_avg_sq, max_exp_avg_sq) after it; max_exp_avg_sq is None without amsgrad."""
    p, g = _f64(param), _f64(grad)
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = beta1 * _f64(exp_avg) + (1 - beta1) * g
    v = beta2 * _f64(exp_avg_sq) + (1 - beta2) * g * g
    v_max = None if max_exp_avg_sq is None else np.maximum(_f64(max_exp_avg_sq), v)
    v_used = v if v_max is None else v_max
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    p = p - lr / bias_correction1 * m / (np.sqrt(v_used) / np.sqrt(bias_correction2) + eps)
    return p, m, v, v_max


def rmsprop_step(
    param,
    grad,
    square_avg,
    grad_avg,
    momentum_buffer,
    lr,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
):
    """One torch.optim.RMSprop step: (param, square_avg, grad_avg, momentum_buffer) after it;
    grad_avg is None unless centered (given), momentum_buffer None without momentum."""
    p, g = _f64(param), _f64(grad)
    g = g + weight_decay * p
    v = alpha * _f64(square_avg) + (1 - alpha) * g * g
    m = None
    if grad_avg is None:
        denom = np.sqrt(v) + eps
    else:
        m = alpha * _f64(grad_avg) + (1 - alpha) * g
        denom = np.sqrt(v - m * m) + eps
    buf = None
    if momentum > 0:
        buf = momentum * _f64(momentum_buffer) + g / denom
        p = p - lr * buf
    else:
        p = p - lr * g / denom
    return p, v, m, buf
