"""Layers with PyTorch's names, constructor arguments, defaults and parameter shapes.

Shapes use N batch, C channels, H W height and width; every layer takes and returns float32 NumPy
arrays. Each `forward` keeps what its `backward` needs (until the next forward).
"""

from __future__ import annotations

import math

import numpy as np

from fastcnn import _core, _padding_modes
from fastcnn import functional as F
from fastcnn._args import as_int, check_device_dtype, nonnegative_pair, positive_pair
from fastcnn._random import default_generator
from fastcnn.nn.init import default_weight_and_bias
from fastcnn.nn.module import Module
from fastcnn.parameter import Parameter


def _trains(p: Parameter | None) -> bool:
    """Whether the layer has p and p gets a gradient (requires_grad)."""
    return p is not None and p.requires_grad


def _add_grads(weight: Parameter | None, dw, bias: Parameter | None, db) -> None:
    """Adds dw and db into the gradients of weight and bias where those train."""
    for p, g in ((weight, dw), (bias, db)):
        if _trains(p):
            p.grad += g


def _forgotten(layer: Module) -> RuntimeError:
    return RuntimeError(f"{type(layer).__name__}.backward called before forward")


class Conv2d(Module):
    """2-D convolution. Input (N, C_in, H, W) -> output (N, C_out, H_out, W_out); weight
    (C_out, C_in/groups, kH, kW), bias (C_out,). padding: int, pair, "same" or "valid";
    padding_mode: "zeros", "reflect", "replicate" or "circular", as in PyTorch."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        check_device_dtype(device, dtype)
        self.padding_mode = _padding_modes.check_mode(padding_mode)
        self.in_channels = as_int(in_channels, "in_channels")
        self.out_channels = as_int(out_channels, "out_channels")
        self.groups = as_int(groups, "groups")
        if self.in_channels < 1 or self.out_channels < 1 or self.groups < 1:
            raise ValueError(
                "in_channels, out_channels and groups must be >= 1, got "
                f"{in_channels}, {out_channels}, {groups}"
            )
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must be divisible by groups ({groups})"
            )
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = positive_pair(stride, "stride")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"padding: expected an int, a pair, 'same' or 'valid', got {padding!r}"
                )
            self.padding = padding
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"padding: 'same' needs stride 1, got stride={self.stride}")
        else:
            self.padding = nonnegative_pair(padding, "padding")
        self.dilation = positive_pair(dilation, "dilation")
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        w, b = default_weight_and_bias(
            (self.out_channels, self.in_channels // self.groups, kh, kw), fan_in, bias, rng
        )
        self.weight = Parameter(w)
        self.bias = Parameter(b) if b is not None else None
        self._x = None
        # The weight in the kernel's packed form, kept across eval-mode calls (at batch 1 packing
        # costs a fifth of a Winograd layer's call) and remade whenever the weight's values
        # change. Training skips it: every step changes the weight.
        self._weight_cache = _core.WeightCache()

    _call_arg_names = frozenset(("stride", "padding", "dilation", "groups"))

    def _make_call_args(self) -> tuple:
        """(stride, padding, dilation, groups) as _core takes them; padding None for "same"/"valid"
        (it depends on the weight's shape, worked out per call)."""
        stride = positive_pair(self.stride, "stride")
        dilation = positive_pair(self.dilation, "dilation")
        padding = None
        if not isinstance(self.padding, str):
            ph, pw = nonnegative_pair(self.padding, "padding")
            padding = (ph, pw, ph, pw)
        return stride, padding, dilation, as_int(self.groups, "groups")

    def forward(self, x: np.ndarray) -> np.ndarray:
        stride, padding, dilation, groups = self._call_args or self._cached_args()
        p = self._parameters
        w = p["weight"].data
        b = p.get("bias")
        if padding is None:
            padding = F._conv2d_padding(self.padding, w, stride, dilation)
        if self.padding_mode != "zeros":  # padded here; the kernel then pads nothing
            x = _padding_modes.pad(x, padding, self.padding_mode)
            padding = (0, 0, 0, 0)
        self.__dict__["_x"] = x  # see Module: a saved array skips Module.__setattr__
        cache = None if self.training else self._weight_cache
        single = False
        if type(x) is not np.ndarray or x.ndim != 4:  # (C, H, W): one unbatched image
            x, single = F._as_batch(x)
        y = _core.conv2d_forward(
            x, w, None if b is None else b.data, stride, padding, dilation, groups, cache
        )
        return y[0] if single else y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise _forgotten(self)
        dy, x, single = F._with_batch(dy, x)
        stride, padding, dilation, groups = self._call_args or self._cached_args()
        p = self._parameters
        weight, bias = p["weight"], p.get("bias")
        if padding is None:
            padding = F._conv2d_padding(self.padding, weight.data, stride, dilation)
        conv_padding = padding
        if self.padding_mode != "zeros":  # x was saved padded
            conv_padding = (0, 0, 0, 0)
        dx = None
        if input_grad:
            dx = _core.conv2d_backward_input(
                dy, weight.data, np.shape(x), stride, conv_padding, dilation, groups
            )
            if conv_padding is not padding:
                dx = _padding_modes.fold(dx, padding, self.padding_mode)
        need_w, need_b = _trains(weight), _trains(bias)
        if need_w or need_b:  # a frozen layer (requires_grad False) computes neither
            dw, db = _core.conv2d_backward_weight(
                dy, x, weight.data.shape, stride, conv_padding, dilation, groups, need_w, need_b
            )
            _add_grads(weight, dw, bias, db)
        return dx[0] if single and dx is not None else dx

    def config(self) -> dict:
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=list(self.kernel_size),
            stride=list(self.stride),
            padding=self.padding if isinstance(self.padding, str) else list(self.padding),
            dilation=list(self.dilation),
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
        )


