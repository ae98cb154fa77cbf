"""NumPy in, NumPy out: one thin function per op, named and called like torch.nn.functional.

Each `op` has `op_backward(dy, <op's inputs>, <op's arguments>)` returning the gradient of each
array input, in order. Arrays may be any real dtype and layout: they are converted once to
C-contiguous float32 (a float32 C-contiguous array is used as is). Caller arrays are never modified,
except the running statistics that `batch_norm` updates in place, as PyTorch does.

NaN and Inf are data, never errors: a NaN reaches exactly the outputs and gradients it reaches in
PyTorch (a NaN in a max-pooling window wins it; relu(NaN) is NaN; a NaN logit makes its row's
softmax, loss and gradient NaN), and softmax, log_softmax and cross_entropy subtract the row
maximum, so logits of magnitude 1e4 give finite results.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from fastcnn import _core, _xent_options
from fastcnn._args import (
    IntPair,
    as_float,
    as_int,
    named_as_called,
    nonnegative_pair,
    positive_pair,
)

# The forward kernels name their array torch's `input`; a backward op running one on its own x
# names x in the kernel's messages.
_FORWARD_AS_X = {"input": "x"}
# The cross-entropy kernels (and the NumPy path) name logits and labels, cross_entropy's
# arguments are torch's input and target.
XENT_AS_TORCH = {"logits": "input", "labels": "target"}

# --- activations ---------------------------------------------------------------------------------


def relu(input: np.ndarray) -> np.ndarray:
    """max(input, 0), elementwise; any shape."""
    return _core.relu_forward(input)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of relu w.r.t. x: dy where x > 0, else 0."""
    return _core.relu_backward(dy, x)


