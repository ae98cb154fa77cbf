"""What the timings depend on: the CPU, NumPy's BLAS (and its thread count), library versions."""

from __future__ import annotations

import ctypes
import datetime
import os
import platform
from types import ModuleType

import numpy as np

import fastcnn

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class BlasThreads:
    """Reads and sets the thread count of NumPy's BLAS.

    Uses threadpoolctl when it is installed; else calls OpenBLAS's own functions in the library
    NumPy loaded (found in /proc/self/maps, so Linux only). `available` is False when neither
    works.
    """

    _PREFIXES = ("scipy_openblas", "openblas")
    _SUFFIXES = ("64_", "")

    def __init__(self) -> None:
        self._controller = None
        self._lib = None
        self._limiter = None
        self._previous: int | None = None
        try:
            import threadpoolctl
        except ImportError:
            self._lib, self._names = self._find_openblas()
        else:
            self._controller = threadpoolctl.ThreadpoolController()

    def _find_openblas(self):
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
        except OSError:
            return None, None
        for path in sorted(p for p in paths if p.startswith("/")):
            lib = ctypes.CDLL(path)
            for prefix in self._PREFIXES:
                for suffix in self._SUFFIXES:
                    names = {
                        what: f"{prefix}_{what}{suffix}"
                        for what in ("get_num_threads", "set_num_threads", "get_corename")
                    }
                    if all(hasattr(lib, n) for n in names.values()):
                        return lib, names
        return None, None

    @property
    def available(self) -> bool:
        if self._controller is not None:
            return bool(self._controller.select(user_api="blas").info())
        return self._lib is not None

    def describe(self) -> str:
        """Library, version, core type and threads, or why none is known."""
        if self._controller is not None:
            libs = self._controller.select(user_api="blas").info()
            return (
                "; ".join(
                    f"{i['internal_api']} {i['version']} core {i.get('architecture')}, "
                    f"{i['num_threads']} threads"
                    for i in libs
                )
                or "no BLAS found by threadpoolctl"
            )
        if self._lib is None:
            return "threads not controlled (install threadpoolctl)"
        core = getattr(self._lib, self._names["get_corename"])
        core.restype = ctypes.c_char_p
        return f"openblas core {core().decode()}, {self.get()} threads"

    def get(self) -> int | None:
        if self._controller is not None:
            libs = self._controller.select(user_api="blas").info()
            return libs[0]["num_threads"] if libs else None
        if self._lib is None:
            return None
        return int(getattr(self._lib, self._names["get_num_threads"])())

    def set(self, n: int) -> None:
        if self._controller is not None:
            self._limiter = self._controller.limit(limits=n, user_api="blas")
        elif self._lib is not None:
            self._previous = self.get()
            getattr(self._lib, self._names["set_num_threads"])(ctypes.c_int(n))

    def restore(self) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        elif self._lib is not None and self._previous:
            getattr(self._lib, self._names["set_num_threads"])(ctypes.c_int(self._previous))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas() -> str:
    """NumPy's BLAS name and version from its build configuration."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):  # NumPy < 1.26 prints its configuration only
        return "unknown BLAS"


def blas_env() -> dict[str, str | None]:
    """The OpenBLAS variables that override its CPU detection and cache sizes, where set."""
    return {name: os.environ.get(name) for name in BLAS_ENV}


def environment(threads: int, blas: BlasThreads, torch: ModuleType | None) -> dict:
    """What the numbers depend on: versions, variant, threads, CPU, BLAS and its overrides."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "fastcnn_version": fastcnn.__version__,
        "cpu_variant": fastcnn._core.cpu_variant(),
        "threads": threads,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "numpy_version": np.__version__,
        "numpy_blas": numpy_blas(),
        "numpy_blas_runtime": blas.describe(),
        "blas_env": blas_env(),
        "torch_version": None if torch is None else torch.__version__,
    }