class Linear(Module):
    """y = x @ weight.T + bias. Input (..., in_features) -> (..., out_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        check_device_dtype(device, dtype)
        self.in_features = as_int(in_features, "in_features")
        self.out_features = as_int(out_features, "out_features")
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        w, b = default_weight_and_bias(
            (self.out_features, self.in_features), self.in_features, bias, rng
        )
        self.weight = Parameter(w)
        self.bias = Parameter(b) if b is not None else None
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.__dict__["_x"] = x
        p = self._parameters
        b = p.get("bias")
        return _core.linear_forward(x, p["weight"].data, None if b is None else b.data)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise _forgotten(self)
        p = self._parameters
        weight, bias = p["weight"], p.get("bias")
        dx = _core.linear_backward_input(dy, weight.data) if input_grad else None
        need_w, need_b = _trains(weight), _trains(bias)
        if need_w or need_b:  # a frozen layer (requires_grad False) computes neither
            dw, db = _core.linear_backward_weight(dy, x, need_w, need_b)
            _add_grads(weight, dw, bias, db)
        return dx

    def config(self) -> dict:
        return dict(
            in_features=self.in_features, out_features=self.out_features, bias=self.bias is not None
        )


class ReLU(Module):
    """max(x, 0), elementwise; any shape. `inplace` is accepted for PyTorch compatibility."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.__dict__["_x"] = x
        return _core.relu_forward(x)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._x is None:
            raise _forgotten(self)
        return _core.relu_backward(dy, self._x) if input_grad else None

    def config(self) -> dict:
        return {}


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x; any shape."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return F.leaky_relu(x, self.negative_slope)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._x is None:
            raise _forgotten(self)
        return F.leaky_relu_backward(dy, self._x, self.negative_slope) if input_grad else None

    def config(self) -> dict:
        return dict(negative_slope=self.negative_slope)


