"""Python overhead of a layer call above its kernel, on tiny arrays (the kernel costs ~nothing).

    python benchmarks/bench_overhead.py [--repeats 20000] [--threads 1]

For each op, three medians (µs per call, time.perf_counter around single calls): the `_core` kernel
called directly with normalized arguments, the `fastcnn.functional` wrapper, and the `fastcnn.nn`
module in eval mode (forward only) and in training mode (forward + backward, minus the two `_core`
calls it makes). "F over core" and "module over core" are what the Python layers add; DESIGN.md
budgets "a few µs" per layer call. Every result is checked against the `_core` result first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def median_us(fn, repeats: int) -> float:
    for _ in range(min(1000, repeats // 10)):
        fn()
    times = []
    perf = time.perf_counter
    for _ in range(repeats):
        t0 = perf()
        fn()
        times.append(perf() - t0)
    return 1e6 * statistics.median(times)


def cases():
    import fastcnn
    from fastcnn import _core, nn
    from fastcnn import functional as F

    rng = np.random.default_rng(0)
    x4 = rng.standard_normal((1, 4, 4, 4), dtype=np.float32)
    x2 = rng.standard_normal((1, 8), dtype=np.float32)
    fastcnn.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1).eval()
    lin = nn.Linear(8, 4).eval()
    bn = nn.BatchNorm2d(4).eval()
    bn.running_mean[...] = rng.standard_normal(4)
    bn.running_var[...] = rng.random(4) + 0.5
    pool = nn.MaxPool2d(2).eval()
    relu = nn.ReLU().eval()
    flat = nn.Flatten().eval()
    cw, cb = conv.weight.data, conv.bias.data
    lw, lb = lin.weight.data, lin.bias.data
    bw, bb, rm, rv = bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var
    return [
        (
            "relu (1,4,4,4)",
            lambda: _core.relu_forward(x4),
            lambda: F.relu(x4),
            lambda: relu(x4),
        ),
        (
            "conv2d 4->4 3x3 p1 (1,4,4,4)",
            lambda: _core.conv2d_forward(x4, cw, cb, (1, 1), (1, 1, 1, 1), (1, 1), 1),
            lambda: F.conv2d(x4, cw, cb, padding=1),
            lambda: conv(x4),
        ),
        (
            "batch_norm eval (1,4,4,4)",
            lambda: _core.batchnorm2d_forward_eval(x4, bw, bb, rm, rv, 1e-5),
            lambda: F.batch_norm(x4, rm, rv, bw, bb, training=False),
            lambda: bn(x4),
        ),
        (
            "max_pool2d 2 (1,4,4,4)",
            lambda: _core.max_pool2d_forward(x4, (2, 2), (2, 2), (0, 0), (1, 1), False),
            lambda: F.max_pool2d(x4, 2),
            lambda: pool(x4),
        ),
        (
            "linear 8->4 (1,8)",
            lambda: _core.linear_forward(x2, lw, lb),
            lambda: F.linear(x2, lw, lb),
            lambda: lin(x2),
        ),
        ("flatten (1,4,4,4)", lambda: x4.reshape(1, 64), None, lambda: flat(x4)),
    ]


def check(core, fn) -> None:
    want, got = core(), fn()
    want = want[0] if isinstance(want, tuple) else want
    if not np.array_equal(np.asarray(got), np.asarray(want)):
        raise SystemExit("MISMATCH: a wrapper's result differs from the kernel's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import fastcnn

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_kernels import git_commit

    fastcnn.set_num_threads(args.threads)
    print(
        f"commit: {git_commit()}   variant: {fastcnn._core.cpu_variant()}   threads: {args.threads}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}   repeats: {args.repeats} per median")
    head = f"| {'op':<30} | core µs | F µs | module µs | F over core | module over core |"
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for name, core, func, module in cases():
        for fn in (func, module):
            if fn is not None:
                check(core, fn)
        c = median_us(core, args.repeats)
        f = median_us(func, args.repeats) if func is not None else None
        m = median_us(module, args.repeats)
        fs = f"{f:.2f}" if f is not None else "-"
        fo = f"{f - c:+.2f}" if f is not None else "-"
        print(f"| {name:<30} | {c:>7.2f} | {fs:>4} | {m:>9.2f} | {fo:>11} | {m - c:>+16.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
