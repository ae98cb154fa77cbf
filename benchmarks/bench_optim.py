"""opt.step() on the parameters of the DESIGN.md Fashion-MNIST net (fastcnn.models.fmnist_bn, 421K
floats, 401K of them in one Linear weight): fastcnn.optim's fused kernels against the NumPy passes
they replaced (kept below as the baseline); then whole training steps with each.

    python benchmarks/bench_optim.py [--threads 1,2] [--repeats 300] [--warmup 20]

Each optimizer gets two copies of the parameters, with the same random gradients; one step of each
must leave the same parameters and state, bit for bit (the kernels keep NumPy's rounding order),
before anything is timed. Then blocks of A and B steps alternate in one process, so that a load
change on the machine hits both alike; the table gives the median µs per step. The NumPy baseline
is single-threaded whatever --threads says, as users got it.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import time

import numpy as np
from bench_kernels import git_commit

import fastcnn
from fastcnn import bench, models, optim

CONFIGS = {
    "SGD momentum 0.9 (bench_train)": (optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "SGD nesterov, weight decay": (
        optim.SGD,
        {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    ),
    "Adam": (optim.Adam, {"lr": 1e-3}),
    "AdamW amsgrad": (optim.AdamW, {"lr": 1e-3, "amsgrad": True}),
}


# --- the NumPy baseline: fastcnn.optim's update before the kernels -------------------------------


class _Workspace:
    """Scratch arrays for one update: slot k is a view of a flat float32 buffer that only grows."""

    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []

    def get(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        while len(self._buffers) <= slot:
            self._buffers.append(np.empty(0, np.float32))
        if self._buffers[slot].size < size:
            self._buffers[slot] = np.empty(size, np.float32)
        return self._buffers[slot][:size].reshape(shape)


def numpy_sgd_update(ws: _Workspace, p, group: dict, state: dict) -> None:
    lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
    weight_decay, nesterov = group["weight_decay"], group["nesterov"]
    d = p.grad
    if weight_decay != 0:
        d = np.multiply(p.data, weight_decay, out=ws.get(0, p.shape))
        d += p.grad
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = d.copy()
        else:
            buf *= momentum
            if dampening == 0:
                buf += d
            else:
                buf += np.multiply(d, 1.0 - dampening, out=ws.get(1, p.shape))
        if nesterov:
            d = np.add(
                d, np.multiply(buf, momentum, out=ws.get(1, p.shape)), out=ws.get(1, p.shape)
            )
        else:
            d = buf
    p.data -= np.multiply(d, lr, out=ws.get(2, p.shape))


def numpy_adam_update(ws: _Workspace, decoupled: bool, p, group: dict, state: dict) -> None:
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
    if not state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(p.data)
        state["exp_avg_sq"] = np.zeros_like(p.data)
    if amsgrad and "max_exp_avg_sq" not in state:
        state["max_exp_avg_sq"] = np.zeros_like(p.data)
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    g = p.grad
    if weight_decay != 0:
        if decoupled:
            p.data *= 1.0 - lr * weight_decay
        else:
            g = np.multiply(p.data, weight_decay, out=ws.get(0, p.shape))
            g += p.grad
    tmp = ws.get(1, p.shape)
    m += np.multiply(np.subtract(g, m, out=tmp), 1.0 - beta1, out=tmp)
    v *= beta2
    v += np.multiply(np.multiply(g, 1.0 - beta2, out=tmp), g, out=tmp)
    if amsgrad:
        v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
    step_size = lr / (1.0 - beta1**t)
    denom = np.sqrt(v, out=tmp)
    denom /= math.sqrt(1.0 - beta2**t)
    denom += eps
    update = np.multiply(m, -step_size, out=ws.get(0, p.shape))
    update /= denom
    p.data += update


def numpy_baseline(opt: optim.Optimizer) -> optim.Optimizer:
    """`opt` with its update swapped for the NumPy passes."""
    ws = _Workspace()
    if isinstance(opt, optim.SGD):
        opt._update = lambda p, group, state: numpy_sgd_update(ws, p, group, state)
    else:
        decoupled = isinstance(opt, optim.AdamW)
        opt._update = lambda p, group, state: numpy_adam_update(ws, decoupled, p, group, state)
    return opt


# --- timing --------------------------------------------------------------------------------------


def fmnist_params(seed: int) -> list:
    """fmnist_bn's parameters with random (never zero) gradients."""
    fastcnn.manual_seed(seed)
    params = list(models.fmnist_bn().parameters())
    rng = np.random.default_rng(seed)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape, dtype=np.float32) * 0.01
    return params