class _FromOutput(Module):
    """The body of Sigmoid and Tanh: an elementwise kernel whose backward reads the forward's
    output, as PyTorch's does."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._forward(x)
        self.__dict__["_y"] = y
        return y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._y is None:
            raise _forgotten(self)
        return self._backward(dy, self._y) if input_grad else None


class Sigmoid(_FromOutput):
    """1 / (1 + exp(-x)), elementwise; any shape."""

    _forward = staticmethod(_core.sigmoid_forward)
    _backward = staticmethod(_core.sigmoid_backward)


class Tanh(_FromOutput):
    """tanh(x), elementwise; any shape."""

    _forward = staticmethod(_core.tanh_forward)
    _backward = staticmethod(_core.tanh_backward)


class MaxPool2d(Module):
    """Max over kH x kW windows. Input (N, C, H, W) -> (N, C, H_out, W_out); with return_indices,
    (output, int64 argmax indices) as torch.nn.MaxPool2d returns them."""

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.return_indices = bool(return_indices)
        self.kernel_size = kernel_size
        # As in torch: the default stride is the kernel size given here, not one assigned later.
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = bool(ceil_mode)
        self._saved = None

    _call_arg_names = frozenset(("kernel_size", "stride", "padding", "dilation", "ceil_mode"))

    def _args(self) -> dict:
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def _make_call_args(self) -> tuple:
        kernel, strides, pad = F._window_args(self.kernel_size, self.stride, self.padding)
        return kernel, strides, pad, positive_pair(self.dilation, "dilation"), bool(self.ceil_mode)

    def forward(self, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        # Eval mode skips the argmax indices (backward rarely follows; it recomputes them).
        single = False
        if type(x) is not np.ndarray or x.ndim != 4:  # (C, H, W): one unbatched image
            x, single = F._as_batch(x)
        y, indices = _core.max_pool2d_forward(
            x, *(self._call_args or self._cached_args()), self.training or self.return_indices
        )
        self.__dict__["_saved"] = (x, indices)
        if self.return_indices:
            return (y[0], indices[0]) if single else (y, indices)
        return y[0] if single else y

    def fuses_after_batch_norm(self) -> bool:
        """Whether BatchNorm2d.forward_max_pool computes this pooling: 2x2 windows, stride 2, no
        padding or dilation, floor mode, output only."""
        kernel, strides, pad, dilation, ceil_mode = self._call_args or self._cached_args()
        return (
            not self.return_indices
            and tuple(kernel) == (2, 2)
            and tuple(strides) == (2, 2)
            and tuple(pad) == (0, 0)
            and tuple(dilation) == (1, 1)
            and not ceil_mode
        )

    def forward_then_relu(self, x: np.ndarray, relu: ReLU) -> np.ndarray:
        """relu(self(x)) in one kernel pass: what nn.Sequential runs for a MaxPool2d followed by
        a ReLU. The ReLU saves the result as its input: relu(v) > 0 exactly where v > 0, so its
        backward gives the same gradient."""
        single = False
        if type(x) is not np.ndarray or x.ndim != 4:  # (C, H, W): one unbatched image
            x, single = F._as_batch(x)
        y, indices = _core.max_pool2d_forward(
            x, *(self._call_args or self._cached_args()), self.training, True
        )
        self.__dict__["_saved"] = (x, indices)
        y = y[0] if single else y
        relu.__dict__["_x"] = y
        return y

    def saved_indices(self) -> np.ndarray:
        """The argmax indices of the last forward, recomputed from its input if eval mode skipped
        them."""
        if self._saved is None:
            raise _forgotten(self)
        x, indices = self._saved
        if type(indices) is tuple:  # (batch norm, its input): BatchNorm2d.forward_max_pool
            norm, norm_input = indices
            indices = norm.max_pool_indices(norm_input)
            self._saved = (x, indices)
        elif indices is None:
            _, indices = _core.max_pool2d_forward(x, *(self._call_args or self._cached_args()))
            self._saved = (x, indices)
        return indices

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._saved is None:
            raise _forgotten(self)
        if not input_grad:
            return None
        indices = self.saved_indices()
        single = np.ndim(dy) == 3  # an unbatched input, saved as x[None]
        if single:
            dy = np.asarray(dy)[None]
        dx = _core.max_pool2d_backward(
            dy, self._saved[0], *(self._call_args or self._cached_args()), indices
        )
        return dx[0] if single else dx

    def config(self) -> dict:
        return _jsonable(self._args())


class AvgPool2d(Module):
    """Mean over kH x kW windows. Input (N, C, H, W) -> (N, C, H_out, W_out)."""

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        # As in torch: the default stride is the kernel size given here, not one assigned later.
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override
        self._x = None

    def _args(self) -> dict:
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )

    _call_arg_names = frozenset(
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    )

    def _make_call_args(self) -> tuple:
        kernel, strides, pad = F._window_args(self.kernel_size, self.stride, self.padding)
        return (
            kernel,
            strides,
            pad,
            bool(self.ceil_mode),
            bool(self.count_include_pad),
            self.divisor_override,
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        single = False
        if type(x) is not np.ndarray or x.ndim != 4:  # (C, H, W): one unbatched image
            x, single = F._as_batch(x)
        y = _core.avg_pool2d_forward(x, *(self._call_args or self._cached_args()))
        return y[0] if single else y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._x is None:
            raise _forgotten(self)
        if not input_grad:
            return None
        dy, x, single = F._with_batch(dy, self._x)
        dx = _core.avg_pool2d_backward(dy, x, *(self._call_args or self._cached_args()))
        return dx[0] if single else dx

    def config(self) -> dict:
        return _jsonable(self._args())


class AdaptiveAvgPool2d(Module):
    """Mean over adaptive windows to a fixed output size. (N, C, H, W) -> (N, C, oH, oW)."""

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return F.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._x is None:
            raise _forgotten(self)
        return F.adaptive_avg_pool2d_backward(dy, self._x, self.output_size) if input_grad else None

    def config(self) -> dict:
        return _jsonable(dict(output_size=self.output_size))


class _BatchNorm(Module):
    """Batch normalization per channel (dim 1), the body of BatchNorm1d and BatchNorm2d: they
    differ only in the input ranks they take (`_ranks`, described by `_expected` and spelled out
    per channel count by `_channel_layout`)."""

    _ranks: tuple[int, ...] = ()
    _expected = ""
    _channel_layout = ""
    _optional_buffers = frozenset(("num_batches_tracked",))

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_device_dtype(device, dtype)
        self.num_features = as_int(num_features, "num_features")
        if self.num_features < 1:
            raise ValueError(f"num_features: expected >= 1, got {num_features}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(np.ones(c, np.float32)) if affine else None
        # bias=False (torch's too): a learned scale without a shift
        self.bias = Parameter(np.zeros(c, np.float32)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, np.float32))
            self.register_buffer("running_var", np.ones(c, np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._saved = None

    def _check(self, x: np.ndarray) -> None:
        if np.ndim(x) not in self._ranks:
            raise ValueError(f"input: expected {self._expected}, got shape {np.shape(x)}")
        if np.shape(x)[1] != self.num_features:
            layout = self._channel_layout.format(C=self.num_features)
            raise ValueError(
                f"input: expected {self.num_features} channels {layout}, got shape {np.shape(x)}"
            )

    def _forward_args(self, x: np.ndarray) -> tuple:
        """(use_batch_stats, weight, bias, running_mean, running_var, momentum) for a forward on
        x, counting the batch in num_batches_tracked when it updates the running stats. Raises
        when eval mode needs running stats that were set to None."""
        if not (
            type(x) is np.ndarray and x.ndim in self._ranks and x.shape[1] == self.num_features
        ):
            self._check(x)  # raises unless x is an array-like of the right shape
        track = self.track_running_stats
        p, buffers = self._parameters, self._buffers
        weight, bias = p.get("weight"), p.get("bias")
        weight = None if weight is None else weight.data
        bias = None if bias is None else bias.data
        running_mean = buffers["running_mean"] if track else None
        running_var = buffers["running_var"] if track else None
        if not self.training and track:
            F._require_running_stats(running_mean, running_var)
            return False, weight, bias, running_mean, running_var, 0.0
        momentum = self.momentum
        if self.training and track:
            buffers["num_batches_tracked"] += 1
            if momentum is None:
                momentum = 1.0 / float(buffers["num_batches_tracked"])
        return True, weight, bias, running_mean, running_var, momentum or 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        batch_stats, weight, bias, running_mean, running_var, momentum = self._forward_args(x)
        if not batch_stats:
            self.__dict__["_saved"] = (x, False, None, None)
            return _core.batchnorm2d_forward_eval(
                x, weight, bias, running_mean, running_var, self.eps
            )
        # The batch statistics are kept so that backward need not recompute them from x.
        y, mean, invstd = F.batch_norm_train(
            x, running_mean, running_var, weight, bias, momentum=momentum, eps=self.eps
        )
        self.__dict__["_saved"] = (x, True, mean, invstd)
        return y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        return self._backward(F.batch_norm_backward, (dy,), input_grad)

    def _backward(self, grads, leading: tuple, input_grad: bool, extra=None) -> np.ndarray | None:
        """grads(*leading, x, weight, ..., **extra): batch_norm_backward or its fused pooling
        form."""
        if self._saved is None:
            raise _forgotten(self)
        weight, bias = self.weight, self.bias
        if not (input_grad or _trains(weight) or _trains(bias)):
            return None
        x, use_batch_stats, mean, invstd = self._saved
        # one kernel makes dx, dw and db together (training's dx is built from dw's and db's sums)
        dx, dw, db = grads(
            *leading,
            x,
            None if weight is None else weight.data,
            running_mean=None if use_batch_stats else self.running_mean,
            running_var=None if use_batch_stats else self.running_var,
            training=use_batch_stats,
            eps=self.eps,
            save_mean=mean,
            save_invstd=invstd,
            **(extra or {}),
        )
        _add_grads(weight, dw, bias, db)
        return dx if input_grad else None

    def config(self) -> dict:
        return dict(
            num_features=self.num_features,
            eps=self.eps,
            momentum=self.momentum,
            affine=self.affine,
            track_running_stats=self.track_running_stats,
            **({} if not self.affine or self.bias is not None else {"bias": False}),
        )


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, H, W) per channel. Input and output (N, C, H, W).

    Parameters weight (C,), bias (C,); buffers running_mean, running_var (C,) and
    num_batches_tracked (a 0-d int64), as in PyTorch. momentum=None gives the cumulative average."""

    _ranks = (4,)
    _expected = "a 4-D array (N, C, H, W)"
    _channel_layout = "(N, {C}, H, W)"

    def forward_max_pool(self, x: np.ndarray, pool: MaxPool2d, relu: ReLU | None) -> np.ndarray:
        """relu(pool(self(x))) (without relu when it is None) in one fused kernel, leaving each
        module ready for its backward as if it had run alone (what nn.Sequential runs for a
        batch norm followed by a 2x2 stride-2 max pooling; see MaxPool2d.fuses_after_batch_norm)."""
        batch_stats, weight, bias, running_mean, running_var, momentum = self._forward_args(x)
        # _core directly: F.batch_norm_max_pool2d's argument checks cost ~0.8 us at batch 1.
        # Eval mode skips the argmax indices (~1.2 us at batch 1): the pooling is handed this
        # layer and x instead, to make them should its backward run (MaxPool2d.saved_indices).
        y, indices, mean, invstd = _core.batchnorm2d_max_pool2d_forward(
            x,
            weight,
            bias,
            running_mean,
            running_var,
            batch_stats,
            relu is not None,
            momentum,
            self.eps,
            batch_stats,
        )
        if indices is None:
            indices = (self, x)
        self.__dict__["_saved"] = (x, batch_stats, mean, invstd)
        # The pooling's backward reads only the shape of its input, which is never built here: a
        # zero-strided stand-in, made once per shape (np.broadcast_to costs ~3.4 us, a third of
        # this call at batch 1).
        stand_in = self.__dict__.get("_pooled_input")
        if stand_in is None or stand_in.shape != x.shape:
            stand_in = np.broadcast_to(np.float32(0), x.shape)
            self.__dict__["_pooled_input"] = stand_in
        pool.__dict__["_saved"] = (stand_in, indices)
        if relu is not None:
            relu.__dict__["_x"] = y  # the ReLU's output: zero exactly where its input was <= 0
        return y

    def max_pool_indices(self, x: np.ndarray) -> np.ndarray:
        """The argmax indices of the 2x2 stride-2 max pooling of this layer's eval-mode output
        for x (what an eval-mode forward_max_pool skipped)."""
        p = self._parameters
        weight, bias = p.get("weight"), p.get("bias")
        running_mean, running_var = self._buffers["running_mean"], self._buffers["running_var"]
        F._require_running_stats(running_mean, running_var)
        return _core.batchnorm2d_max_pool2d_forward(
            x,
            None if weight is None else weight.data,
            None if bias is None else bias.data,
            running_mean,
            running_var,
            False,
            False,
            0.0,
            self.eps,
        )[1]

    def backward_through_max_pool(
        self,
        dy: np.ndarray,
        pool: MaxPool2d,
        input_grad: bool = True,
        relu: ReLU | None = None,
    ) -> np.ndarray | None:
        """backward of this layer and the MaxPool2d that ran on its output (and the ReLU that ran
        on the pooling's output, when given: dy is then the ReLU's output gradient), in one fused
        kernel (what nn.Sequential runs for the pair or the three)."""
        extra = {}
        if relu is not None:
            if relu._x is None:
                raise _forgotten(relu)
            extra["relu_output"] = relu._x  # its input or output: <= 0 at the same places
        return self._backward(
            F.batch_norm_max_pool2d_backward, (dy, pool.saved_indices()), input_grad, extra
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization per channel over N (input (N, C)) or over (N, L) (input (N, C, L)); the
    output has the input's shape. Parameters, buffers and arguments as BatchNorm2d's. The kernels
    are BatchNorm2d's, which view any input as (N, C, L) without a copy."""

    _ranks = (2, 3)
    _expected = "a 2-D or 3-D array (N, C) or (N, C, L)"
    _channel_layout = "(N, {C}) or (N, {C}, L)"


class Dropout(Module):
    """Zeroes each element with probability p in training and scales the rest by 1/(1-p); the
    identity in eval mode. Masks come from fastcnn's generator (see fastcnn.manual_seed)."""

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p}")
        self.p = p
        self.inplace = bool(inplace)
        self._rng = rng
        self._mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._mask = None
            return np.array(x, dtype=np.float32, copy=True)
        gen = self._rng if self._rng is not None else default_generator()
        seed = int(gen.integers(0, 2**63 - 1))
        y, self._mask = _core.dropout_forward(x, self.p, seed)
        return y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        if self._mask is None:
            return np.array(dy, dtype=np.float32, copy=True)
        return F.dropout_backward(dy, self._mask, self.p)

    def config(self) -> dict:
        return dict(p=self.p)


