"""Process-wide settings and build facts: thread count and `info()`."""

from __future__ import annotations

import operator
import sys

import numpy as np

from fastcnn import _core

_MAX_THREADS = 2**31 - 1  # the C int the compiled setting holds


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels may use (n >= 1); holds for calls from every thread."""
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n: expected an int, got {type(n).__name__}") from None
    if not 1 <= n <= _MAX_THREADS:
        raise ValueError(f"n: expected a thread count in [1, {_MAX_THREADS}], got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels may use."""
    return _core.get_num_threads()


def info() -> dict:
    """Version, CPU variant, threads, compiler, OpenMP, whether CUDA was built and can run, the
    build's sanitizers and optimization, and the pybind11, NumPy and Python versions."""
    device_count, cuda_reason = _core.cuda_device_count()
    return {
        "version": _core.__version__,
        "cpu_variant": _core.cpu_variant(),
        "cpu_variants_compiled": sorted(_core._variants),
        "num_threads": _core.get_num_threads(),
        "openmp": _core.has_openmp(),
        "compiler": _core.compiler(),
        "cuda_built": _core.has_cuda(),
        "cuda_device_count": device_count,
        "cuda_reason": cuda_reason,
        **_core.build_info(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