def same_step(a: optim.Optimizer, b: optim.Optimizer, pa: list, pb: list) -> None:
    a.step()
    b.step()
    for i, (x, y) in enumerate(zip(pa, pb)):
        if not np.array_equal(x.data, y.data):
            raise SystemExit(f"parameter {i} differs after one step: the kernel is not NumPy's")
        for name, value in a.state[x].items():
            if not np.array_equal(value, b.state[y][name]):
                raise SystemExit(f"state {name!r} of parameter {i} differs after one step")


def interleaved_us(a, b, repeats: int, warmup: int, block: int = 10) -> tuple[float, float]:
    """Median µs of a() and of b(), timed in alternating blocks of `block` calls, each block after
    two untimed calls. Blocks rather than single calls: in a training step the kernel threads have
    just run backward and are awake, and a NumPy step between two timed ones would put them to
    sleep (waking one costs more than the whole update of a small parameter)."""
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    perf = time.perf_counter
    for _ in range(max(1, repeats // block)):
        for fn, times in ((a, ta), (b, tb)):
            fn()
            fn()
            for _ in range(block):
                t0 = perf()
                fn()
                times.append(perf() - t0)
    return 1e6 * statistics.median(ta), 1e6 * statistics.median(tb)


class TrainStep:
    """One training step of fmnist_bn at batch 32 (forward, cross-entropy, backward, SGD momentum
    0.9 as in bench_train.py); `update_us` keeps how long each opt.step() inside it took."""

    def __init__(self, numpy_update: bool) -> None:
        fastcnn.manual_seed(0)
        self.net = models.fmnist_bn()
        self.loss_fn = fastcnn.nn.CrossEntropyLoss()
        self.opt = optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        if numpy_update:
            numpy_baseline(self.opt)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((32, 1, 28, 28), dtype=np.float32)
        self.labels = rng.integers(0, 10, 32)
        self.update_us: list[float] = []

    def __call__(self) -> None:
        self.net.train()
        self.opt.zero_grad()
        self.loss_fn(self.net(self.x), self.labels)
        self.net.backward(self.loss_fn.backward(), input_grad=False)
        t0 = time.perf_counter()
        self.opt.step()
        self.update_us.append(1e6 * (time.perf_counter() - t0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated kernel thread counts")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]

    print(f"commit: {git_commit()}   date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"cpu: {bench.cpu_model()}   fastcnn variant: {fastcnn._core.cpu_variant()}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| optimizer | threads | NumPy µs | fastcnn µs | speed-up |")
    print("|---|---|---|---|---|")
    for label, (cls, kwargs) in CONFIGS.items():
        pa, pb = fmnist_params(0), fmnist_params(0)
        fast, slow = cls(pa, **kwargs), numpy_baseline(cls(pb, **kwargs))
        for _ in range(3):  # the first step (buffers start) and later ones
            same_step(fast, slow, pa, pb)
        for n in threads:
            fastcnn.set_num_threads(n)
            t_slow, t_fast = interleaved_us(slow.step, fast.step, args.repeats, args.warmup)
            print(f"| {label} | {n} | {t_slow:.0f} | {t_fast:.0f} | {t_slow / t_fast:.2f}x |")
    print()
    print("Training step, batch 32, SGD momentum 0.9: median ms per step, and of that the median")
    print("µs of opt.step() (NumPy update vs fastcnn's kernels, blocks alternating)")
    print("| threads | NumPy step ms | fastcnn step ms | NumPy opt.step µs | fastcnn opt.step µs |")
    print("|---|---|---|---|---|")
    for n in threads:
        fastcnn.set_num_threads(n)
        slow, fast = TrainStep(numpy_update=True), TrainStep(numpy_update=False)
        t_slow, t_fast = interleaved_us(slow, fast, args.repeats // 3, args.warmup // 4)
        u_slow, u_fast = statistics.median(slow.update_us), statistics.median(fast.update_us)
        print(f"| {n} | {t_slow / 1e3:.2f} | {t_fast / 1e3:.2f} | {u_slow:.0f} | {u_fast:.0f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
