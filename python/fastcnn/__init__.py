"""fastcnn: small CNNs on NumPy arrays, with hand-written C++ (and optional CUDA) kernels."""

from __future__ import annotations

from fastcnn import _core, functional
from fastcnn._runtime import get_num_threads, info, set_num_threads

__version__: str = _core.__version__

__all__ = ["__version__", "functional", "get_num_threads", "info", "set_num_threads"]
