"""End-to-end speed of the DESIGN.md Fashion-MNIST net (fastcnn.models.fmnist_bn) against PyTorch
and NumPy.

    python benchmarks/bench_train.py [--threads 2] [--repeats 30] [--warmup 5] [--no-rss]
                                     [--json PATH] [--fuse] [--libs fastcnn,torch,...]

One training step is forward + softmax cross-entropy + backward + SGD (momentum 0.9) update, in
training mode (batch statistics). Rows, for each library (fastcnn, torch NCHW, torch channels_last,
NumPy from fastcnn.numpy_ops):
  train images/s at batch 128 and 32: batch / median step time, after warm-up steps;
  inference: median latency of one image, and images/s at batch 256 (eval mode, torch under
  inference_mode). With --fuse, inference runs on the model with each batch norm folded into the
  convolution before it: fastcnn.nn.fuse_conv_bn for fastcnn, torch.ao.quantization.fuse_modules
  (eval mode: fuse_conv_bn_eval) for torch; NumPy is unchanged.
Before timing, one step of each library starts from the same weights and batch as torch and must
give the same loss, gradients and updated weights (float32 summed in another order: rtol 1e-3 plus
1e-4 of the largest element). Every library runs with the same thread count (NumPy's BLAS included;
NumPy's elementwise code is single-threaded, as users get it).

Peak RSS: each library trains (batch 128, the warm-up plus repeats steps) in a fresh child process
that imports only what it needs; the row gives the child's VmHWM (peak resident set of the whole
process: interpreter, NumPy, the library and its buffers; ru_maxrss is not used because a child
started by fork + exec inherits the parent's peak) and, in brackets, that peak minus the RSS
measured after import and model construction, i.e. what training itself added.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FUSE = False  # --fuse: inference on conv+batch-norm folded models
LR, MOMENTUM = 0.01, 0.9
LIBS = ("fastcnn", "torch", "torch_cl", "numpy")
LABELS = {
    "fastcnn": "fastcnn",
    "torch": "torch NCHW",
    "torch_cl": "torch channels_last",
    "numpy": "NumPy",
}


def batches(n: int, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed + n)
    return [
        (
            rng.standard_normal((n, 1, 28, 28), dtype=np.float32),
            rng.integers(0, 10, n).astype(np.int64),
        )
        for _ in range(count)
    ]


# --- fastcnn -------------------------------------------------------------------------------------


class FastcnnRunner:
    def __init__(self, state: dict | None = None) -> None:
        import fastcnn
        from fastcnn import models

        fastcnn.manual_seed(0)
        self.net = models.fmnist_bn()
        if state is not None:
            self.net.load_state_dict(state)
        self.loss_fn = fastcnn.nn.CrossEntropyLoss()
        self.opt = fastcnn.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)

    def state_dict(self) -> dict:
        return self.net.state_dict()

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        self.net.train()
        self.opt.zero_grad()
        loss = self.loss_fn(self.net(x), labels)
        self.net.backward(self.loss_fn.backward(), input_grad=False)
        self.opt.step()
        return loss

    def grads(self) -> dict[str, np.ndarray]:
        return {k: p.grad.copy() for k, p in self.net.named_parameters()}

    def params(self) -> dict[str, np.ndarray]:
        return {k: p.data.copy() for k, p in self.net.named_parameters()}

    def eval_mode(self) -> None:
        import fastcnn

        self.net.eval()
        self.infer_net = fastcnn.nn.fuse_conv_bn(self.net) if FUSE else self.net

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_net(x)


# --- torch ---------------------------------------------------------------------------------------


class TorchRunner:
    def __init__(self, state: dict, channels_last: bool = False) -> None:
        import torch
        from torch import nn

        self.torch = torch
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
        self.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=self.fmt)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)

    def _input(self, x: np.ndarray):
        return self.torch.from_numpy(x).contiguous(memory_format=self.fmt)

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        self.net.train()
        self.opt.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.net(self._input(x)), self.torch.from_numpy(labels))
        loss.backward()
        self.opt.step()
        return loss.item()

    def grads(self) -> dict[str, np.ndarray]:
        return {k: p.grad.detach().numpy().copy() for k, p in self.net.named_parameters()}

    def params(self) -> dict[str, np.ndarray]:
        return {k: p.detach().numpy().copy() for k, p in self.net.named_parameters()}

    def eval_mode(self) -> None:
        self.net.eval()
        self.infer_net = self.net
        if FUSE:
            from torch.ao.quantization import fuse_modules

            self.infer_net = fuse_modules(self.net, [["0", "1"], ["4", "5"]], inplace=False)

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.infer_net(self._input(x)).numpy()


# --- NumPy ---------------------------------------------------------------------------------------


class NumpyRunner:
    """The same net from fastcnn.numpy_ops, with its backward and SGD written out by hand."""

    def __init__(self, state: dict) -> None:
        from fastcnn import numpy_ops

        self.ops = numpy_ops
        self.p = {k: np.array(v, np.float32) for k, v in state.items() if "num_batches" not in k}
        self.names = [k for k in state if k.endswith(("weight", "bias"))]
        self.g = {k: np.zeros_like(self.p[k]) for k in self.names}
        self.v = {k: np.zeros_like(self.p[k]) for k in self.names}
        self.training = True
        self.steps = 0

    def _forward(self, x: np.ndarray, keep: bool):
        o, p, t = self.ops, self.p, self.training
        saved = []
        h = x
        for conv, bn in (("0", "1"), ("4", "5")):
            c = o.conv2d(h, p[f"{conv}.weight"], p[f"{conv}.bias"], padding=1)
            b = o.batch_norm(
                c,
                p[f"{bn}.running_mean"],
                p[f"{bn}.running_var"],
                p[f"{bn}.weight"],
                p[f"{bn}.bias"],
                training=t,
            )
            r = o.relu(b)
            m, idx = o.max_pool2d(r, 2, return_indices=True)
            saved.append((h, c, r, idx))
            h = m
        flat = h.reshape(len(h), -1)
        z = o.linear(flat, p["9.weight"], p["9.bias"])
        a = o.relu(z)
        logits = o.linear(a, p["11.weight"], p["11.bias"])
        return logits, (saved, h.shape, flat, z, a) if keep else None

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        o, p, g = self.ops, self.p, self.g
        self.training = True
        logits, (saved, pooled_shape, flat, z, a) = self._forward(x, True)
        loss = o.cross_entropy(logits, labels)
        d = o.cross_entropy_backward(logits, labels)
        d, g["11.weight"], g["11.bias"] = o.linear_backward(d, a, p["11.weight"])
        d = o.relu_backward(d, z)
        d, g["9.weight"], g["9.bias"] = o.linear_backward(d, flat, p["9.weight"])
        d = d.reshape(pooled_shape)
        for (conv, bn), (h, c, r, idx), first in zip(
            (("4", "5"), ("0", "1")), reversed(saved), (False, True)
        ):
            d = o.max_pool2d_backward(d, r, 2, indices=idx)
            d = o.relu_backward(d, r)
            d, g[f"{bn}.weight"], g[f"{bn}.bias"] = o.batch_norm_backward(d, c, p[f"{bn}.weight"])
            d, g[f"{conv}.weight"], g[f"{conv}.bias"] = o.conv2d_backward(
                d, h, p[f"{conv}.weight"], padding=1, output_mask=(not first, True, True)
            )
        for k in self.names:  # torch's SGD: v = momentum * v + g (v = g at the first step)
            v = self.v[k]
            if self.steps:
                v *= np.float32(MOMENTUM)
                v += g[k]
            else:
                v[...] = g[k]
            p[k] -= np.float32(LR) * v
        self.steps += 1
        return loss

    def grads(self) -> dict[str, np.ndarray]:
        return {k: self.g[k].copy() for k in self.names}

    def params(self) -> dict[str, np.ndarray]:
        return {k: self.p[k].copy() for k in self.names}

    def eval_mode(self) -> None:
        self.training = False

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x, False)[0]


def make_runner(lib: str, state: dict | None):
    if lib == "fastcnn":
        return FastcnnRunner(state)
    if lib in ("torch", "torch_cl"):
        return TorchRunner(state, channels_last=lib == "torch_cl")
    return NumpyRunner(state)


# --- checks and timing ---------------------------------------------------------------------------


# A convolution bias followed by batch norm has a true gradient of exactly 0: what each library
# returns is float32 rounding noise (~1e-8), so agreement is checked to this absolute floor.
GRAD_FLOOR = 1e-6


def mismatch(name: str, got: np.ndarray, want: np.ndarray) -> str | None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    tol = 1e-3 * np.abs(want) + max(1e-4 * float(np.abs(want).max(initial=0.0)), GRAD_FLOOR)
    err = np.abs(got - want)
    if got.shape != want.shape or not np.all(err <= tol):
        i = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else ()
        return f"{name}: got {got[i]!r} want {want[i]!r} at {i}"
    return None


def check_against_torch(state: dict, libs: list[str]) -> list[str]:
    """One step from the same weights and batch as torch NCHW: loss, gradients, new weights."""
    x, labels = batches(32, 1, seed=99)[0]
    ref = TorchRunner(state)
    want_loss = ref.step(x, labels)
    want_g, want_p = ref.grads(), ref.params()
    problems = []
    for lib in libs:
        if lib == "torch":
            continue
        r = make_runner(lib, state)
        loss = r.step(x, labels)
        found = [mismatch("loss", np.float64(loss), np.float64(want_loss))]
        found += [mismatch(f"grad {k}", v, want_g[k]) for k, v in r.grads().items()]
        found += [mismatch(f"param {k}", v, want_p[k]) for k, v in r.params().items()]
        problems += [f"{lib}: {m}" for m in found if m]
    return problems


def median_seconds(fn, args_list, warmup: int, repeats: int) -> float:
    # The previous library's OpenMP/OpenBLAS workers spin for up to ~0.1 s after their last call
    # and hold the cores; start once they sleep (as fastcnn.bench does).
    time.sleep(0.25)
    for i in range(warmup):
        fn(*args_list[i % len(args_list)])
    times = []
    for i in range(repeats):
        a = args_list[i % len(args_list)]
        t0 = time.perf_counter()
        fn(*a)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_lib(lib: str, state: dict, warmup: int, repeats: int) -> dict:
    row = {}
    for n in (128, 32):
        r = make_runner(lib, state)
        row[f"train{n}"] = n / median_seconds(r.step, batches(n, 4), warmup, repeats)
    r = make_runner(lib, state)
    r.eval_mode()
    one = [(x[:1],) for x, _ in batches(1, 8)]
    row["infer1_ms"] = 1e3 * median_seconds(r.infer, one, warmup * 10, repeats * 10)
    big = [(x,) for x, _ in batches(256, 2)]
    row["infer256"] = 256 / median_seconds(r.infer, big, warmup, repeats)
    return row


# --- peak RSS in a child process -----------------------------------------------------------------


def proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_child(lib: str, threads: int, steps: int) -> None:
    set_threads(threads, [lib])
    state = FastcnnRunner().state_dict() if lib == "fastcnn" else np.load(os.environ["STATE"])
    r = make_runner(lib, dict(state))
    data = batches(128, 4)
    base = proc_status_mb("VmRSS")
    for i in range(steps):
        r.step(*data[i % len(data)])
    print(json.dumps({"peak_mb": proc_status_mb("VmHWM"), "base_mb": base}))


def measure_rss(lib: str, threads: int, steps: int, state_path: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            lib,
            "--threads",
            str(threads),
            "--repeats",
            str(steps),
        ],
        env={**os.environ, "STATE": state_path},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- main ----------------------------------------------------------------------------------------


def set_threads(n: int, libs: list[str]) -> str:
    notes = []
    if "fastcnn" in libs:
        import fastcnn

        fastcnn.set_num_threads(n)
    if any(lib.startswith("torch") for lib in libs):
        import torch

        torch.set_num_threads(n)
        notes.append(f"torch {torch.__version__}")
    if "numpy" in libs:
        from fastcnn.bench import BlasThreads

        blas = BlasThreads()
        blas.set(n)
        notes.append(f"NumPy {np.__version__} ({blas.describe()})")
    return "; ".join(notes)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--libs", default=",".join(LIBS), help=f"subset of {','.join(LIBS)}")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument(
        "--fuse", action="store_true", help="inference on conv+batch-norm folded models"
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.threads, args.warmup + args.repeats)
        return 0
    global FUSE
    FUSE = args.fuse
    libs = [s for s in args.libs.split(",") if s]
    if any(lib not in LIBS for lib in libs):
        parser.error(f"--libs: expected names from {LIBS}, got {args.libs}")
    import fastcnn

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_kernels import git_commit

    notes = set_threads(args.threads, [*libs, "fastcnn", "torch"])
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(
        f"commit: {git_commit()}   cpu: {cpu_model()}   fastcnn variant: "
        f"{fastcnn._core.cpu_variant()}"
    )
    print(f"threads: {args.threads} for every library; {notes}")
    if FUSE:
        print("inference: batch norms folded into the convolutions (--fuse)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    state = FastcnnRunner().state_dict()
    problems = check_against_torch(state, libs)
    if problems:
        print("MISMATCH against torch, not timing:\n  " + "\n  ".join(problems))
        return 1
    print("checked: one step of each library matches torch (loss, gradients, updated weights)")
    rows = {lib: time_lib(lib, state, args.warmup, args.repeats) for lib in libs}
    if not args.no_rss:
        state_path = f"/tmp/bench_train_state_{os.getpid()}.npz"
        np.savez(state_path, **state)
        try:
            for lib in libs:
                rows[lib].update(
                    measure_rss(lib, args.threads, args.warmup + args.repeats, state_path)
                )
        finally:
            os.unlink(state_path)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    head = (
        f"| {'library':<20} | train img/s b128 | train img/s b32 | infer b1 ms "
        f"| infer img/s b256 | peak RSS MB (training added) |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for lib, r in rows.items():
        rss = f"{r['peak_mb']:.0f} ({r['peak_mb'] - r['base_mb']:+.0f})" if "peak_mb" in r else "-"
        print(
            f"| {LABELS[lib]:<20} | {r['train128']:>16,.0f} | {r['train32']:>15,.0f} "
            f"| {r['infer1_ms']:>11.3f} | {r['infer256']:>16,.0f} | {rss:>28} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
