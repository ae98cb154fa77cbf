"""Developer benchmark of the kernels: the `fastcnn bench` table plus what a result must be read
with.

    python benchmarks/bench_kernels.py --op conv2d --threads 2 [--variant all] [--torch]
                                       [--json PATH]

Prints the git commit, date, CPU model, CPU variant and NumPy's BLAS, then the table of
fastcnn.bench (every result checked against the NumPy baseline before it is timed).
`--variant NAME|all` runs the table under one or every compiled CPU variant, each in a fresh
process, because the variant is picked once, at import, from FASTCNN_CPU_VARIANT.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import fastcnn
from fastcnn import bench

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The checkout's commit, '+dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def blas_details() -> list[str]:
    """Every BLAS loaded in this process as threadpoolctl sees it, when it is installed."""
    try:
        import threadpoolctl
    except ImportError:
        return ["threadpoolctl not installed: NumPy's build configuration only"]
    return [
        f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, {i['num_threads']} "
        f"threads, {i.get('threading_layer')}): {i['filepath']}"
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas"
    ]


def provenance() -> dict:
    return {
        "git_commit": git_commit(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": bench.cpu_model(),
        "cpu_variant": fastcnn._core.cpu_variant(),
        "cpu_variants_compiled": ", ".join(sorted(fastcnn._core._variants)),
        "numpy_blas": bench.numpy_blas(),
        "blas_loaded": blas_details(),
    }


def _without_variant(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--variant":
            skip = True
        elif not a.startswith("--variant="):
            out.append(a)
    return out


def run_variants(names: list[str], args: argparse.Namespace, argv: list[str]) -> int:
    """One child process per variant; with several, each writes PATH.<variant>.json."""
    code = 0
    for name in names:
        extra = ["--variant", name]
        if args.json and len(names) > 1:
            path = Path(args.json)
            extra += ["--json", str(path.with_suffix(f".{name}{path.suffix or '.json'}"))]
        env = {**os.environ, "FASTCNN_CPU_VARIANT": name}
        print(f"=== variant {name}", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), *_without_variant(argv), *extra]
        code = max(code, subprocess.call(cmd, env=env))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bench.add_arguments(parser)
    parser.add_argument("--variant", help="a compiled CPU variant (ref, avx2, avx512) or all")
    args = parser.parse_args(argv)
    compiled = sorted(fastcnn._core._variants)
    if args.variant:
        names = compiled if args.variant == "all" else [args.variant]
        unknown = [n for n in names if n not in compiled]
        if unknown:
            parser.error(
                f"--variant: {unknown[0]} is not compiled or not runnable here: {compiled}"
            )
        if len(names) > 1 or os.environ.get("FASTCNN_CPU_VARIANT") != names[0]:
            return run_variants(names, args, argv)

    facts = provenance()
    for key, value in facts.items():
        for line in value if isinstance(value, list) else [value]:
            print(f"{key:>22}: {line}")
    code = bench.run(args)
    if args.json and code != 2:  # 2: bad use, nothing was written
        path = Path(args.json)
        report = json.loads(path.read_text())
        report["meta"].update(facts)
        path.write_text(json.dumps(report, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
