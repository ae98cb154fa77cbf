"""Resident-memory growth over many training steps and error paths (a script, not a test).

    python benchmarks/leak_check.py [--steps 20000]
    python benchmarks/leak_check.py --net [--steps 20000]

The default mode runs forward and backward of every kernel family on small arrays, plus calls that
raise; --net trains the DESIGN.md Fashion-MNIST network (fastcnn.models.fmnist_bn) at batch 8 with
SGD momentum, and also tracks Python-side allocations with tracemalloc.

Each mode runs --steps iterations and reports the process's resident set size (RSS) after a
warm-up and at the end. A leak of even one small array per step shows up as megabytes; the run
fails when RSS grows by more than --limit-mb.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

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


def net_stepper(rng: np.random.Generator):
    """One SGD step of fmnist-bn on a fresh random batch of 8 per call."""
    from fastcnn import models, nn, optim

    fastcnn.manual_seed(0)
    net = models.fmnist_bn()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step(_rng, _arrays) -> None:
        x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
        loss_fn(net(x), rng.integers(0, 10, size=8))
        net.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        opt.zero_grad()

    return train_step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--limit-mb", type=float, default=8.0)
    ap.add_argument("--net", action="store_true", help="train fmnist-bn instead of single ops")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal((4, 3, 12, 12)).astype(np.float32),
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
        "wl": rng.standard_normal((10, 8 * 6 * 6)).astype(np.float32),
        "labels": rng.integers(0, 10, size=4),
    }
    run = net_stepper(rng) if args.net else step
    for _ in range(args.warmup):
        run(rng, arrays)
    # Steps after tracemalloc starts replace every live array once, so the baseline counts the
    # steady-state working set, not zero.
    tracemalloc.start()
    for _ in range(10):
        run(rng, arrays)
    python_start = tracemalloc.get_traced_memory()[0]
    start, t0 = rss_mb(), time.perf_counter()
    for _ in range(args.steps):
        run(rng, arrays)
    end, elapsed = rss_mb(), time.perf_counter() - t0
    python_growth = tracemalloc.get_traced_memory()[0] - python_start
    tracemalloc.stop()
    print(
        f"{'fmnist-bn' if args.net else 'kernel'} {args.steps} steps in {elapsed:.1f} s: RSS "
        f"{start:.1f} MB after {args.warmup} warm-up steps, {end:.1f} MB at the end "
        f"({end - start:+.2f} MB, {100 * (end - start) / start:+.2f}%); Python heap "
        f"{python_growth / 1024:+.1f} KiB (tracemalloc)"
    )
    return 0 if end - start <= args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
