"""Resident-memory growth over many training steps and error paths (a script, not a test).

    python benchmarks/leak_check.py [--steps 20000]

Runs forward and backward of every kernel family on small arrays, plus calls that raise, for
--steps iterations, and reports the process's resident set size (RSS) after a warm-up and at the end.
A leak of even one small array per step shows up as megabytes; the run fails when RSS grows by more
than --limit-mb.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import fastcnn
from fastcnn import functional as F


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def step(rng: np.random.Generator, arrays: dict) -> None:
    x, w, b, labels = arrays["x"], arrays["w"], arrays["b"], arrays["labels"]
    y = F.conv2d(x, w, b, padding=1)
    dy = np.ones_like(y)
    F.conv2d_backward(dy, x, w, padding=1)
    h, mean, invstd = F.batch_norm_train(y)
    F.batch_norm_backward(dy, y, save_mean=mean, save_invstd=invstd)
    r = F.relu(h)
    F.relu_backward(dy, h)
    p, idx = F.max_pool2d(r, 2, return_indices=True)
    F.max_pool2d_backward(np.ones_like(p), r, 2, indices=idx)
    F.avg_pool2d_backward(np.ones_like(p), r, 2)
    d = F.dropout(p, 0.5, seed=int(rng.integers(2**31)))
    flat = d.reshape(d.shape[0], -1)
    logits = F.linear(flat, arrays["wl"])
    F.linear_backward(np.ones_like(logits), flat, arrays["wl"])
    F.cross_entropy(logits, labels)
    F.cross_entropy_backward(logits, labels)
    # Error paths: the exception objects and any temporaries must be freed too.
    for bad in (
        lambda: F.conv2d(x, w[:, :1]),
        lambda: F.cross_entropy(logits, labels + 100),
        lambda: fastcnn._core.relu_forward("x"),
    ):
        try:
            bad()
        except (ValueError, TypeError):
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--limit-mb", type=float, default=8.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal((4, 3, 12, 12)).astype(np.float32),
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
        "wl": rng.standard_normal((10, 8 * 6 * 6)).astype(np.float32),
        "labels": rng.integers(0, 10, size=4),
    }
    for _ in range(args.warmup):
        step(rng, arrays)
    start, t0 = rss_mb(), time.perf_counter()
    for _ in range(args.steps):
        step(rng, arrays)
    end, elapsed = rss_mb(), time.perf_counter() - t0
    print(
        f"{args.steps} steps in {elapsed:.1f} s: RSS {start:.1f} MB after {args.warmup} warm-up "
        f"steps, {end:.1f} MB at the end ({end - start:+.2f} MB)"
    )
    return 0 if end - start <= args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
