"""`fastcnn bench`: time each fastcnn.functional op against plain NumPy float32 (and PyTorch), same threads.

Each row first checks fastcnn's result (and torch's) against the NumPy baseline in numpy_ops and is
aborted on a mismatch; then each implementation is warmed up and timed: the median of `repeats` calls
measured with time.perf_counter. Every library runs with the same thread count. Rates count the ideal
work: 2 flops per multiply-add for conv2d and linear; for the memory-bound ops, the bytes of each
float32 input read once and each output written once. Layout key: x is (N, C, H, W), weights KCRS.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import sys
import time
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
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# float32 against float32, summed in different orders: relative to the largest reference value, so a
# long reduction (conv2d's weight gradient sums up to N*P*Q products) passes and a wrong element fails.
CHECK_RTOL = 1e-3
CHECK_ATOL_SCALE = 1e-4

Thunk = Callable[[], Any]
Inputs = dict


@dataclass
class Case:
    """One row: an op's pass on one shape, with a builder per library that returns the timed call."""

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


# --- the cases -------------------------------------------------------------------------------------


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


def _linear_cases(M, I, O) -> list[Case]:
    label = f"{M}x{I} -> {O}"

    def inputs(rng):
        return {
            "x": _randn(rng, M, I),
            "w": _randn(rng, O, I),
            "b": _randn(rng, O),
            "dy": _randn(rng, M, O),
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
            2.0 * M * I * O,
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
            4.0 * M * I * O,
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


# --- checking and timing ---------------------------------------------------------------------------


def _arrays(result: Any) -> list[np.ndarray | None]:
    """A result (array, tensor, float or a tuple of them) as a list of NumPy arrays or None."""
    items = result if isinstance(result, (tuple, list)) else (result,)
    out = []
    for r in items:
        if r is None or isinstance(r, np.ndarray):
            out.append(r)
        elif hasattr(r, "detach"):  # a torch tensor
            out.append(r.detach().numpy())
        else:
            out.append(np.asarray(r))
    return out


def compare(result: Any, expected: Any) -> str | None:
    """None when `result` agrees with the NumPy `expected`, else what differs.

    Only the outputs the baseline computed are compared (None marks one it skipped).
    """
    got, want = _arrays(result), _arrays(expected)
    for i, w in enumerate(want):
        if w is None:
            continue
        g = got[i] if i < len(got) else None
        if g is None:
            return f"output {i} missing"
        if g.shape != w.shape:
            return f"output {i} has shape {g.shape}, expected {w.shape}"
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        atol = CHECK_ATOL_SCALE * (float(np.max(np.abs(w64))) if w64.size else 0.0)
        if not np.allclose(g64, w64, rtol=CHECK_RTOL, atol=atol):
            err = np.abs(g64 - w64)
            at = np.unravel_index(int(np.nanargmax(err)) if err.size else 0, err.shape)
            return (
                f"output {i} max abs err {float(np.nanmax(err)):.3g} at {tuple(map(int, at))} "
                f"(got {g64[at]:.6g}, NumPy {w64[at]:.6g})"
            )
    return None


def time_calls(fn: Thunk, warmup: int, repeats: int) -> list[float]:
    """Wall times of `repeats` calls of fn, in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


# OpenBLAS and OpenMP worker threads keep spinning on their cores for up to ~0.1 s after a call.
# Timed right after another library, a multi-threaded run found the other core taken: fastcnn's
# 2-thread rows ran at 1-thread speed in the same table where an interleaved test scaled 2x.
SETTLE_S = 0.25


def _timed(row: dict, lib: str, fn: Thunk, warmup: int, repeats: int, settle: float) -> None:
    """Store the median in row[lib_ms] and every call in row[lib_times_ms] (for the spread), after
    `settle` seconds idle so the previous library's threads have gone to sleep."""
    if settle:
        time.sleep(settle)
    times = time_calls(fn, warmup, repeats)
    row[f"{lib}_ms"] = statistics.median(times)
    row[f"{lib}_times_ms"] = times


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def run_case(
    case: Case,
    rng: np.random.Generator,
    torch: ModuleType | None,
    warmup: int,
    repeats: int,
    settle: float = SETTLE_S,
) -> dict:
    """Check, then time one row; the returned dict is the row of the JSON report."""
    row: dict[str, Any] = dict(
        op=case.op,
        **{"pass": case.pass_},
        shape=case.shape,
        unit=case.unit,
        work=case.work,
        status="ok",
        reason=None,
        numpy_ms=None,
        fastcnn_ms=None,
        torch_ms=None,
        torch_status=None,
    )
    missing = [name for name in case.needs if not hasattr(F, name)]
    if missing:
        row.update(status="skipped", reason=f"fastcnn.functional has no {', '.join(missing)}")
        return row
    d = case.inputs(rng)
    numpy_fn = case.numpy(d)
    expected = numpy_fn()
    try:
        fast_fn = case.fastcnn(d)
        mismatch = compare(fast_fn(), expected)
    except NotImplementedError as e:
        row.update(status="skipped", reason=_error(e))
        return row
    except Exception as e:  # noqa: BLE001  (any failure of the op aborts its row, with the reason)
        row.update(status="error", reason=_error(e))
        return row
    if mismatch:
        row.update(status="mismatch", reason=mismatch)
        return row
    _timed(row, "numpy", numpy_fn, warmup, repeats, settle)
    _timed(row, "fastcnn", fast_fn, warmup, repeats, settle)
    if torch is not None:
        try:
            torch_fn = case.torch(d, torch)
            torch_mismatch = compare(torch_fn(), expected)
        except Exception as e:  # noqa: BLE001
            torch_mismatch = _error(e)
        if torch_mismatch:
            row["torch_status"] = f"mismatch: {torch_mismatch}"
        else:
            row["torch_status"] = "ok"
            _timed(row, "torch", torch_fn, warmup, repeats, settle)
    for lib in ("numpy", "fastcnn", "torch"):
        ms = row[f"{lib}_ms"]
        row[f"{lib}_rate"] = None if ms is None else case.work / ms / 1e6  # GFLOP/s or GB/s
    row["speedup_vs_numpy"] = row["numpy_ms"] / row["fastcnn_ms"]
    row["speedup_vs_torch"] = (
        None if row["torch_ms"] is None else row["torch_ms"] / row["fastcnn_ms"]
    )
    return row


# --- threads and environment -----------------------------------------------------------------------


class BlasThreads:
    """Reads and sets the thread count of NumPy's BLAS.

    Uses threadpoolctl when it is installed; else calls OpenBLAS's own functions in the library NumPy
    loaded (found in /proc/self/maps, so Linux only). `available` is False when neither works.
    """

    _PREFIXES = ("scipy_openblas", "openblas")
    _SUFFIXES = ("64_", "")

    def __init__(self) -> None:
        self._controller = None
        self._lib = None
        self._limiter = None
        self._previous: int | None = None
        try:
            import threadpoolctl
        except ImportError:
            self._lib, self._names = self._find_openblas()
        else:
            self._controller = threadpoolctl.ThreadpoolController()

    def _find_openblas(self):
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
        except OSError:
            return None, None
        for path in sorted(p for p in paths if p.startswith("/")):
            lib = ctypes.CDLL(path)
            for prefix in self._PREFIXES:
                for suffix in self._SUFFIXES:
                    names = {
                        what: f"{prefix}_{what}{suffix}"
                        for what in ("get_num_threads", "set_num_threads", "get_corename")
                    }
                    if all(hasattr(lib, n) for n in names.values()):
                        return lib, names
        return None, None

    @property
    def available(self) -> bool:
        if self._controller is not None:
            return bool(self._controller.select(user_api="blas").info())
        return self._lib is not None

    def describe(self) -> str:
        """Library, version, core type and threads, or why none is known."""
        if self._controller is not None:
            libs = self._controller.select(user_api="blas").info()
            return (
                "; ".join(
                    f"{i['internal_api']} {i['version']} core {i.get('architecture')}, "
                    f"{i['num_threads']} threads"
                    for i in libs
                )
                or "no BLAS found by threadpoolctl"
            )
        if self._lib is None:
            return "threads not controlled (install threadpoolctl)"
        core = getattr(self._lib, self._names["get_corename"])
        core.restype = ctypes.c_char_p
        return f"openblas core {core().decode()}, {self.get()} threads"

    def get(self) -> int | None:
        if self._controller is not None:
            libs = self._controller.select(user_api="blas").info()
            return libs[0]["num_threads"] if libs else None
        if self._lib is None:
            return None
        return int(getattr(self._lib, self._names["get_num_threads"])())

    def set(self, n: int) -> None:
        if self._controller is not None:
            self._limiter = self._controller.limit(limits=n, user_api="blas")
        elif self._lib is not None:
            self._previous = self.get()
            getattr(self._lib, self._names["set_num_threads"])(ctypes.c_int(n))

    def restore(self) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        elif self._lib is not None and self._previous:
            getattr(self._lib, self._names["set_num_threads"])(ctypes.c_int(self._previous))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas() -> str:
    """NumPy's BLAS name and version from its build configuration."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):  # NumPy < 1.26 prints its configuration only
        return "unknown BLAS"


def blas_env() -> dict[str, str | None]:
    """The OpenBLAS variables that override its CPU detection and cache sizes, where set."""
    return {name: os.environ.get(name) for name in BLAS_ENV}


# --- the command -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fastcnn bench`."""
    parser.add_argument(
        "--ops",
        "--op",
        default=",".join(OPS),
        help=f"comma-separated ops to time (default: all of {','.join(OPS)})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for fastcnn, NumPy's BLAS and torch (default: fastcnn's current count)",
    )
    parser.add_argument("--repeats", type=int, default=0, help="timed calls per row (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 3 repeats (for tests)")
    parser.add_argument("--torch", action="store_true", help="also time PyTorch (CPU)")
    parser.add_argument("--json", metavar="PATH", help="write the environment and every row")
    parser.add_argument("--plot", metavar="PNG", help="bar chart of the speed-ups (matplotlib)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


HEAD = (
    f"{'op':<14}{'pass':<16}{'shape':<26}{'numpy ms':>10}{'fastcnn ms':>12}"
    f"{'fastcnn rate':>18}{'x numpy':>9}{'torch ms':>10}{'x torch':>9}"
)


def format_row(r: dict) -> str:
    lead = f"{r['op']:<14}{r['pass']:<16}{r['shape']:<26}"
    if r["status"] == "skipped":
        return lead + f"skipped: {r['reason']}"
    if r["status"] == "error":
        return lead + f"ERROR (row aborted): {r['reason']}"
    if r["status"] == "mismatch":
        return lead + f"MISMATCH vs NumPy (row aborted): {r['reason']}"
    rate = f"{r['fastcnn_rate']:.1f} {r['unit']}"
    line = (
        lead
        + f"{_fmt(r['numpy_ms']):>10}{_fmt(r['fastcnn_ms']):>12}{rate:>18}"
        + f"{_fmt(r['speedup_vs_numpy'], '.2f') + 'x':>9}"
    )
    if r["torch_status"] == "ok":
        line += f"{_fmt(r['torch_ms']):>10}{_fmt(r['speedup_vs_torch'], '.2f') + 'x':>9}"
    elif r["torch_status"]:
        line += f"  torch {r['torch_status']}"
    return line


def _plot(rows: list[dict], path: str, meta: dict) -> None:
    from matplotlib.figure import Figure

    timed = [r for r in rows if r["status"] == "ok"]
    labels = [f"{r['op']} {r['pass']}\n{r['shape']}" for r in timed]
    y = np.arange(len(timed))
    fig = Figure(figsize=(9, 1.0 + 0.42 * max(len(timed), 1)), layout="constrained")
    ax = fig.add_subplot()
    with_torch = any(r["torch_ms"] for r in timed)
    h = 0.4 if with_torch else 0.8
    ax.barh(y, [r["speedup_vs_numpy"] for r in timed], h, label="fastcnn")
    if with_torch:
        ax.barh(
            y + h,
            [r["numpy_ms"] / r["torch_ms"] if r["torch_ms"] else 0 for r in timed],
            h,
            label="torch",
        )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y + (h / 2 if with_torch else 0), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over NumPy (higher is better)")
    ax.set_title(
        f"fastcnn {meta['fastcnn_version']} ({meta['cpu_variant']}), {meta['threads']} threads"
    )
    ax.legend()
    fig.savefig(path, dpi=120)


def environment(threads: int, blas: BlasThreads, torch: ModuleType | None) -> dict:
    """What the numbers depend on: versions, variant, threads, CPU, BLAS and its overrides."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "fastcnn_version": fastcnn.__version__,
        "cpu_variant": fastcnn._core.cpu_variant(),
        "threads": threads,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "numpy_version": np.__version__,
        "numpy_blas": numpy_blas(),
        "numpy_blas_runtime": blas.describe(),
        "blas_env": blas_env(),
        "torch_version": None if torch is None else torch.__version__,
    }


def print_header(meta: dict, warmup: int, repeats: int) -> None:
    p = print
    p(
        f"fastcnn {meta['fastcnn_version']} bench: CPU variant {meta['cpu_variant']}, "
        f"{meta['threads']} threads for every library, median of {repeats} calls after {warmup} "
        "warm-up calls"
    )
    p(f"CPU: {meta['cpu']}   Python {meta['python']}")
    p(f"NumPy {meta['numpy_version']} ({meta['numpy_blas']}; {meta['numpy_blas_runtime']})")
    for name, value in meta["blas_env"].items():
        if value is None:
            p(f"{name}: not set")
        else:
            p(
                f"{name}={value}: set, it overrides OpenBLAS's tuning and may slow NumPy (unset to compare)"
            )
    if meta["torch_version"]:
        p(f"torch {meta['torch_version']}")
    p(
        "speed-up: x numpy = numpy ms / fastcnn ms, x torch = torch ms / fastcnn ms; higher is faster"
    )
    p("")


def run(args: argparse.Namespace) -> int:
    """`fastcnn bench`: 0 when every timed row agreed with NumPy, 1 on a mismatch or error, 2 on bad use."""
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        print(
            f"fastcnn bench: --ops: unknown {unknown}, expected some of {','.join(OPS)}",
            file=sys.stderr,
        )
        return 2
    if args.threads < 0 or args.repeats < 0 or args.warmup < 0:
        print("fastcnn bench: --threads, --repeats and --warmup must be >= 0", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "fastcnn bench: --plot needs matplotlib, which is not installed "
                "(pip install 'fastcnn[plot]'), or leave out --plot",
                file=sys.stderr,
            )
            return 2
    torch = None
    if args.torch:
        try:
            import torch
        except ImportError:
            print(
                "fastcnn bench: --torch: PyTorch is not installed; timing without it",
                file=sys.stderr,
            )
    repeats = args.repeats or (3 if args.quick else 10)
    warmup = args.warmup if not args.quick else min(args.warmup, 1)

    threads_before = fastcnn.get_num_threads()
    torch_threads_before = torch.get_num_threads() if torch is not None else None
    threads = args.threads or threads_before
    blas = BlasThreads()
    fastcnn.set_num_threads(threads)
    blas.set(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        meta = environment(threads, blas, torch)
        meta.update(repeats=repeats, warmup=warmup, quick=bool(args.quick), seed=args.seed)
        print_header(meta, warmup, repeats)
        print(HEAD)
        rows = []
        rng = np.random.default_rng(args.seed)
        for case in cases(args.quick):
            if case.op not in ops:
                continue
            row = run_case(case, rng, torch, warmup, repeats, 0.0 if args.quick else SETTLE_S)
            rows.append(row)
            print(format_row(row), flush=True)
    finally:
        fastcnn.set_num_threads(threads_before)
        blas.restore()
        if torch is not None:
            torch.set_num_threads(torch_threads_before)

    failed = [r for r in rows if r["status"] in ("mismatch", "error")]
    skipped = [r for r in rows if r["status"] == "skipped"]
    print(
        f"\n{len(rows) - len(failed) - len(skipped)} rows timed, {len(skipped)} skipped "
        f"(op not in this build), {len(failed)} aborted (mismatch or error)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        _plot(rows, args.plot, meta)
        print(f"wrote {args.plot}")
    return 1 if failed else 0
