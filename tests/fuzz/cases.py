"""Random calls of every public fastcnn.functional function and every fastcnn._core function.

A case is reproducible from (seed, index). Arguments are drawn per parameter name: arrays of random
rank, shape, dtype and layout (non-contiguous, read-only, misaligned, byte-swapped, broadcast),
sizes that are zero, negative or huge, NaN and Inf values, and wrong Python types. Backward ops
often get a dy shaped like their forward's output, so the calls reach the kernels, not only the
argument checks. The contract checked: the call returns, or raises ValueError, TypeError or
MemoryError with a non-empty message, and never writes into the caller's arrays.
"""

from __future__ import annotations

import inspect
import re

import numpy as np

import fastcnn.functional as F
from fastcnn import _core

ALLOWED = (ValueError, TypeError, MemoryError)

ARRAY_NAMES = {
    "x",
    "weight",
    "bias",
    "dy",
    "y",
    "mask",
    "running_mean",
    "running_var",
    "mean",
    "invstd",
    "logits",
    "labels",
    "probabilities",
    "indices",
    "input",
    "target",
    "save_mean",
    "save_invstd",
    "param",
    "grad",
    "momentum_buffer",
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq",
}
# The optimizer updates write these arguments in place, by design.
OPTIMIZER_STATE = {"param", "momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
SHAPE_NAMES = {"x_shape", "weight_shape"}
INT_NAMES = {
    "stride",
    "padding",
    "dilation",
    "groups",
    "kernel_size",
    "output_size",
    "dim",
    "axis",
    "seed",
    "divisor_override",
    "n",
    "step",
}
FLOAT_NAMES = {
    "p",
    "eps",
    "momentum",
    "negative_slope",
    "label_smoothing",
    "grad_output",
    "lr",
    "dampening",
    "weight_decay",
    "beta1",
    "beta2",
}
BOOL_NAMES = {
    "training",
    "ceil_mode",
    "count_include_pad",
    "need_weight",
    "need_bias",
    "return_indices",
    "nesterov",
    "init_buffer",
    "decoupled",
}

HUGE_INTS = [
    2**31 - 1,
    2**31,
    2**32 + 1,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    2**100,
    -(2**63),
    -(2**31),
]
CHAOS = [
    None,
    "x",
    "same",
    b"\x00",
    [],
    [1, 2],
    [[1.0]],
    {},
    {"a": 1},
    1.5,
    float("nan"),
    float("inf"),
    -1,
    0,
    1j,
    object(),
    (1, 2, 3),
    (None, 1),
    True,
    np.float64(2.0),
    np.int8(3),
    slice(1),
]
DTYPES = [np.float32] * 6 + [
    np.float64,
    np.float16,
    np.bool_,
    np.int8,
    np.int64,
    np.uint8,
    np.uint64,
    np.int32,
    np.complex64,
    object,
    "U3",
    ">f4",
    ">i8",
]


def _core_params(fn) -> list[str]:
    # pybind11 signatures live in the first docstring line: name(a: T, b: T = d) -> R
    m = re.match(r"\w+\((.*)\) ->", (fn.__doc__ or "").strip().splitlines()[0])
    if not m or not m.group(1):
        return []
    return [p.split(":")[0].strip() for p in re.split(r",\s*(?=\w+:)", m.group(1))]


def targets() -> list[tuple[str, object, list[str]]]:
    """(label, callable, parameter names) for every function under test."""
    out = []
    modules = [("_core", _core)] + [
        (f"_core._variants[{v!r}]", mod) for v, mod in sorted(_core._variants.items())
    ]
    for label, mod in modules:
        for name in sorted(dir(mod)):
            fn = getattr(mod, name)
            if name.startswith("_") or not callable(fn) or inspect.ismodule(fn):
                continue
            out.append((f"{label}.{name}", fn, _core_params(fn)))
    for name in sorted(dir(F)):
        fn = getattr(F, name)
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != F.__name__:
            continue
        out.append((f"functional.{name}", fn, list(inspect.signature(fn).parameters)))
    return out


class Gen:
    """Draws one case's arguments from a shared pool of small sizes, so shapes often agree."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

        def size() -> int:
            return int(self.pick([0, 1, 1, 2, 2, 3, 3, 4, 5, 7, 9, 17]))

        self.N, self.C, self.H, self.W, self.K, self.R, self.S = (size() for _ in range(7))
        if rng.random() < 0.7:  # mostly nonempty planes, which reach the kernels
            self.H, self.W = max(self.H, 1) + 2, max(self.W, 1) + 2
            self.R, self.S = max(self.R, 1) % 4 or 1, max(self.S, 1) % 4 or 1
        self.chaos_rate = float(self.pick([0.0, 0.0, 0.05, 0.2, 0.5]))

    def pick(self, options: list):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def role_shape(self, name: str) -> tuple[int, ...]:
        N, C, H, W, K, R, S = self.N, self.C, self.H, self.W, self.K, self.R, self.S
        options = {
            "weight": [(K, C, R, S), (K, C), (C,), (K, 1, R, S)],
            "labels": [(N,), (N, H, W), ()],
            "bias": [(K,), (C,)],
            "running_mean": [(C,)],
            "running_var": [(C,)],
            "mean": [(C,)],
            "invstd": [(C,)],
            "save_mean": [(C,)],
            "save_invstd": [(C,)],
        }.get(name, [(N, C, H, W), (N, C), (N, K), (N, C, H), (N, K, H, W)])
        if self.chance(0.15):  # any rank 0..5, any small or zero sizes
            return tuple(int(d) for d in self.rng.integers(0, 5, size=int(self.rng.integers(0, 6))))
        return options[int(self.rng.integers(len(options)))]

    def values(self, shape, dtype) -> np.ndarray:
        return np.asarray(self._values(shape, dtype))

    def _values(self, shape, dtype):
        rng = self.rng
        dt = np.dtype(dtype)
        if dt.kind in "iub":
            hi = 2 if dt.kind == "b" else max(self.C, self.H * self.W, 2) + 1
            lo = 0 if dt.kind in "ub" else -2
            a = rng.integers(lo, hi, size=shape)
            if dt.kind == "i" and self.chance(0.05) and a.size:
                a.flat[0] = np.iinfo(dt).max
            return a.astype(dt)
        if dt.kind == "c":
            return (rng.standard_normal(shape) + 1j).astype(dt)
        if dt.kind == "O":
            return np.array(rng.standard_normal(shape), dtype=object)
        if dt.kind == "U":
            return np.full(shape, "ab", dtype=dt)
        a = np.asarray(rng.standard_normal(shape)) * float(self.pick([1.0, 1.0, 1e-3, 1e4, 1e30]))
        if self.chance(0.2) and a.size:
            specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38, 1e-45]
            idx = rng.integers(0, a.size, size=min(a.size, 3))
            a.flat[idx] = rng.choice(np.array(specials), size=idx.size)
        with np.errstate(all="ignore"):
            return a.astype(dt)

    def layout(self, a: np.ndarray) -> np.ndarray:
        rng = self.rng
        r = rng.random()
        if r < 0.55 or a.dtype.kind in "OU":
            return a
        if r < 0.65 and a.ndim:  # a strided view of a bigger array
            big = np.repeat(a, 2, axis=-1)
            return big[..., ::2]
        if r < 0.72:
            a = a.copy()
            a.flags.writeable = False
            return a
        if r < 0.80:  # misaligned: the data pointer is one byte past an aligned address
            buf = bytearray(a.nbytes + 1)
            m = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
            m[...] = a
            return m
        if r < 0.86 and a.ndim >= 2:
            return np.asfortranarray(a)
        if r < 0.92 and a.ndim:  # a stride-0 broadcast view (read-only)
            return np.broadcast_to(a[..., :1], a.shape)
        if r < 0.96:
            return a.tolist()
        return a[::-1] if a.ndim else a

    def array(self, name: str):
        if name in ("labels", "indices"):
            dtype = np.int64 if self.chance(0.7) else self.pick(DTYPES)
        elif name == "mask":
            dtype = np.uint8 if self.chance(0.7) else self.pick(DTYPES)
        else:
            dtype = np.float32 if self.chance(0.6) else self.pick(DTYPES)
        return self.layout(self.values(self.role_shape(name), dtype))

    def int_value(self, name: str):
        rng = self.rng
        r = rng.random()
        if name == "seed":
            return int(rng.integers(0, 2**32)) if r < 0.8 else self.pick(HUGE_INTS + [-1, None])
        if name in ("dim", "axis"):
            return int(rng.integers(-5, 5)) if r < 0.9 else self.pick(HUGE_INTS + [None])
        if name == "divisor_override" and r < 0.5:
            return None
        if name == "padding" and r < 0.1:
            return str(self.pick(["same", "valid", "full"]))
        if name == "n":  # thread count: bounded, the harness restores it after the call
            return int(rng.integers(-1, 5))
        lo = 0 if name in ("padding",) else 1

        def small() -> int:
            return int(rng.integers(lo - 1 if r > 0.8 else lo, 5))

        if r < 0.5:
            return small()
        if r < 0.8:
            return (small(), small())
        if r < 0.9:
            return int(self.pick(HUGE_INTS))
        return self.pick(
            [
                (small(), int(self.pick(HUGE_INTS))),
                [small(), small()],
                (small(),),
                (small(), small(), small()),
                np.int64(small()),
                2.0,
            ]
        )

    def shape_value(self):
        N, C, H, W, K, R, S = self.N, self.C, self.H, self.W, self.K, self.R, self.S
        opts = [
            (N, C, H, W),
            (K, C, R, S),
            (N, C, H),
            (N, C, H, -1),
            (N, C, int(self.pick(HUGE_INTS)), W),
            [N, C, H, W],
            (N, C, H, 1.5),
        ]
        return opts[int(self.rng.integers(len(opts)))]

    def float_value(self, name: str):
        r = self.rng.random()
        if r < 0.7:
            return float(self.pick([0.0, 0.1, 0.5, 0.9, 1e-5, 1.0]))
        return float(self.pick([-1.0, 1.0 + 1e-7, 2.0, np.nan, np.inf, -np.inf, 1e300, -0.0]))

    def argument(self, name: str):
        if self.chance(self.chaos_rate):
            v = CHAOS[int(self.rng.integers(len(CHAOS)))]
            return self.array(name) if v == "same" else v
        if name in ARRAY_NAMES:
            if name in ("bias", "indices", "y", "mask", "save_mean", "save_invstd") and self.chance(
                0.2
            ):
                return None
            return self.array(name)
        if name in SHAPE_NAMES:
            return self.shape_value()
        if name in INT_NAMES:
            return self.int_value(name)
        if name in FLOAT_NAMES:
            return self.float_value(name)
        if name in BOOL_NAMES:
            return bool(self.chance(0.5)) if self.chance(0.95) else self.pick([None, 1, "no"])
        if name == "output_mask":
            return tuple(bool(b) for b in self.rng.integers(0, 2, size=3))
        return self.array(name)


def valid_arguments(name: str, params: list[str], g: Gen) -> dict:
    """Arguments that pass every check for op `name` (as far as the name tells), before mutation."""
    rng = g.rng
    groups = int(g.pick([1, 1, 1, 2, 3]))
    N = max(g.N, int(rng.integers(0, 2)))  # batch 0 now and then
    C, K = groups * max(g.C, 1), groups * max(g.K, 1)
    R, S = max(g.R, 1), max(g.S, 1)
    stride, dil = int(g.pick([1, 1, 2, 3])), int(g.pick([1, 1, 2]))
    pad = int(rng.integers(0, max(R, S) // 2 + 1))
    H, W = dil * (R - 1) + 1 + int(rng.integers(0, 6)), dil * (S - 1) + 1 + int(rng.integers(0, 6))

    def f32(*shape: int) -> np.ndarray:
        return g.values(shape, np.float32)

    if "batch" in name:
        x = f32(N, C, H, W)
        var = np.abs(f32(C)) + np.float32(0.5)
        cand = {
            "x": x,
            "weight": f32(C),
            "bias": f32(C),
            "running_mean": f32(C),
            "running_var": var,
            "mean": f32(C),
            "invstd": var,
            "save_mean": f32(C),
            "save_invstd": var,
            "dy": f32(N, C, H, W),
        }
    elif "linear" in name:
        cand = {"x": f32(N, C), "weight": f32(K, C), "bias": f32(K), "dy": f32(N, K)}
    elif "conv2d" in name:
        cand = {
            "x": f32(N, C, H, W),
            "weight": f32(K, C // groups, R, S),
            "bias": f32(K),
            "x_shape": (N, C, H, W),
            "weight_shape": (K, C // groups, R, S),
            "dy": f32(
                N,
                K,
                (H + 2 * pad - dil * (R - 1) - 1) // stride + 1,
                (W + 2 * pad - dil * (S - 1) - 1) // stride + 1,
            ),
        }
    elif "pool" in name:
        cand = {"x": f32(N, C, H, W), "kernel_size": (R, S), "output_size": (g.R, g.S)}
        pad = min(pad, R // 2, S // 2)
    elif "xent" in name or "cross_entropy" in name:
        logits = f32(N, C)
        labels = rng.integers(0, C, size=N)
        if g.chance(0.2) and N:
            labels[0] = int(g.pick([-1, -100, C, 2**40]))
        cand = {"logits": logits, "probabilities": np.abs(logits), "labels": labels}
    elif "nll_loss" in name:
        target = rng.integers(0, C, size=N)
        if g.chance(0.3) and N:
            target[0] = int(g.pick([-1, -100, C, 2**40]))
        cand = {
            "input": f32(N, C),
            "target": target,
            "weight": np.abs(f32(C)),
            "grad": f32(N),
            "grad_output": float(g.pick([1.0, 0.5])),
            "ignore_index": int(g.pick([-100, 0, -1])),
        }
    elif "dropout" in name:
        cand = {
            "x": f32(N, C, H),
            "dy": f32(N, C, H),
            "p": float(g.pick([0.0, 0.3, 0.99])),
            "mask": rng.integers(0, 2, size=(N, C, H)).astype(np.uint8),
            "seed": 3,
        }
    elif name in ("sgd_step", "adam_step"):
        shape = g.role_shape("x")
        cand = {p: f32(*shape) for p in OPTIMIZER_STATE | {"grad"}}
        cand["exp_avg_sq"] = np.abs(cand["exp_avg_sq"])
        cand["step"] = int(rng.integers(1, 5))
    else:
        shape = g.role_shape("x")
        cand = {
            "x": f32(*shape),
            "y": f32(*shape),
            "dy": f32(*shape),
            "input": f32(*shape),
            "target": f32(*shape),
            "dim": int(rng.integers(-len(shape), len(shape) or 1)),
        }
    common = {"stride": stride, "padding": pad, "dilation": dil, "groups": groups}
    out = {}
    for p in params:
        if p in cand:
            out[p] = cand[p]
        elif p in common and ("conv2d" in name or ("pool" in name and p != "groups")):
            out[p] = common[p] if not ("avg" in name and p == "dilation") else 1
        else:
            out[p] = g.argument(p) if g.chance(0.5) else None
            if out[p] is None:
                del out[p]
    return out


def _forward_of(label: str, table: dict[str, object]):
    """The forward op whose output shape a backward op's dy takes, if there is one."""
    base = re.sub(r"_backward(_\w+)?$", "", label)
    for cand in (base + "_forward", base, base.replace("batchnorm2d", "batchnorm2d_forward_train")):
        if cand in table and cand != label:
            return table[cand]
    return None


def make_case(seed: int, index: int, all_targets, table):
    """The (label, fn, args dict) of case `index` under `seed`; reproducible."""
    rng = np.random.default_rng([seed, index])
    label, fn, params = all_targets[int(rng.integers(len(all_targets)))]
    g = Gen(rng)
    if rng.random() < 0.5:
        kwargs = {p: g.argument(p) for p in params}
    else:
        kwargs = valid_arguments(label.split(".")[-1], params, g)
        for p in list(kwargs):  # then a few arguments get a new layout, dtype or value
            if isinstance(kwargs[p], np.ndarray) and g.chance(0.15):
                kwargs[p] = g.layout(kwargs[p])
        if kwargs and rng.random() < 0.4:
            p = g.pick(list(kwargs))
            kwargs[p] = g.argument(p)
    # Drop trailing optional arguments now and then, so defaults are exercised too.
    if params and rng.random() < 0.3:
        for p in params[int(rng.integers(1, len(params) + 1)) :]:
            kwargs.pop(p, None)
    if "dy" in kwargs and rng.random() < 0.6:
        fwd = _forward_of(label, table)
        if fwd is not None:
            fwd_params = table.get(("params", fwd), [])
            fwd_kwargs = {k: v for k, v in kwargs.items() if k in fwd_params}
            try:
                full = fwd(**fwd_kwargs)
                out = full[0] if isinstance(full, tuple) else full
                if isinstance(out, np.ndarray):
                    kwargs["dy"] = g.layout(g.values(out.shape, np.float32))
                if "indices" in kwargs and isinstance(full, tuple) and len(full) == 2:
                    idx = np.array(full[1])
                    if idx.size and rng.random() < 0.3:  # an index outside the input plane
                        idx.flat[int(rng.integers(idx.size))] = g.pick([-1, 2**40, g.H * g.W])
                    kwargs["indices"] = idx
            except ALLOWED:
                pass
    return label, fn, kwargs


def target_table(all_targets):
    table = {}
    for label, fn, params in all_targets:
        table[label] = fn
        table[("params", fn)] = params
    return table


def describe(kwargs: dict) -> str:
    def one(v):
        if isinstance(v, np.ndarray):
            flags = "".join(
                c
                for c, f in (
                    ("C", v.flags.c_contiguous),
                    ("W", v.flags.writeable),
                    ("A", v.flags.aligned),
                )
                if f
            )
            return f"array({v.dtype}, {v.shape}, flags={flags})"
        if isinstance(v, list) and len(repr(v)) > 60:
            return f"list(len={len(v)})"
        return repr(v)

    return ", ".join(f"{k}={one(v)}" for k, v in kwargs.items())


def snapshot(kwargs: dict) -> dict:
    return {
        k: v.copy() for k, v in kwargs.items() if isinstance(v, np.ndarray) and v.dtype.kind != "O"
    }


def check_call(label: str, fn, kwargs: dict) -> str | None:
    """Runs one case; returns a problem description, or None when the contract held."""
    before = snapshot(kwargs)
    # Process-wide settings a case may change (set_num_threads, host_pool_set_limit): restored
    # after every call, so that no later case or test runs under a fuzzed setting.
    threads = _core.get_num_threads()
    pool_limit = _core.host_pool_stats()["limit_bytes"]
    try:
        fn(**kwargs)
    except ALLOWED as e:
        if not str(e).strip():
            return f"{type(e).__name__} with an empty message"
    except RuntimeError as e:
        # A GPU op reports a missing or failing device as RuntimeError, not as a bad argument.
        if "cuda" not in label or not str(e).strip():
            return f"{type(e).__name__} with an empty message"
    except Exception as e:  # noqa: BLE001 - the point is to report any other exception type
        return f"{type(e).__name__}: {e}"
    finally:
        _core.set_num_threads(threads)
        _core.host_pool_set_limit(pool_limit)
    # batch norm updates the running statistics in place, by design, and so do the optimizers
    # their parameter and state.
    writes_ok = {"running_mean", "running_var"} if "batch" in label else set()
    if label.endswith(("sgd_step", "adam_step")):
        writes_ok = OPTIMIZER_STATE
    for k, old in before.items():
        if k not in writes_ok and not np.array_equal(
            kwargs[k], old, equal_nan=old.dtype.kind in "fc"
        ):
            return f"wrote into argument {k}"
    return None
