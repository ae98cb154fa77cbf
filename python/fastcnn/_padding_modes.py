"""Conv2d's padding modes other than zeros (torch.nn.Conv2d's padding_mode): the input is padded
explicitly before a convolution without padding, and the gradient of the padded input is folded
back onto the cells each padded cell copied.

Pads are (top, left, bottom, right), as the conv2d kernels take them. The modes are PyTorch's:
"reflect" mirrors about the edge cell (not repeating it; each pad must be smaller than the size it
pads), "replicate" repeats the edge cell, "circular" wraps around (each pad at most the size).
"""

from __future__ import annotations

import numpy as np

MODES = ("zeros", "reflect", "replicate", "circular")
_NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def check_mode(padding_mode: object) -> str:
    if padding_mode not in MODES:
        raise ValueError(f"padding_mode: expected one of {MODES}, got {padding_mode!r}")
    return padding_mode


def pad(x: np.ndarray, pads: tuple[int, int, int, int], mode: str) -> np.ndarray:
    """x (..., H, W) padded to (..., top + H + bottom, left + W + right) as float32."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"input: expected an array (N, C, H, W) or (C, H, W), got shape {x.shape}")
    top, left, bottom, right = pads
    h, w = x.shape[-2:]
    # numpy repeats a reflection or a wrap that does not fit; torch refuses it
    limit = {"reflect": (h - 1, w - 1), "circular": (h, w)}.get(mode)
    if limit is not None and (max(top, bottom) > limit[0] or max(left, right) > limit[1]):
        raise ValueError(
            f"padding: {mode} padding of {pads} (top, left, bottom, right) is too large for an "
            f"input of size {h} x {w}"
        )
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return np.pad(x.astype(np.float32, copy=False), widths, mode=_NUMPY_MODES[mode])


def fold(grad: np.ndarray, pads: tuple[int, int, int, int], mode: str) -> np.ndarray:
    """The gradient w.r.t. x of pad(x, pads, mode), given grad w.r.t. the padded array."""
    top, left, bottom, right = pads
    grad = _fold_axis(grad, grad.ndim - 2, top, bottom, mode)
    return _fold_axis(grad, grad.ndim - 1, left, right, mode)


def _fold_axis(grad: np.ndarray, axis: int, lo: int, hi: int, mode: str) -> np.ndarray:
    g = np.moveaxis(grad, axis, 0)
    n = g.shape[0] - lo - hi
    source = np.pad(np.arange(n), (lo, hi), mode=_NUMPY_MODES[mode])  # the cell each one copies
    out = g[lo : lo + n].copy()
    padded = np.r_[0:lo, lo + n : lo + n + hi]
    np.add.at(out, source[padded], g[padded])  # in index order, as cells repeat under reflect
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))
