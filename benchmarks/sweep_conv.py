"""Random conv layers, fastcnn against PyTorch: the spread that the fixed shapes of bench_kernels.py
cannot show.

    python benchmarks/sweep_conv.py --seed 1 --layers 40 --threads 2 [--json PATH]

Draws `--layers` layers of the kinds CNNs use (dense, grouped, depthwise; 1x1 to 7x7 kernels;
stride 1 or 2; dilation 2 now and then; "same"-style padding; batches 1 to 64; 2 to 300 MFLOP a
pass), checks fastcnn's forward, input gradient and weight gradient against torch's, then times each
pass alone (`output_mask`, as torch's autograd would ask) for both libraries: the median of
`--repeats` calls, after the other library's threads have gone idle. On a loaded machine torch's
multi-threaded calls can wait a scheduler slice each: sweep on a quiet one. Prints one row per
pass with torch ms / fastcnn ms (higher: fastcnn faster), then the geometric mean, the rows below
1.0x and 0.8x, and the ten slowest. Needs torch. The layers depend only on the seed: rerun a
seed to compare two builds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
from bench_kernels import provenance

import fastcnn
from fastcnn._atomic import write_atomically
from fastcnn._output_paths import check_file_writable
from fastcnn.bench.measure import SETTLE_S, time_calls

CHANNELS = [1, 3, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256]
PASSES = {
    "forward": None,
    "backward-input": (True, False, False),
    "backward-weight": (False, True, False),
}


def draw_layer(rng: np.random.Generator) -> dict:
    """One layer: conv2d keywords and shapes, 2 to 300 MFLOP a pass, inputs under 16 MB."""
    while True:
        kind = rng.choice(["dense", "dense", "dense", "depthwise", "grouped"])
        C, K = int(rng.choice(CHANNELS)), int(rng.choice(CHANNELS[2:]))
        R = int(rng.choice([1, 3, 3, 3, 5, 7]))
        stride = int(rng.choice([1, 1, 1, 2]))
        dilation = int(rng.choice([1] * 6 + [2]))
        groups = 1
        if kind == "depthwise":
            C = max(C, 8)
            groups, K = C, C * int(rng.choice([1, 1, 2]))
        elif kind == "grouped":
            groups = int(rng.choice([2, 4]))
            C, K = max(groups, C - C % groups), max(groups, K - K % groups)
        H = int(rng.integers(4, 65))
        W = H if rng.random() < 0.7 else int(rng.integers(4, 65))
        N = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
        pad = (R // 2) * dilation
        P = (H + 2 * pad - dilation * (R - 1) - 1) // stride + 1
        Q = (W + 2 * pad - dilation * (R - 1) - 1) // stride + 1
        if P < 1 or Q < 1:
            continue
        flops = 2 * N * K * P * Q * (C // groups) * R * R
        if 2e6 < flops < 3e8 and N * C * H * W < 4e6:
            return {
                "x": (N, C, H, W),
                "w": (K, C // groups, R, R),
                "kw": {"stride": stride, "padding": pad, "dilation": dilation, "groups": groups},
                "flops": flops,
            }


def describe(layer: dict) -> str:
    (N, C, H, W), (K, _, R, S), kw = layer["x"], layer["w"], layer["kw"]
    return (
        f"{N}x{C}x{H}x{W} K{K} {R}x{S} s{kw['stride']} p{kw['padding']} d{kw['dilation']} "
        f"g{kw['groups']}"
    )


def mismatch(got: np.ndarray, want: np.ndarray) -> str | None:
    """None when got is want up to float32 summed in another order."""
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return None if err <= 1e-3 * scale + 1e-4 else f"max abs err {err:.3g} (largest {scale:.3g})"


def median_ms(fn, warmup: int, repeats: int) -> float:
    time.sleep(SETTLE_S)
    return statistics.median(time_calls(fn, warmup, repeats))


def sweep_layer(layer: dict, rng: np.random.Generator, torch, warmup: int, repeats: int) -> list:
    F = fastcnn.functional
    x = rng.standard_normal(layer["x"]).astype(np.float32)
    w = (rng.standard_normal(layer["w"]) / math.sqrt(np.prod(layer["w"][1:]))).astype(np.float32)
    kw = layer["kw"]
    y = F.conv2d(x, w, None, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    tx, tw, tdy = map(torch.from_numpy, (x, w, dy))
    s, p, d = [kw["stride"]] * 2, [kw["padding"]] * 2, [kw["dilation"]] * 2

    def torch_call(mask):
        if mask is None:
            return lambda: torch.nn.functional.conv2d(tx, tw, None, **kw)
        return lambda: torch.ops.aten.convolution_backward(
            tdy, tx, tw, None, s, p, d, False, [0, 0], kw["groups"], list(mask)
        )

    def fastcnn_call(mask):
        if mask is None:
            return lambda: F.conv2d(x, w, None, **kw)
        return lambda: F.conv2d_backward(dy, x, w, output_mask=mask, **kw)

    rows = []
    for name, mask in PASSES.items():
        mine, theirs = fastcnn_call(mask), torch_call(mask)
        index = 0 if mask is None else mask.index(True)
        got = mine() if mask is None else mine()[index]
        want = theirs() if mask is None else theirs()[index]
        problem = mismatch(got, want.numpy().astype(np.float64))
        row = {"layer": describe(layer), "pass": name, "flops": layer["flops"], "error": problem}
        if problem is None:
            row["fastcnn_ms"] = median_ms(mine, warmup, repeats)
            row["torch_ms"] = median_ms(theirs, warmup, repeats)
            row["ratio"] = row["torch_ms"] / row["fastcnn_ms"]
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    head = f"{r['layer']:<36} {r['pass']:<16}"
    if r["error"]:
        return f"{head} MISMATCH {r['error']}"
    rate = r["flops"] / r["fastcnn_ms"] / 1e6
    return (
        f"{head} {r['fastcnn_ms']:9.3f} {r['torch_ms']:9.3f} {rate:8.1f} GFLOP/s {r['ratio']:6.2f}x"
    )


def summarize(rows: list[dict]) -> dict:
    ratios = [r["ratio"] for r in rows if not r["error"]]
    return {
        "rows": len(rows),
        "mismatches": sum(1 for r in rows if r["error"]),
        "geomean": math.exp(statistics.fmean(map(math.log, ratios))) if ratios else None,
        "below_1": sum(1 for v in ratios if v < 1.0),
        "below_0_8": sum(1 for v in ratios if v < 0.8),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="draws the layers and their inputs")
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--threads", type=int, default=fastcnn.get_num_threads())
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="write the environment, every row and the summary here")
    args = parser.parse_args(argv)
    if args.layers < 1 or args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--layers, --threads and --repeats must be >= 1, --warmup >= 0")
    if args.json:
        try:
            check_file_writable(args.json, "--json")
        except ValueError as e:
            parser.error(str(e))
    try:
        import torch
    except ImportError:
        print("sweep_conv.py compares against torch, which is not installed", file=sys.stderr)
        return 2
    fastcnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    facts = provenance() | {"threads": args.threads, "seed": args.seed, "torch": torch.__version__}
    for key, value in facts.items():
        for line in value if isinstance(value, list) else [value]:
            print(f"{key:>22}: {line}")
    print(f"{'layer':<36} {'pass':<16} {'fastcnn ms':>9} {'torch ms':>9}  fastcnn rate  x torch")
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.layers):
        rows += sweep_layer(draw_layer(rng), rng, torch, args.warmup, args.repeats)
    summary = summarize(rows)
    timed = sorted((r for r in rows if not r["error"]), key=lambda r: r["ratio"])
    print("\nslowest against torch:")
    for r in timed[:10]:
        print(format_row(r))
    geomean = "n/a" if summary["geomean"] is None else f"{summary['geomean']:.2f}x"
    print(
        f"\n{summary['rows']} rows, {summary['mismatches']} mismatches; geometric mean {geomean}; "
        f"{summary['below_1']} below 1.0x, {summary['below_0_8']} below 0.8x"
    )
    if args.json:
        report = {"environment": facts, "rows": rows, "summary": summary}
        write_atomically(args.json, lambda f: f.write(json.dumps(report, indent=1).encode()))
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