class Flatten(Module):
    """Flattens dims start_dim..end_dim: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = as_int(start_dim, "start_dim")
        self.end_dim = as_int(end_dim, "end_dim")
        self._shape = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if type(x) is not np.ndarray:
            x = np.asarray(x)
        shape = x.shape
        self.__dict__["_shape"] = shape
        nd = len(shape)
        if nd == 4 and self.start_dim == 1 and self.end_dim == -1:  # (N, C, H, W): the usual case
            return x.reshape(shape[0], shape[1] * shape[2] * shape[3])
        # A 0-d array counts as 1-d (dims -1 and 0), as torch.flatten treats a scalar.
        start = self.start_dim + max(nd, 1) if self.start_dim < 0 else self.start_dim
        end = self.end_dim + max(nd, 1) if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < max(nd, 1):
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}): "
                f"invalid for an input of shape {x.shape}"
            )
        if nd == 0:
            return x.reshape(1)
        flat = math.prod(shape[start : end + 1])
        return x.reshape(shape[:start] + (flat,) + shape[end + 1 :])

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._shape is None:
            raise _forgotten(self)
        return np.asarray(dy).reshape(self._shape) if input_grad else None

    def config(self) -> dict:
        return dict(start_dim=self.start_dim, end_dim=self.end_dim)


class Identity(Module):
    """Returns its input."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        return dy if input_grad else None


