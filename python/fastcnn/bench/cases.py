"""The rows `fastcnn bench` times: each op's passes on the standard shapes (tiny ones for tests).

Each row builds its inputs and, per library (NumPy baseline, fastcnn, torch), the call to time.
Rates count the ideal work: 2 flops per multiply-add for conv2d and linear; for the memory-bound
ops, the bytes of each float32 input read once and each output written once. Layout key: x is
(N, C, H, W), weights KCRS.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np

import fastcnn
from fastcnn import numpy_ops as nops

F = fastcnn.functional

OPS = (
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "relu",
    "sigmoid",
    "tanh",
    "batch_norm",
    "linear",
    "cross_entropy",
)

Thunk = Callable[[], Any]
Inputs = dict


@dataclass
class Case:
    """One row: an op's pass on one shape, with a builder per library returning the timed call."""

    op: str
    pass_: str
    shape: str
    needs: tuple[str, ...]  # the fastcnn.functional names the row calls
    work: float  # flops, or bytes for the memory-bound ops
    unit: str  # "GFLOP/s" or "GB/s"
    inputs: Callable[[np.random.Generator], Inputs]
    numpy: Callable[[Inputs], Thunk]
    fastcnn: Callable[[Inputs], Thunk]
    torch: Callable[[Inputs, ModuleType], Thunk]


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _tensors(torch: ModuleType, d: Inputs) -> dict:
    """The inputs as torch tensors sharing the NumPy memory."""
    return {k: torch.from_numpy(v) for k, v in d.items()}


