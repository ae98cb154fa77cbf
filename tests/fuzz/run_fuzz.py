"""Long fuzz run of fastcnn's public functions (a script; pytest does not collect it).

    python tests/fuzz/run_fuzz.py --cases 100000 [--seed 1] [--jobs 2]

Cases run in worker subprocesses, in chunks, so a crash (a signal, an abort) is caught and its case
found again by replaying the chunk one case at a time. Exit status 0 when every case returned or
raised ValueError/TypeError/MemoryError with a message and left the caller's arrays alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(seed: int, start: int, count: int, trace: bool) -> None:
    sys.path.insert(0, HERE)
    import cases

    warnings.simplefilter("ignore")  # numpy's cast warnings are not what is under test
    all_targets = cases.targets()
    table = cases.target_table(all_targets)
    problems = []
    for i in range(start, start + count):
        label, fn, kwargs = cases.make_case(seed, i, all_targets, table)
        if trace:
            print(f"case {i}: {label}({cases.describe(kwargs)})", file=sys.stderr, flush=True)
        problem = cases.check_call(label, fn, kwargs)
        if problem:
            problems.append(
                {"case": i, "call": f"{label}({cases.describe(kwargs)})", "problem": problem}
            )
    print(json.dumps({"problems": problems, "targets": len(all_targets)}))


def run_chunk(seed: int, start: int, count: int, timeout: float) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--seed",
        str(seed),
        "--start",
        str(start),
        "--cases",
        str(count),
    ]
    try:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {
            "crash": f"chunk {start}..{start + count} timed out after {timeout} s",
            "start": start,
        }
    if p.returncode == 0:
        return json.loads(p.stdout.strip().splitlines()[-1])
    # Replay with tracing: the last traced case is the one that took the process down.
    t = subprocess.run(
        cmd + ["--trace"], check=False, capture_output=True, text=True, timeout=timeout
    )
    traced = [line for line in t.stderr.splitlines() if line.startswith("case ")]
    return {
        "crash": f"exit status {p.returncode}; last case: {traced[-1] if traced else '?'}\n"
        f"{p.stderr[-2000:]}",
        "start": start,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per chunk")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.seed, args.start, args.cases, args.trace)
        return 0

    t0 = time.perf_counter()
    starts = range(args.start, args.start + args.cases, args.chunk)
    counts = [min(args.chunk, args.start + args.cases - s) for s in starts]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(
            pool.map(lambda sc: run_chunk(args.seed, *sc, args.timeout), zip(starts, counts))
        )
    elapsed = time.perf_counter() - t0
    crashes = [r["crash"] for r in results if "crash" in r]
    problems = [p for r in results for p in r.get("problems", [])]
    targets = max((r.get("targets", 0) for r in results), default=0)
    for c in crashes:
        print("CRASH:", c)
    for p in problems[:50]:
        print(f"case {p['case']}: {p['problem']}\n    {p['call']}")
    print(
        f"{args.cases} cases over {targets} functions (seed {args.seed}) in {elapsed:.1f} s: "
        f"{len(crashes)} crashed chunks, {len(problems)} contract violations"
    )
    return 1 if crashes or problems else 0


if __name__ == "__main__":
    sys.exit(main())