class _AlongDim(Module):
    """The body of Softmax and LogSoftmax: `_forward(x, dim)` along `dim`, and its backward from
    the output. dim=None follows PyTorch's legacy rule: dim 0 for inputs of rank 0, 1 or 3, else
    dim 1."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else as_int(dim, "dim")
        self._y = None

    def _dim(self, ndim: int) -> int:
        if self.dim is not None:
            return self.dim
        return 0 if ndim in (0, 1, 3) else 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = self._forward(x, dim=self._dim(np.ndim(x)))
        return self._y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._y is None:
            raise _forgotten(self)
        if not input_grad:
            return None
        return self._backward(dy, None, dim=self._dim(self._y.ndim), y=self._y)

    def config(self) -> dict:
        return dict(dim=self.dim)


class Softmax(_AlongDim):
    """Softmax along `dim` (probabilities that sum to 1); dim=None: see _AlongDim."""

    _forward = staticmethod(F.softmax)
    _backward = staticmethod(F.softmax_backward)


class LogSoftmax(_AlongDim):
    """log(softmax(x)) along `dim`, computed stably (a -inf input gives -inf, as in PyTorch);
    dim=None: see _AlongDim."""

    _forward = staticmethod(F.log_softmax)
    _backward = staticmethod(F.log_softmax_backward)


def _jsonable(args: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
