"""fastcnn: small CNNs on NumPy arrays, with hand-written C++ (and optional CUDA) kernels."""

from __future__ import annotations

import importlib

from fastcnn import _core, functional, nn
from fastcnn._random import get_rng_state, manual_seed, set_rng_state
from fastcnn._runtime import get_num_threads, info, set_num_threads
from fastcnn.parameter import Parameter
from fastcnn.training import evaluate, fit

__version__: str = _core.__version__

__all__ = [
    "Parameter",
    "__version__",
    "data",
    "datasets",
    "evaluate",
    "fit",
    "functional",
    "get_num_threads",
    "get_rng_state",
    "info",
    "load",
    "load_checkpoint",
    "manual_seed",
    "nn",
    "optim",
    "save",
    "set_num_threads",
    "set_rng_state",
]

# Imported on first use, to keep `import fastcnn` fast: running a model needs none of them, and
# datasets and io bring in importlib.resources, zipfile and tempfile.
_LAZY_MODULES = ("data", "datasets", "optim")
_LAZY_IO = ("load", "load_checkpoint", "save")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"fastcnn.{name}")
    if name in _LAZY_IO:
        value = globals()[name] = getattr(importlib.import_module("fastcnn.io"), name)
        return value
    raise AttributeError(f"module 'fastcnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_IO))