def leaky_relu(input: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """input where input > 0, else negative_slope * input; any shape."""
    return _core.leaky_relu_forward(input, as_float(negative_slope, "negative_slope"))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Gradient of leaky_relu w.r.t. x."""
    return _core.leaky_relu_backward(dy, x, as_float(negative_slope, "negative_slope"))


def sigmoid(input: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-input)), elementwise; any shape. No exp overflows: sigmoid(-inf) = 0,
    sigmoid(inf) = 1."""
    return _core.sigmoid_forward(input)


def sigmoid_backward(
    dy: np.ndarray, x: np.ndarray | None, *, y: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of sigmoid w.r.t. x: dy * y * (1 - y).

    y, sigmoid's output, may be passed for reuse; then x is not read (it may be None).
    """
    if y is None:
        y = named_as_called(lambda: _core.sigmoid_forward(x), _FORWARD_AS_X)
    return _core.sigmoid_backward(dy, y)


def tanh(input: np.ndarray) -> np.ndarray:
    """tanh(input), elementwise; any shape."""
    return _core.tanh_forward(input)


def tanh_backward(
    dy: np.ndarray, x: np.ndarray | None, *, y: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of tanh w.r.t. x: dy * (1 - y**2).

    y, tanh's output, may be passed for reuse; then x is not read (it may be None).
    """
    if y is None:
        y = named_as_called(lambda: _core.tanh_forward(x), _FORWARD_AS_X)
    return _core.tanh_backward(dy, y)


# --- pooling -------------------------------------------------------------------------------------
# conv2d and the pooling ops take x (N, C, H, W) or, as in PyTorch, one unbatched image (C, H, W),
# which they treat as a batch of one and return without the batch dim.


def _as_batch(x: object) -> tuple[object, bool]:
    """(x[None], True) for one unbatched (C, H, W) image, else (x, False) unchanged."""
    if type(x) is np.ndarray and x.ndim == 4:  # the common case, first
        return x, False
    if np.ndim(x) == 3:
        return np.asarray(x)[None], True
    return x, False


def _with_batch(dy: object, x: object) -> tuple[object, object, bool]:
    """(dy, x, single) for a backward: both given the batch dim when x is unbatched."""
    x, single = _as_batch(x)
    return (np.asarray(dy)[None] if single else dy), x, single


def _window_args(kernel_size, stride, padding) -> tuple:
    kernel = positive_pair(kernel_size, "kernel_size")
    # An empty sequence is also the default, as in PyTorch (whose own default stride is []).
    default = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    strides = kernel if default else positive_pair(stride, "stride")
    return kernel, strides, nonnegative_pair(padding, "padding")


def max_pool2d(
    input: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Window maxima of input (N, C, H, W) -> y (N, C, P, Q); stride defaults to kernel_size.

    padding may be at most half the kernel (PyTorch's rule) and pads with -inf. Ties keep the first
    maximum in row-major window order; a NaN in a window wins. With return_indices, also returns
    the int64 argmax of each window as a flat h * W + w position in its (n, c) plane, the same as
    PyTorch; pass it to max_pool2d_backward to skip recomputing it.
    """
    kernel, strides, pad = _window_args(kernel_size, stride, padding)
    return_indices = bool(return_indices)
    input, single = _as_batch(input)
    y, indices = _core.max_pool2d_forward(
        input,
        kernel,
        strides,
        pad,
        positive_pair(dilation, "dilation"),
        bool(ceil_mode),
        return_indices,
    )
    if single:
        y, indices = y[0], None if indices is None else indices[0]
    return (y, indices) if return_indices else y


def max_pool2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of max_pool2d w.r.t. x: each dy added at its window's argmax (dx has x's shape).

    indices is what max_pool2d(..., return_indices=True) returned; None recomputes it from x.
    """
    kernel, strides, pad = _window_args(kernel_size, stride, padding)
    dy, x, single = _with_batch(dy, x)
    if single and indices is not None:
        indices = np.asarray(indices)[None]
    dx = _core.max_pool2d_backward(
        dy, x, kernel, strides, pad, positive_pair(dilation, "dilation"), bool(ceil_mode), indices
    )
    return dx[0] if single else dx


def avg_pool2d(
    input: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """Window averages of input (N, C, H, W) -> y (N, C, P, Q); stride defaults to kernel_size.

    The divisor is PyTorch's: divisor_override when given (nonzero), else the window's size clipped
    to the padded input (count_include_pad=True; the part of a ceil_mode window that hangs past
    the padding is not counted) or to the input (count_include_pad=False).
    """
    kernel, strides, pad = _window_args(kernel_size, stride, padding)
    input, single = _as_batch(input)
    y = _core.avg_pool2d_forward(
        input, kernel, strides, pad, bool(ceil_mode), bool(count_include_pad), divisor_override
    )
    return y[0] if single else y


def avg_pool2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """Gradient of avg_pool2d w.r.t. x: each dy / divisor spread over its window's input cells."""
    kernel, strides, pad = _window_args(kernel_size, stride, padding)
    dy, x, single = _with_batch(dy, x)
    dx = _core.avg_pool2d_backward(
        dy, x, kernel, strides, pad, bool(ceil_mode), bool(count_include_pad), divisor_override
    )
    return dx[0] if single else dx


def _adaptive_size(output_size) -> object:
    """An int, or a pair whose entries are ints or None (None keeps that input size)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size: expected an int or a pair (h, w), got {output_size!r}")
        return tuple(None if v is None else as_int(v, "output_size") for v in output_size)
    return as_int(output_size, "output_size")


def adaptive_avg_pool2d(
    input: np.ndarray, output_size: int | tuple[int | None, int | None]
) -> np.ndarray:
    """Averages of input (N, C, H, W) over PyTorch's adaptive windows -> (N, C, P, Q).

    Output cell i along an axis of input length L and output length P averages the inputs
    floor(i * L / P) .. ceil((i + 1) * L / P) - 1; output_size=1 is global average pooling, and P
    may exceed L (windows then repeat inputs).
    """
    input, single = _as_batch(input)
    y = _core.adaptive_avg_pool2d_forward(input, _adaptive_size(output_size))
    return y[0] if single else y


def adaptive_avg_pool2d_backward(
    dy: np.ndarray, x: np.ndarray, output_size: int | tuple[int | None, int | None]
) -> np.ndarray:
    """Gradient of adaptive_avg_pool2d w.r.t. x."""
    dy, x, single = _with_batch(dy, x)
    dx = _core.adaptive_avg_pool2d_backward(dy, x, _adaptive_size(output_size))
    return dx[0] if single else dx


# --- dropout -------------------------------------------------------------------------------------


def _dropout_p(p: float) -> float:
    p = as_float(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    return p


def _dropout_seed(seed: int | None) -> int:
    if seed is None:
        # OS entropy: random by default, untouched by np.random.seed, not shared with forked worker
        # processes, and ~1 us where a fresh np.random.default_rng() costs ~15 us per call.
        return int.from_bytes(os.urandom(8), "little")
    seed = as_int(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed}")
    return seed


def dropout(
    input: np.ndarray, p: float = 0.5, training: bool = True, seed: int | None = None
) -> np.ndarray:
    """Zero each element of input with probability p and scale the rest by 1 / (1 - p); any shape.

    Not training: a float32 copy of input. p == 1: input * 0 (zeros; NaN stays NaN, as in PyTorch).
    The mask is a pure function of (seed, element index): the same seed and shape give the same
    mask on any machine and thread count (it is not torch's random stream). seed=None draws a
    fresh seed, so calls differ.

    For backward, keep the seed rather than the mask: a module draws a seed per forward call,
        seed = int.from_bytes(os.urandom(8), "little")   # or any int in [0, 2**64)
        y = dropout(x, p, seed=seed)            # forward, training
        dx = dropout_backward(dy, seed, p)      # backward: the same mask, regenerated
    which costs 8 bytes instead of one byte per element; in eval mode dx is dy. The uint8 mask
    itself is available from `fastcnn._core.dropout_forward(x, p, seed) -> (y, mask)`, and
    dropout_backward accepts it as well.
    """
    p = _dropout_p(p)
    if not training:
        return _core.dropout_forward(input, 0.0, 0)[0]
    return _core.dropout_forward(input, p, _dropout_seed(seed))[0]


def dropout_backward(dy: np.ndarray, mask: np.ndarray | int, p: float = 0.5) -> np.ndarray:
    """Gradient of dropout w.r.t. x: dy * mask / (1 - p), with forward's mask.

    mask is either the int seed forward ran with (the mask is regenerated) or a uint8/bool array
    of dy's shape holding 1 where forward kept the element.
    """
    p = _dropout_p(p)
    if isinstance(mask, (int, np.integer)) and not isinstance(mask, (bool, np.bool_)):
        seed = _dropout_seed(mask)
        return named_as_called(lambda: _core.dropout_forward(dy, p, seed), {"input": "dy"})[0]
    return _core.dropout_backward(dy, mask, p)


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
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """2-D convolution: input (N, C, H, W), weight (K, C/groups, R, S), bias (K,) -> (N, K, P, Q).

    padding is an int, a pair (ph, pw), "valid" (none) or "same" (output size = input size, stride
    1).
    """
    st = positive_pair(stride, "stride")
    dil = positive_pair(dilation, "dilation")
    pad = _conv2d_padding(padding, weight, st, dil)
    input, single = _as_batch(input)
    y = _core.conv2d_forward(input, weight, bias, st, pad, dil, as_int(groups, "groups"))
    return y[0] if single else y


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
    dy, x, single = _with_batch(dy, x)
    dx = dw = db = None
    if want_dx:
        dx = _core.conv2d_backward_input(dy, weight, np.shape(x), st, pad, dil, g)
        dx = dx[0] if single else dx
    if want_dw or want_db:
        dw, db = _core.conv2d_backward_weight(
            dy, x, np.shape(weight), st, pad, dil, g, want_dw, want_db
        )
    return dx, dw, db


# --- linear --------------------------------------------------------------------------------------


def linear(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """input @ weight.T + bias: input (..., in_features), weight (out_features, in_features) ->
    (..., out_features)."""
    return _core.linear_forward(input, weight, bias)


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


# --- batchnorm -----------------------------------------------------------------------------------
# x is (N, C), (N, C, L) or (N, C, H, W) (any rank >= 2), normalized per channel (dim 1).
# running_mean / running_var are updated IN PLACE in training mode, as PyTorch does: they must be
# float32 C-contiguous writable (C,) arrays (a converted copy would silently drop the update).


def batch_norm(
    input: np.ndarray,
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
        return batch_norm_train(input, running_mean, running_var, weight, bias, momentum, eps)[0]
    _require_running_stats(running_mean, running_var)
    return _core.batchnorm2d_forward_eval(
        input, weight, bias, running_mean, running_var, as_float(eps, "eps")
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
    """Gradients of batch_norm -> (dx, dweight, dbias); dweight is returned even if weight is None.

    Training: the batch statistics are recomputed from x unless save_mean and save_invstd (from
    batch_norm_train) are given; dx includes the paths through the batch mean and variance.
    Eval: the running stats are constants, dx = dy * weight / sqrt(running_var + eps).
    """
    eps = as_float(eps, "eps")
    if not training:
        _require_running_stats(running_mean, running_var)
        return _core.batchnorm2d_backward_eval(dy, x, weight, running_mean, running_var, eps)
    save_mean, save_invstd = _batch_stats(x, eps, save_mean, save_invstd)
    return _core.batchnorm2d_backward(dy, x, weight, save_mean, save_invstd, True)


def batch_norm_max_pool2d(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    relu: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """max_pool2d(batch_norm(x), 2, return_indices=True), then relu when relu=True, in one pass
    that never stores the full-size normalized x -> (y, indices, save_mean, save_invstd).

    The arguments are batch_norm's; save_mean and save_invstd are batch_norm_train's (None in eval
    mode). Pooling windows are 2x2 with stride 2 (floor mode: an odd height or width leaves its
    last row or column out). The results equal the unfused calls bit for bit; the fused forward
    that nn.Sequential runs for BatchNorm2d -> MaxPool2d(2) (-> ReLU).
    """
    if not training:
        _require_running_stats(running_mean, running_var)
    return _core.batchnorm2d_max_pool2d_forward(
        x,
        weight,
        bias,
        running_mean,
        running_var,
        bool(training),
        bool(relu),
        as_float(momentum, "momentum"),
        as_float(eps, "eps"),
    )


def batch_norm_max_pool2d_backward(
    dy: np.ndarray,
    indices: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray | None = None,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    training: bool = True,
    eps: float = 1e-5,
    save_mean: np.ndarray | None = None,
    save_invstd: np.ndarray | None = None,
    relu_output: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of max_pool2d(batch_norm(x)) -> (dx, dweight, dbias), from the gradient dy of the
    pooling's output and the `indices` max_pool2d returned (return_indices=True).

    Equal to batch_norm_backward(max_pool2d_backward(dy, ..., indices=indices), x, ...) up to
    float rounding, without building the full-size gradient between the two: the fused backward
    that nn.Sequential runs for a BatchNorm2d followed by a MaxPool2d. The other arguments are
    batch_norm_backward's. With relu_output, the output of a ReLU applied after the pooling, dy is
    the ReLU's output gradient and goes through relu_backward first.
    """
    eps = as_float(eps, "eps")
    if not training:
        _require_running_stats(running_mean, running_var)
        return _core.batchnorm2d_backward_pooled_eval(
            dy, indices, x, weight, running_mean, running_var, eps, relu_output
        )
    save_mean, save_invstd = _batch_stats(x, eps, save_mean, save_invstd)
    return _core.batchnorm2d_backward_pooled(
        dy, indices, x, weight, save_mean, save_invstd, True, relu_output
    )


def _batch_stats(x, eps: float, save_mean, save_invstd) -> tuple:
    """(save_mean, save_invstd) as given, or recomputed from x when both are None."""
    if (save_mean is None) != (save_invstd is None):
        raise ValueError("save_mean, save_invstd: give both (from batch_norm_train) or neither")
    if save_mean is None:
        _, save_mean, save_invstd = named_as_called(
            lambda: _core.batchnorm2d_forward_train(x, None, None, None, None, 0.0, eps),
            _FORWARD_AS_X,
        )
    return save_mean, save_invstd


def _require_running_stats(running_mean: object, running_var: object) -> None:
    if running_mean is None or running_var is None:
        raise ValueError(
            "running_mean, running_var: required when training=False, got "
            f"{type(running_mean).__name__} and {type(running_var).__name__}"
        )


# --- softmax_xent --------------------------------------------------------------------------------
# softmax / log_softmax reduce over `dim` of any rank (negative dims count from the end); `axis=`
# is the NumPy spelling of the same argument. dim=None follows PyTorch's implicit rule: dim 0 for
# an input of rank 0, 1 or 3 (an unbatched (C, H, W) image), else dim 1 (the class dim).


def _softmax_dim(dim: int | None, axis: int | None, x: object) -> int:
    if axis is not None:
        if dim is not None and as_int(dim, "dim") != as_int(axis, "axis"):
            raise TypeError(f"dim, axis: give one of them, got dim={dim!r} and axis={axis!r}")
        return as_int(axis, "axis")
    if dim is None:
        return 0 if np.ndim(x) in (0, 1, 3) else 1
    return as_int(dim, "dim")


def softmax(input: np.ndarray, dim: int | None = None, *, axis: int | None = None) -> np.ndarray:
    """exp(input) / sum(exp(input)) along dim (default: see above), computed stably (max subtracted
    first)."""
    return _core.softmax_forward(input, _softmax_dim(dim, axis, input))


def log_softmax(
    input: np.ndarray, dim: int | None = None, *, axis: int | None = None
) -> np.ndarray:
    """input - log(sum(exp(input))) along dim (default: see above), computed stably."""
    return _core.log_softmax_forward(input, _softmax_dim(dim, axis, input))


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
    d = _softmax_dim(dim, axis, dy)
    if y is None:
        y = named_as_called(lambda: _core.softmax_forward(x, d), _FORWARD_AS_X)
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
    d = _softmax_dim(dim, axis, dy)
    if y is None:
        y = named_as_called(lambda: _core.log_softmax_forward(x, d), _FORWARD_AS_X)
    return _core.log_softmax_backward(dy, y, d)


def cross_entropy(
    input: np.ndarray,
    target: np.ndarray,
    label_smoothing: float = 0.0,
    *,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Cross-entropy of softmax(input) against the class labels in target, as PyTorch defines it
    (torch's argument names; the third positional argument is label_smoothing, not weight).

    input, the logits: (N, C) or (N, C, d1, ...), or one unbatched (C,) row with a 0-d label (or
    a (C,) probability row); target (N,) or (N, d1, ...) integer ids in [0, C) or
    ignore_index (those positions count for nothing), or floating class probabilities shaped like
    input. With label_smoothing e the target is (1 - e) * onehot + e / C (or (1 - e) *
    probabilities + e / C); weight (C,) scales each class's terms. reduction "mean" (the default:
    the mean over the positions, weighted for class ids, accumulated in double; NaN when there
    are none) and "sum" give a Python float, "none" a float32 array (N, d1, ...).
    """
    return named_as_called(
        lambda: _cross_entropy(input, target, label_smoothing, weight, ignore_index, reduction),
        XENT_AS_TORCH,
    )


def _cross_entropy(
    input: np.ndarray,
    target: np.ndarray,
    label_smoothing: float,
    weight: np.ndarray | None,
    ignore_index: int,
    reduction: str,
) -> float | np.ndarray:
    e = as_float(label_smoothing, "label_smoothing")
    ignore_index = as_int(ignore_index, "ignore_index")
    input, target, single = _xent_batch(input, target)
    if single and reduction == "none":  # torch gives a 0-d loss for the one row
        return _cross_entropy(input, target, e, weight, ignore_index, reduction).reshape(())
    if reduction == "mean" and _xent_options.fused_applies(weight, ignore_index, reduction):
        fused = _xent_options.fused_or_none(
            lambda: _core.softmax_xent_forward(input, target, e), target, ignore_index
        )
        if fused is not None:
            return _xent_options.float32_loss(fused[0])
    return _xent_options.forward(
        input, target, e, weight, ignore_index, _xent_options.check_reduction(reduction)
    )


def _xent_batch(logits: object, labels: object) -> tuple[object, object, bool]:
    """(logits[None], labels[None], True) for one unbatched (C,) row of logits, else the
    arguments unchanged and False."""
    if np.ndim(logits) == 1:
        return np.asarray(logits)[None], np.asarray(labels)[None], True
    return logits, labels, False


def cross_entropy_with_probabilities(
    logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """cross_entropy plus softmax(logits) along dim 1, which cross_entropy_backward can reuse."""
    return _core.softmax_xent_forward(logits, labels, as_float(label_smoothing, "label_smoothing"))


def cross_entropy_backward(
    logits: np.ndarray | None,
    labels: np.ndarray,
    label_smoothing: float = 0.0,
    grad_output: float | np.ndarray = 1.0,
    *,
    probabilities: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    """Gradient of cross_entropy w.r.t. logits: (softmax(logits) - target) * grad_output / positions
    with the default options. grad_output is a float, or for reduction "none" an array shaped
    like labels.

    probabilities (from cross_entropy_with_probabilities) may be passed for reuse with the
    default options; then logits is not read (it may be None).
    """
    e = as_float(label_smoothing, "label_smoothing")
    ignore_index = as_int(ignore_index, "ignore_index")
    if logits is not None and np.ndim(logits) == 1:  # one unbatched (C,) row
        logits, labels, _ = _xent_batch(logits, labels)
        if np.ndim(grad_output):
            grad_output = np.reshape(grad_output, (1,))
        return cross_entropy_backward(
            logits,
            labels,
            e,
            grad_output,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )[0]
    if reduction == "mean" and _xent_options.fused_applies(weight, ignore_index, reduction):

        def fused():
            p = probabilities
            if p is None:
                _, p = _core.softmax_xent_forward(logits, labels, e)
            return _core.softmax_xent_backward(p, labels, e, as_float(grad_output, "grad_output"))

        grad = _xent_options.fused_or_none(fused, labels, ignore_index, logits is not None)
        if grad is not None:
            return grad
    if logits is None:
        raise ValueError("logits: required with weight, ignore_index or reduction != 'mean'")
    return _xent_options.backward(
        logits,
        labels,
        e,
        weight,
        ignore_index,
        _xent_options.check_reduction(reduction),
        grad_output,
    )


def nll_loss(
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> float | np.ndarray:
    """Negative log-likelihood of log-probabilities (log_softmax's output), as PyTorch defines it.

    input (N, C) or (N, C, d1, ...), or one unbatched (C,) row with a 0-d target; target (N,) or
    (N, d1, ...) integer class ids in [0, C) or ignore_index (those positions count for nothing).
    Each position's loss is -weight[t] * input[n, t, ...] (weight (C,) defaults to ones).
    reduction "mean" (the default: the sum divided by the sum of weight[t] over the positions not
    ignored, accumulated in double; NaN when there are none) and "sum" give a Python float,
    "none" a float32 array shaped like target.
    """
    reduction = _xent_options.check_reduction(reduction)
    input, target, single = _xent_batch(input, target)
    forward = _core.nll_loss_forward(input, target, weight, as_int(ignore_index, "ignore_index"))
    return _nll_reduce(forward, reduction, single)


def _nll_reduce(forward: tuple, reduction: str, single: bool) -> float | np.ndarray:
    """nll_loss_forward's (losses, total, total_weight) reduced as `reduction` asks."""
    losses, total, total_weight = forward
    if reduction == "none":
        return losses.reshape(()) if single else losses
    if reduction == "sum":
        return _xent_options.float32_loss(total)
    with np.errstate(divide="ignore", invalid="ignore"):  # nothing counted: NaN, as in PyTorch
        return _xent_options.float32_loss(np.float64(total) / total_weight)


def nll_loss_backward(
    input: np.ndarray,
    target: np.ndarray,
    grad_output: float | np.ndarray = 1.0,
    weight: np.ndarray | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    """Gradient of nll_loss w.r.t. input: zeros except -weight[t] * grad_output (divided by the
    total weight for "mean") at each position's class t. grad_output is a float, or for reduction
    "none" an array shaped like target. Only input's shape is read."""
    reduction = _xent_options.check_reduction(reduction)
    ignore_index = as_int(ignore_index, "ignore_index")
    input, target, single = _xent_batch(input, target)
    return _nll_backward(input, target, weight, ignore_index, grad_output, reduction, single)


def _nll_backward(
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    grad_output: float | np.ndarray,
    reduction: str,
    single: bool,
    total_weight: float | None = None,
) -> np.ndarray:
    """nll_loss_backward on checked arguments (input and target as _xent_batch gives them);
    total_weight, the forward's, is recomputed for "mean" when not given."""
    grad, scale = None, 1.0
    if reduction == "none" and np.ndim(grad_output):
        grad = np.reshape(_real_f32(grad_output, "grad_output"), (1,)) if single else grad_output
    else:
        scale = as_float(grad_output, "grad_output")
        if reduction == "mean":
            if total_weight is None:
                total_weight = _core.nll_loss_forward(input, target, weight, ignore_index)[2]
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = float(np.float64(scale) / total_weight)
    dx = _core.nll_loss_backward(grad, input, target, weight, ignore_index, scale)
    return dx[0] if single else dx


def _real_f32(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _mse_operands(input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """input and target as float32 arrays; shapes that differ must broadcast, with PyTorch's
    warning (it is rarely what the caller meant)."""
    a, b = _real_f32(input, "input"), _real_f32(target, "target")
    if a.shape != b.shape:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"target: expected shape {a.shape} (the input's) or one that broadcasts with "
                f"it, got shape {b.shape}"
            ) from None
        warnings.warn(
            f"Using a target size ({b.shape}) that is different to the input size ({a.shape}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            UserWarning,
            stacklevel=3,
        )
    return a, b


def _sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g summed over the dims broadcasting added to an array of `shape` (the gradient of a
    broadcast operand)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + k for k, n in enumerate(shape) if n == 1 and g.shape[lead + k] != 1
    )
    return g.sum(axis=axes, dtype=np.float32).reshape(shape)


def mse_loss(
    input: np.ndarray,
    target: np.ndarray,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
) -> float | np.ndarray:
    """(input - target)**2 reduced as PyTorch does: "mean" (the default; NaN when empty) and "sum"
    accumulate in double and give a float, "none" gives the float32 array of squared errors.
    Shapes that differ broadcast against each other, with PyTorch's UserWarning. The arguments are
    torch's, in its order; size_average and reduce, deprecated there, must stay None."""
    _xent_options.refuse_legacy_reduction(size_average, reduce)
    a, b = _mse_operands(input, target)
    return _mse_loss(a, b, _xent_options.check_reduction(reduction))


def _mse_loss(a: np.ndarray, b: np.ndarray, reduction: str) -> float | np.ndarray:
    # The differences and their squares in float32, as PyTorch's: a square past float32's range
    # is inf there (and so is the loss), however small the mean would be in double.
    with np.errstate(over="ignore", invalid="ignore"):
        d = a - b
        squares = d * d
    if reduction == "none":
        return squares
    if squares.size == 0:
        return float("nan") if reduction == "mean" else 0.0
    total = float(np.sum(squares, dtype=np.float64))
    return _xent_options.float32_loss(total / squares.size if reduction == "mean" else total)


def mse_loss_backward(
    input: np.ndarray,
    target: np.ndarray,
    grad_output: float | np.ndarray = 1.0,
    reduction: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of mse_loss -> (dinput, dtarget) = (+-2 * (input - target) * grad_output / n),
    n the element count (after broadcasting) for "mean", else 1; for "none" grad_output may be an
    array of the broadcast shape. A broadcast operand's gradient is summed back to its own shape."""
    a, b = _mse_operands(input, target)
    return _mse_loss_backward(a, b, grad_output, _xent_options.check_reduction(reduction))


def _mse_loss_backward(
    a: np.ndarray, b: np.ndarray, grad_output: float | np.ndarray, reduction: str
) -> tuple[np.ndarray, np.ndarray]:
    if reduction == "none" and np.ndim(grad_output):
        g = _real_f32(grad_output, "grad_output")
        shape = np.broadcast_shapes(a.shape, b.shape)
        if g.shape != shape:
            raise ValueError(f"grad_output: expected shape {shape} (the loss's), got {g.shape}")
        da = (a - b) * (2 * g)
    else:
        scale = 2.0 * as_float(grad_output, "grad_output")
        if reduction == "mean":
            scale /= max(int(np.prod(np.broadcast_shapes(a.shape, b.shape))), 1)
        da = (a - b) * np.float32(scale)
    if a.shape == b.shape:
        return da, -da
    return _sum_to_shape(da, a.shape), -_sum_to_shape(da, b.shape)
