"""Cross-entropy with the options of torch.nn.functional.cross_entropy that the fused kernel does
not take: class weights, ignore_index, reduction "sum" / "none" and class-probability targets.

The fused kernel (_core.softmax_xent_*) stays the path for the default options; this one runs the
same definition in NumPy from the kernel's log-softmax, in float64. PyTorch's definition: each
position i has coefficients a[i, c] and loss_i = sum_c a[i, c] * -logp[i, c], where
- for a class id y_i, with smoothing e and C classes: a[i, c] = (1 - e) * w[y_i] * [c == y_i] +
  e / C * w[c], and a position whose id is ignore_index has a[i, :] = 0;
- for class probabilities t[i, :] (floating labels shaped like the logits):
  a[i, c] = w[c] * ((1 - e) * t[i, c] + e / C).
"mean" divides the sum of loss_i by the sum of w[y_i] over the positions not ignored (class ids;
NaN when all are) or by the number of positions (probabilities), "sum" returns the sum, "none"
the loss_i as an array shaped like the positions (N, d1, ...).
"""

from __future__ import annotations

import numpy as np

from fastcnn import _core

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def refuse_legacy_reduction(size_average: object, reduce: object) -> None:
    """torch's deprecated size_average and reduce, which must stay None: a reduction name passed
    in their place (torch's MSELoss("sum") is a size_average, giving the mean) is refused."""
    if size_average is not None or reduce is not None:
        raise ValueError(
            "size_average, reduce: deprecated in PyTorch and not supported; use reduction= "
            f"(got size_average={size_average!r}, reduce={reduce!r})"
        )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_loss(value: float) -> float:
    """A reduced loss (accumulated in double) as a float, +-inf where it is past float32's range:
    PyTorch's float32 loss overflows there, and a finite 1e60 would hide that."""
    value = float(value)
    if abs(value) <= _FLOAT32_MAX:  # the common case (NaN falls through, and stays NaN)
        return value
    with np.errstate(over="ignore"):
        return float(np.float32(value))  # inf, or FLT_MAX when value rounds down to it


def fused_applies(weight: object, ignore_index: int, reduction: str) -> bool:
    """Whether the fused kernel may try the loss: no weights, a reduction, and an ignore_index
    that no valid label equals (a negative one, as the default -100). The kernel refuses other
    labels (ignored ids, probabilities): see fused_or_none."""
    return weight is None and reduction != "none" and ignore_index < 0


def takes_over(labels: object, ignore_index: int) -> bool:
    """Whether this path handles labels the fused kernel refused: class probabilities, or class
    ids holding ignore_index."""
    t = np.asarray(labels)
    if t.dtype.kind == "f":
        return True
    return t.dtype.kind in "iu" and bool(np.any(t == ignore_index))


def fused_or_none(call, labels: object, ignore_index: int, can_fall_back: bool = True):
    """call()'s result (a fused-kernel call), or None when the kernel refused labels that this
    path takes over (and the caller can fall back to it); any other refusal is raised."""
    try:
        return call()
    except (TypeError, ValueError):
        if not (can_fall_back and takes_over(labels, ignore_index)):
            raise
        return None


