"""Cross-entropy with the options of torch.nn.functional.cross_entropy that the fused kernel does
not take: class weights, ignore_index and reduction "sum" / "none".

The fused kernel (_core.softmax_xent_*) stays the path for the default options; this one runs the
same definition in NumPy from the kernel's log-softmax, in float64. PyTorch's definition, per
position i with label y_i, smoothing e and C classes (an ignored position contributes nothing):
    loss_i = (1 - e) * w[y_i] * -logp[i, y_i] + e / C * sum_c w[c] * -logp[i, c]
"mean" divides the sum of loss_i by the sum of w[y_i] over the positions not ignored (NaN when
all are), "sum" returns the sum, "none" the loss_i as an array shaped like the labels.
"""

from __future__ import annotations

import numpy as np

from fastcnn import _core

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def has_ignored(labels: object, ignore_index: int) -> bool:
    """Whether labels holds ignore_index (false for anything that is not an integer array)."""
    t = np.asarray(labels)
    return t.dtype.kind in "iu" and bool(np.any(t == ignore_index))


def fused_applies(weight: object, ignore_index: int, reduction: str) -> bool:
    """Whether the fused kernel may try the loss: no weights, a reduction, and an ignore_index
    that no valid label equals (a negative one, as the default -100). The kernel refuses labels
    outside [0, C); the caller then checks them for ignore_index with has_ignored."""
    return weight is None and reduction != "none" and ignore_index < 0


def _operands(logits, labels, e: float, weight, ignore_index: int):
    """(logp with the class axis last, labels with ignored positions set to 0, kept mask, w)."""
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {e}")
    z = np.asarray(logits)
    if z.ndim < 2:
        raise ValueError(
            f"logits: expected an array (N, C) or (N, C, d1, ...), got shape {np.shape(z)}"
        )
    classes = z.shape[1]
    t = np.asarray(labels)
    if t.dtype.kind not in "iu":
        raise TypeError(f"labels: expected an integer array of class ids, got dtype {t.dtype}")
    expected = (z.shape[0],) + z.shape[2:]
    if t.shape != expected:
        raise ValueError(f"labels: expected shape {expected} for logits {z.shape}, got {t.shape}")
    kept = t != ignore_index
    t = np.where(kept, t, 0)
    bad = (t < 0) | (t >= classes)
    if bad.any():
        raise ValueError(
            f"labels: expected class ids in [0, C) with C = {classes} or ignore_index = "
            f"{ignore_index}, got {t[bad].flat[0]}"
        )
    if weight is None:
        w = np.ones(classes)
    else:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != (classes,):
            raise ValueError(f"weight: expected shape ({classes},) (one per class), got {w.shape}")
    logp = np.moveaxis(_core.log_softmax_forward(z, 1).astype(np.float64), 1, -1)
    return logp, t, kept, w


def _per_position(logp, t, kept, w, e: float):
    """(loss_i, a): loss_i as above and a[i, c], its coefficient of -logp[i, c]."""
    classes = logp.shape[-1]
    a = np.zeros_like(logp)
    np.put_along_axis(a, t[..., None], ((1.0 - e) * w[t])[..., None], axis=-1)
    a += e / classes * w
    a *= kept[..., None]
    return -(a * logp).sum(-1), a


def _divisor(t, kept, w, reduction: str) -> float:
    return float((w[t] * kept).sum()) if reduction == "mean" else 1.0


def forward(logits, labels, e: float, weight, ignore_index: int, reduction: str):
    """The loss: a float for "mean" and "sum", a float32 array shaped like labels for "none"."""
    logp, t, kept, w = _operands(logits, labels, e, weight, ignore_index)
    loss, _ = _per_position(logp, t, kept, w, e)
    if reduction == "none":
        return loss.astype(np.float32)
    divisor = _divisor(t, kept, w, reduction)
    return float(loss.sum() / divisor) if divisor else float("nan")


def backward(logits, labels, e: float, weight, ignore_index: int, reduction: str, grad_output):
    """dloss/dlogits, float32 with logits' shape; grad_output is a float, or for "none" an array
    shaped like labels (or a float applied to every position)."""
    logp, t, kept, w = _operands(logits, labels, e, weight, ignore_index)
    _, a = _per_position(logp, t, kept, w, e)
    # d loss_i / d z[i, c] = p[i, c] * sum_c' a[i, c'] - a[i, c]
    grad = np.exp(logp) * a.sum(-1, keepdims=True) - a
    if reduction == "none":
        g = np.asarray(grad_output, dtype=np.float64)
        if g.ndim and g.shape != t.shape:
            raise ValueError(f"grad_output: expected shape {t.shape} (the labels'), got {g.shape}")
        grad *= g[..., None] if g.ndim else g
    else:
        divisor = _divisor(t, kept, w, reduction)
        # nothing counted (all ignored): torch's loss is NaN, its gradient zero
        grad *= float(grad_output) / divisor if divisor else 0.0
    return np.ascontiguousarray(np.moveaxis(grad, -1, 1), dtype=np.float32)