def _conv_cases(N, C, H, W, K, R, stride=1, padding=0, groups=1) -> list[Case]:
    P = (H + 2 * padding - R) // stride + 1
    Q = (W + 2 * padding - R) // stride + 1
    kind = f"dw{R}x{R}" if groups == C == K else f"K{K} {R}x{R}"
    shape = f"{N}x{C}x{H}x{W} {kind}" + (f" s{stride}" if stride > 1 else "")
    shape += f" p{padding}" if padding else ""
    flops = 2.0 * N * K * P * Q * (C // groups) * R * R
    kw = {"stride": stride, "padding": padding, "groups": groups}

    def inputs(rng):
        return {
            "x": _randn(rng, N, C, H, W),
            "w": _randn(rng, K, C // groups, R, R),
            "b": _randn(rng, K),
            "dy": _randn(rng, N, K, P, Q),
        }

    def backward(pass_: str, mask: tuple[bool, bool, bool]) -> Case:
        def torch_call(d, torch):
            t = _tensors(torch, d)
            s, p = [stride] * 2, [padding] * 2
            return lambda: torch.ops.aten.convolution_backward(
                t["dy"], t["x"], t["w"], [K], s, p, [1, 1], False, [0, 0], groups, list(mask)
            )

        return Case(
            "conv2d",
            pass_,
            shape,
            ("conv2d_backward",),
            flops,
            "GFLOP/s",
            inputs,
            lambda d: (
                lambda: nops.conv2d_backward(
                    d["dy"], d["x"], d["w"], stride, padding, 1, groups, mask
                )
            ),
            lambda d: (
                lambda: F.conv2d_backward(
                    d["dy"], d["x"], d["w"], stride, padding, 1, groups, output_mask=mask
                )
            ),
            torch_call,
        )

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        return lambda: torch.nn.functional.conv2d(t["x"], t["w"], t["b"], **kw)

    forward = Case(
        "conv2d",
        "forward",
        shape,
        ("conv2d",),
        flops,
        "GFLOP/s",
        inputs,
        lambda d: lambda: nops.conv2d(d["x"], d["w"], d["b"], **kw),
        lambda d: lambda: F.conv2d(d["x"], d["w"], d["b"], **kw),
        torch_forward,
    )
    # The weight pass also writes the bias gradient, as conv2d_backward_weight does.
    return [
        forward,
        backward("backward-input", (True, False, False)),
        backward("backward-weight", (False, True, True)),
    ]


def _pool_cases(op: str, N, C, H, W, k=2) -> list[Case]:
    n_in, n_out = N * C * H * W, N * C * (H // k) * (W // k)
    shape = f"{N}x{C}x{H}x{W} {k}x{k}"
    nfwd, nbwd = getattr(nops, op), getattr(nops, op + "_backward")

    def inputs(rng):
        return {"x": _randn(rng, N, C, H, W), "dy": _randn(rng, N, C, H // k, W // k)}

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        f = getattr(torch.nn.functional, op)
        return lambda: f(t["x"], k)

    forward = Case(
        op,
        "forward",
        shape,
        (op,),
        4.0 * (n_in + n_out),
        "GB/s",
        inputs,
        lambda d: lambda: nfwd(d["x"], k),
        lambda d: lambda: getattr(F, op)(d["x"], k),
        torch_forward,
    )
    # Backward gets what its own forward saved, as a layer does: max pooling's indices.
    if op == "max_pool2d":

        def numpy_backward(d):
            _, idx = nops.max_pool2d(d["x"], k, return_indices=True)
            return lambda: nbwd(d["dy"], d["x"], k, indices=idx)

        def fastcnn_backward(d):
            _, idx = F.max_pool2d(d["x"], k, return_indices=True)
            return lambda: F.max_pool2d_backward(d["dy"], d["x"], k, indices=idx)

        def torch_backward(d, torch):
            t = _tensors(torch, d)
            _, idx = torch.nn.functional.max_pool2d(t["x"], k, return_indices=True)
            return lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                t["dy"], t["x"], [k, k], [k, k], [0, 0], [1, 1], False, idx
            )

    else:

        def numpy_backward(d):
            return lambda: nbwd(d["dy"], d["x"], k)

        def fastcnn_backward(d):
            return lambda: F.avg_pool2d_backward(d["dy"], d["x"], k)

        def torch_backward(d, torch):
            t = _tensors(torch, d)
            return lambda: torch.ops.aten.avg_pool2d_backward(
                t["dy"], t["x"], [k, k], [k, k], [0, 0], False, True, None
            )

    backward = Case(
        op,
        "backward",
        shape,
        (op, op + "_backward"),
        4.0 * (n_out + n_in),
        "GB/s",
        inputs,
        numpy_backward,
        fastcnn_backward,
        torch_backward,
    )
    return [forward, backward]


def _relu_cases(*shape: int) -> list[Case]:
    n = int(np.prod(shape))
    label = "x".join(map(str, shape))

    def inputs(rng):
        return {"x": _randn(rng, *shape), "dy": _randn(rng, *shape)}

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        return lambda: torch.relu(t["x"])

    def torch_backward(d, torch):
        t = _tensors(torch, d)
        return lambda: torch.ops.aten.threshold_backward(t["dy"], t["x"], 0)

    return [
        Case(
            "relu",
            "forward",
            label,
            ("relu",),
            8.0 * n,
            "GB/s",
            inputs,
            lambda d: lambda: nops.relu(d["x"]),
            lambda d: lambda: F.relu(d["x"]),
            torch_forward,
        ),
        Case(
            "relu",
            "backward",
            label,
            ("relu_backward",),
            12.0 * n,
            "GB/s",
            inputs,
            lambda d: lambda: nops.relu_backward(d["dy"], d["x"]),
            lambda d: lambda: F.relu_backward(d["dy"], d["x"]),
            torch_backward,
        ),
    ]


def _sigmoid_tanh_cases(op: str, *shape: int) -> list[Case]:
    """Forward, and backward from the forward's output y (as the modules and torch run it)."""
    n = int(np.prod(shape))
    label = "x".join(map(str, shape))
    numpy_forward, numpy_backward = getattr(nops, op), getattr(nops, op + "_backward")

    def inputs(rng):
        x = _randn(rng, *shape)
        return {"x": x, "y": numpy_forward(x), "dy": _randn(rng, *shape)}

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        return lambda: getattr(torch, op)(t["x"])

    def torch_backward(d, torch):
        t = _tensors(torch, d)
        return lambda: getattr(torch.ops.aten, op + "_backward")(t["dy"], t["y"])

    return [
        Case(
            op,
            "forward",
            label,
            (op,),
            8.0 * n,
            "GB/s",
            inputs,
            lambda d: lambda: numpy_forward(d["x"]),
            lambda d: lambda: getattr(F, op)(d["x"]),
            torch_forward,
        ),
        Case(
            op,
            "backward",
            label,
            (op + "_backward",),
            12.0 * n,
            "GB/s",
            inputs,
            lambda d: lambda: numpy_backward(d["dy"], None, y=d["y"]),
            lambda d: lambda: getattr(F, op + "_backward")(d["dy"], None, y=d["y"]),
            torch_backward,
        ),
    ]


def _batch_norm_cases(N, C, H, W) -> list[Case]:
    n = N * C * H * W
    label = f"{N}x{C}x{H}x{W} train"
    momentum, eps = 0.1, 1e-5

    def inputs(rng):
        return {
            "x": _randn(rng, N, C, H, W) * 2 + 1,
            "dy": _randn(rng, N, C, H, W),
            "w": _randn(rng, C),
            "b": _randn(rng, C),
            "rm": _randn(rng, C),
            "rv": rng.uniform(0.5, 2.0, C).astype(np.float32),
        }

    # Each library updates its own copy of the running statistics in place.
    def numpy_forward(d):
        rm, rv = d["rm"].copy(), d["rv"].copy()
        return lambda: nops.batch_norm(d["x"], rm, rv, d["w"], d["b"], True, momentum, eps)

    def fastcnn_forward(d):
        rm, rv = d["rm"].copy(), d["rv"].copy()
        return lambda: F.batch_norm(d["x"], rm, rv, d["w"], d["b"], True, momentum, eps)

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        rm, rv = t["rm"].clone(), t["rv"].clone()
        return lambda: torch.nn.functional.batch_norm(
            t["x"], rm, rv, t["w"], t["b"], True, momentum, eps
        )

    def fastcnn_backward(d):
        # Like nn.BatchNorm2d (and torch below), backward reads the statistics forward saved.
        _, mean, invstd = F.batch_norm_train(d["x"], None, None, d["w"], d["b"], momentum, eps)
        return lambda: F.batch_norm_backward(
            d["dy"], d["x"], d["w"], training=True, eps=eps, save_mean=mean, save_invstd=invstd
        )

    def torch_backward(d, torch):
        # torch's backward reads the batch statistics its forward saved; NumPy recomputes them.
        t = _tensors(torch, d)
        rm, rv = t["rm"].clone(), t["rv"].clone()
        _, mean, invstd = torch.ops.aten.native_batch_norm(
            t["x"], t["w"], t["b"], rm, rv, True, momentum, eps
        )
        return lambda: torch.ops.aten.native_batch_norm_backward(
            t["dy"], t["x"], t["w"], rm, rv, mean, invstd, True, eps, [True, True, True]
        )

    return [
        Case(
            "batch_norm",
            "forward",
            label,
            ("batch_norm",),
            8.0 * n,
            "GB/s",
            inputs,
            numpy_forward,
            fastcnn_forward,
            torch_forward,
        ),
        Case(
            "batch_norm",
            "backward",
            label,
            ("batch_norm_backward",),
            12.0 * n,
            "GB/s",
            inputs,
            lambda d: lambda: nops.batch_norm_backward(d["dy"], d["x"], d["w"], eps),
            fastcnn_backward,
            torch_backward,
        ),
    ]


def _linear_cases(batch, n_in, n_out) -> list[Case]:
    label = f"{batch}x{n_in} -> {n_out}"

    def inputs(rng):
        return {
            "x": _randn(rng, batch, n_in),
            "w": _randn(rng, n_out, n_in),
            "b": _randn(rng, n_out),
            "dy": _randn(rng, batch, n_out),
        }

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        return lambda: torch.nn.functional.linear(t["x"], t["w"], t["b"])

    def torch_backward(d, torch):
        t = _tensors(torch, d)
        dy, x, w = t["dy"], t["x"], t["w"]
        return lambda: (dy.mm(w), dy.t().mm(x), dy.sum(0))

    mask = (True, True, True)
    return [
        Case(
            "linear",
            "forward",
            label,
            ("linear",),
            2.0 * batch * n_in * n_out,
            "GFLOP/s",
            inputs,
            lambda d: lambda: nops.linear(d["x"], d["w"], d["b"]),
            lambda d: lambda: F.linear(d["x"], d["w"], d["b"]),
            torch_forward,
        ),
        Case(
            "linear",
            "backward",
            label,
            ("linear_backward",),
            4.0 * batch * n_in * n_out,
            "GFLOP/s",
            inputs,
            lambda d: lambda: nops.linear_backward(d["dy"], d["x"], d["w"], mask),
            lambda d: lambda: F.linear_backward(d["dy"], d["x"], d["w"], output_mask=mask),
            torch_backward,
        ),
    ]


def _cross_entropy_cases(N, classes) -> list[Case]:
    label = f"{N}x{classes}"
    nbytes = 4.0 * N * classes

    def inputs(rng):
        return {"z": _randn(rng, N, classes) * 3, "t": rng.integers(0, classes, N)}

    def torch_forward(d, torch):
        t = _tensors(torch, d)
        return lambda: torch.nn.functional.cross_entropy(t["z"], t["t"])

    def torch_backward(d, torch):
        # What autograd runs for cross_entropy: nll_loss's backward, then log_softmax's.
        t = _tensors(torch, d)
        logp = torch.log_softmax(t["z"], 1)
        one, total = torch.tensor(1.0), torch.tensor(float(N))
        return lambda: torch.ops.aten._log_softmax_backward_data(
            torch.ops.aten.nll_loss_backward(one, logp, t["t"], None, 1, -100, total),
            logp,
            1,
            torch.float32,
        )

    return [
        Case(
            "cross_entropy",
            "forward",
            label,
            ("cross_entropy",),
            nbytes,
            "GB/s",
            inputs,
            lambda d: lambda: nops.cross_entropy(d["z"], d["t"]),
            lambda d: lambda: F.cross_entropy(d["z"], d["t"]),
            torch_forward,
        ),
        Case(
            "cross_entropy",
            "backward",
            label,
            ("cross_entropy_backward",),
            2 * nbytes,
            "GB/s",
            inputs,
            lambda d: lambda: nops.cross_entropy_backward(d["z"], d["t"]),
            lambda d: lambda: F.cross_entropy_backward(d["z"], d["t"]),
            torch_backward,
        ),
    ]


def cases(quick: bool = False) -> list[Case]:
    """The standard rows; `quick`: tiny, odd shapes that run in a blink (for tests)."""
    if quick:
        return [
            *_conv_cases(2, 1, 9, 9, 4, 3, padding=1),
            *_conv_cases(2, 4, 7, 7, 6, 3, padding=1),
            *_conv_cases(2, 6, 8, 8, 5, 1),
            *_conv_cases(2, 4, 9, 9, 4, 3, padding=1, groups=4),
            *_conv_cases(1, 3, 17, 17, 4, 7, stride=2, padding=3),
            *_pool_cases("max_pool2d", 2, 3, 9, 9),
            *_pool_cases("avg_pool2d", 2, 3, 9, 9),
            *_relu_cases(2, 3, 9, 9),
            *_sigmoid_tanh_cases("sigmoid", 2, 3, 9, 9),
            *_sigmoid_tanh_cases("tanh", 2, 3, 9, 9),
            *_batch_norm_cases(2, 3, 9, 9),
            *_linear_cases(4, 20, 6),
            *_cross_entropy_cases(4, 5),
        ]
    return [
        *_conv_cases(64, 1, 28, 28, 32, 3, padding=1),
        *_conv_cases(64, 32, 14, 14, 64, 3, padding=1),
        *_conv_cases(8, 64, 56, 56, 64, 3, padding=1),
        *_conv_cases(8, 128, 28, 28, 128, 1),
        *_conv_cases(8, 64, 56, 56, 64, 3, padding=1, groups=64),
        *_conv_cases(1, 3, 224, 224, 64, 7, stride=2, padding=3),
        *_pool_cases("max_pool2d", 64, 32, 28, 28),
        *_pool_cases("avg_pool2d", 64, 32, 28, 28),
        *_relu_cases(64, 32, 28, 28),
        *_sigmoid_tanh_cases("sigmoid", 64, 32, 28, 28),
        *_sigmoid_tanh_cases("tanh", 64, 32, 28, 28),
        *_batch_norm_cases(64, 32, 28, 28),
        *_linear_cases(128, 3136, 128),
        *_cross_entropy_cases(128, 10),
    ]