def _coefficients(logits, labels, e: float, weight, ignore_index: int, reduction: str):
    """(logp, a, divisor, counted): logp and a with the class axis last, what "mean" divides by
    (1 for the other reductions), and for class ids the terms PyTorch multiplies out, shaped like
    a (None for probabilities, where it multiplies every term): each counted position's label
    term (at weight 0 too: 0 * -inf is NaN) and, with smoothing, its every class's. The rest are
    left out, so a -inf logit elsewhere (or a NaN in an ignored row) leaves the loss finite."""
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {e}")
    z = np.asarray(logits)
    if z.ndim < 2:
        raise ValueError(
            f"logits: expected an array (N, C) or (N, C, d1, ...), got shape {np.shape(z)}"
        )
    classes = z.shape[1]
    # each class's share of the smoothing; no classes (an empty batch of C = 0) share nothing
    smooth = e / classes if classes else 0.0
    if weight is None:
        w = np.ones(classes)
    else:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != (classes,):
            raise ValueError(f"weight: expected shape ({classes},) (one per class), got {w.shape}")
    logp = np.moveaxis(_core.log_softmax_forward(z, 1).astype(np.float64), 1, -1)
    t = np.asarray(labels)
    if t.dtype.kind == "f" and t.shape == z.shape:
        if ignore_index >= 0:  # torch refuses it too: no position holds a class id to ignore
            raise ValueError(
                f"ignore_index: not supported with class-probability labels, got {ignore_index} "
                "(leave it at -100)"
            )
        a = w * ((1.0 - e) * np.moveaxis(t.astype(np.float64), 1, -1) + smooth)
        divisor = a.size // classes if reduction == "mean" else 1.0
        return logp, a, divisor, None
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"labels: expected an integer array of class ids (or class probabilities shaped "
            f"like logits {z.shape}), got dtype {t.dtype} with shape {t.shape}"
        )
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
    a = np.zeros_like(logp)
    np.put_along_axis(a, t[..., None], ((1.0 - e) * w[t])[..., None], axis=-1)
    if smooth:  # (a NaN or Inf class weight then reaches every row, as in torch; else only its own)
        a += smooth * w
    # selected, not multiplied: an ignored row counts nothing even where its weight is NaN or Inf
    a = np.where(kept[..., None], a, 0.0)
    divisor = float(w[t][kept].sum()) if reduction == "mean" else 1.0
    labelled = np.zeros(a.shape, bool)
    np.put_along_axis(labelled, t[..., None], True, axis=-1)
    counted = (labelled | (e > 0.0)) & kept[..., None]
    return logp, a, divisor, counted


def forward(logits, labels, e: float, weight, ignore_index: int, reduction: str):
    """The loss: a float for "mean" and "sum", a float32 array (N, d1, ...) for "none"."""
    logp, a, divisor, counted = _coefficients(logits, labels, e, weight, ignore_index, reduction)
    with np.errstate(invalid="ignore"):  # 0 * inf: NaN is data here
        terms = a * logp
    if counted is not None:
        terms = np.where(counted, terms, 0.0)
    loss = 0.0 - terms.sum(-1)  # +0.0 for an ignored position, as torch's
    if reduction == "none":
        return loss.astype(np.float32)
    if divisor == 0.0 and e > 0.0:  # torch: (1 - e) * nll / 0 + e * smoothing / 0, mostly NaN
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):  # weights summing to 0: +-inf or NaN
        return float32_loss(np.float64(loss.sum()) / divisor)


def backward(logits, labels, e: float, weight, ignore_index: int, reduction: str, grad_output):
    """dloss/dlogits, float32 with logits' shape; grad_output is a float, or for "none" an array
    (N, d1, ...) (or a float applied to every position)."""
    logp, a, divisor, counted = _coefficients(logits, labels, e, weight, ignore_index, reduction)
    # d loss_i / d z[i, c] = p[i, c] * sum_c' a[i, c'] - a[i, c]
    with np.errstate(invalid="ignore"):  # inf - inf: NaN is data here
        grad = np.exp(logp) * a.sum(-1, keepdims=True) - a
    if reduction == "none":
        g = np.asarray(grad_output, dtype=np.float64)
        if g.ndim and g.shape != grad.shape[:-1]:
            raise ValueError(
                f"grad_output: expected shape {grad.shape[:-1]} (one per position), got {g.shape}"
            )
        scale = g[..., None] if g.ndim else g
    else:
        # "mean" over class ids whose weights sum to 0: torch's gradient is NaN over each counted
        # row (its label's +-inf or NaN spreads through the log-softmax backward)
        scale = float(grad_output) / divisor if divisor else np.nan
    with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf: NaN is data here
        if counted is None:
            return _classes_second(grad * scale)
        # an ignored position's row gets none of the scale (not even a NaN one), as in torch
        kept = counted.any(-1, keepdims=True)
        return _classes_second(np.where(kept, grad * scale, grad * 0.0))


def _classes_second(grad: np.ndarray) -> np.ndarray:
    """grad with its class axis (last) moved back to dim 1, as float32."""
    return np.ascontiguousarray(np.moveaxis(grad, -1, 1), dtype=np.float32)
