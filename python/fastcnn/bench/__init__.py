"""`fastcnn bench`: each fastcnn.functional op timed against plain NumPy float32 (and PyTorch).

Each row first checks fastcnn's result (and torch's) against the NumPy baseline in numpy_ops and is
aborted on a mismatch; then each implementation is warmed up and timed: the median of `repeats`
calls measured with time.perf_counter. Every library runs with the same thread count.
"""

from fastcnn.bench.cases import OPS, Case, cases
from fastcnn.bench.command import add_arguments, run
from fastcnn.bench.machine import BlasThreads, cpu_model, numpy_blas
from fastcnn.bench.measure import compare, run_case

__all__ = [
    "OPS",
    "BlasThreads",
    "Case",
    "add_arguments",
    "cases",
    "compare",
    "cpu_model",
    "numpy_blas",
    "run",
    "run_case",
]
