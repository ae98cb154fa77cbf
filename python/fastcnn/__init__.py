"""fastcnn: small CNNs on NumPy arrays, with hand-written C++ (and optional CUDA) kernels."""

from __future__ import annotations

from fastcnn import _core, data, datasets, functional, nn, optim
from fastcnn._random import get_rng_state, manual_seed, set_rng_state
from fastcnn._runtime import get_num_threads, info, set_num_threads
from fastcnn.io import load, load_checkpoint, save
from fastcnn.parameter import Parameter
from fastcnn.training import evaluate, fit

__version__: str = _core.__version__

__all__ = [
    "Parameter", "__version__", "data", "datasets", "evaluate", "fit", "functional", "get_num_threads", "get_rng_state", "info",
    "load", "load_checkpoint", "manual_seed", "nn", "optim", "save", "set_num_threads", "set_rng_state",
]
