"""Checking a row against the NumPy baseline, then timing each library on it."""

from __future__ import annotations

import statistics
import time
from types import ModuleType
from typing import Any

import numpy as np

from fastcnn.bench.cases import Case, F, Thunk

# float32 against float32, summed in different orders: relative to the largest reference value, so
# a long reduction (conv2d's weight gradient sums up to N*P*Q products) passes and a wrong element
# fails.
CHECK_RTOL = 1e-3
CHECK_ATOL_SCALE = 1e-4


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
