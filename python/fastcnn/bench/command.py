"""The `fastcnn bench` command: its options, and the run that checks, times and reports the rows."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import fastcnn
from fastcnn._atomic import write_atomically
from fastcnn._output_paths import check_file_writable, check_matplotlib
from fastcnn.bench.cases import OPS, cases
from fastcnn.bench.machine import BlasThreads, environment
from fastcnn.bench.measure import SETTLE_S, run_case
from fastcnn.bench.report import HEAD, format_row, plot, print_header


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


def run(args: argparse.Namespace) -> int:
    """`fastcnn bench`: 0 when every timed row agreed with NumPy, 1 on a mismatch or error, 2 on bad
    use."""
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
    try:
        # checked before the timing, which takes minutes, rather than when writing
        if args.json:
            check_file_writable(args.json, "--json")
        if args.plot:
            check_matplotlib("--plot")
            check_file_writable(args.plot, "--plot")
    except ValueError as e:
        print(f"fastcnn bench: {e}", file=sys.stderr)
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
        report = json.dumps({"meta": meta, "rows": rows}, indent=1).encode()
        write_atomically(args.json, lambda f: f.write(report))
        print(f"wrote {args.json}")
    if args.plot:
        plot(rows, args.plot, meta)
        print(f"wrote {args.plot}")
    return 1 if failed else 0
