"""Training-step time and minor page faults per step, for one library in this process.

    python benchmarks/bench_faults.py fastcnn|torch BATCH [THREADS]
    FASTCNN_HOST_POOL_MB=0 python benchmarks/bench_faults.py fastcnn 32      # glibc malloc only
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296 \\
        python benchmarks/bench_faults.py torch 128                           # glibc keeps memory

Uses bench_train's runners (the fmnist-bn net, SGD momentum): 5 warm-up steps, then the median of
40 steps and the minor page faults they took (getrusage), as MB of 4 KiB pages. Run each setting in
a fresh process, alternating settings a few times: glibc's state carries over within a process.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train as bt  # noqa: E402


def main(argv: list[str]) -> int:
    lib, n = argv[0], int(argv[1])
    threads = int(argv[2]) if len(argv) > 2 else 1
    bt.set_threads(threads, [lib, "fastcnn"])
    runner = bt.make_runner(lib, bt.FastcnnRunner().state_dict())
    data = bt.batches(n, 4)
    for i in range(5):
        runner.step(*data[i % 4])
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for i in range(40):
        t0 = time.perf_counter()
        runner.step(*data[i % 4])
        times.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / len(times)
    print(
        f"{lib} batch {n} threads {threads} pool_mb={os.environ.get('FASTCNN_HOST_POOL_MB', '-')} "
        f"tunables={'GLIBC_TUNABLES' in os.environ}: step {1e3 * statistics.median(times):.1f} "
        f"ms, {faults * 4 / 1024:.1f} MB faulted/step, load {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
