"""Gradient clipping under torch.nn.utils' names: `clip_grad_norm_`, `clip_grad_value_`, and the two
halves of the first, `get_total_norm` and `clip_grads_with_norm_`.

Call them between `net.backward(...)` and `opt.step()`; they change each `Parameter.grad` in place.
Norms are computed as torch computes them, in float32: one norm per gradient, then the norm of
those norms. Each takes torch's foreach argument and ignores it (it picks torch's loop, not the
result). Each function returns a Python float where torch returns a 0-d tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Union

import numpy as np

from fastcnn._args import as_bool, as_float
from fastcnn.parameter import Parameter

ParametersArg = Union[Parameter, Iterable[Parameter]]

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]

# torch's guard against dividing by a zero norm
_NORM_EPS = np.float32(1e-6)


def _parameters(parameters: ParametersArg) -> list[Parameter]:
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, (np.ndarray, str)) or not isinstance(parameters, Iterable):
        raise TypeError(
            "parameters: expected a Parameter or an iterable of Parameters, got "
            f"{type(parameters).__name__}"
        )
    params = list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(
                f"parameters: expected Parameter objects, got a {type(p).__name__} among them"
            )
    return params


def _with_grad(params: list[Parameter]) -> list[Parameter]:
    """The parameters whose gradient torch would not hold as None (see Parameter.grad_is_none):
    torch's clipping skips the others, so they neither count in the norm nor get a gradient."""
    return [p for p in params if not (p.grad_is_none and not p.grad.any())]


def _foreach(value: object) -> None:
    """torch's foreach picks which of its loops runs, not the result: taken (None or a bool) and
    ignored, so torch code runs unchanged."""
    if value is not None:
        as_bool(value, "foreach")


def _norm_type(value: object) -> float:
    """A p > 0, or inf (also spelled "inf", as torch accepts it)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"norm_type: expected a number or 'inf', got {value!r}") from None
    p = as_float(value, "norm_type")
    if not p > 0:
        raise ValueError(f"norm_type: expected a p-norm order > 0 or inf, got {p}")
    return p


def _vector_norm(a: np.ndarray, p: float) -> np.floating:
    """The p-norm of a's elements, in a's precision."""
    flat = a.reshape(-1)
    if flat.size == 1:  # |x| exactly, as torch's (x**2 would overflow float32 from 2e19)
        return np.abs(flat[0])
    with np.errstate(over="ignore"):  # an overflow gives inf, as in torch, without a warning
        if p == math.inf:
            return np.max(np.abs(flat), initial=flat.dtype.type(0))
        if p == 2.0:
            return np.sqrt(np.dot(flat, flat))
        if p == 1.0:
            return np.sum(np.abs(flat))
        return np.sum(np.abs(flat) ** p) ** (1.0 / p)


def get_total_norm(
    tensors: np.ndarray | Iterable[np.ndarray],
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> float:
    """The p-norm of all the arrays' elements together (the norm of their norms), as
    torch.nn.utils.get_total_norm: pass the gradients, `[p.grad for p in net.parameters()]`.
    0.0 for no arrays. error_if_nonfinite: RuntimeError when the norm is NaN or infinite."""
    _foreach(foreach)
    p = _norm_type(norm_type)
    arrays = [tensors] if isinstance(tensors, np.ndarray) else list(tensors)
    norms = []
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            got = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"tensors[{i}]: expected a floating-point NumPy array, got {got}")
        norms.append(_vector_norm(a, p))
    if not norms:
        return 0.0
    total = float(_vector_norm(np.array(norms, np.result_type(*norms)), p))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {p} of the gradients is non-finite ({total}), so it cannot "
            "be clipped; pass error_if_nonfinite=False to scale the gradients by it anyway"
        )
    return total


def clip_grads_with_norm_(
    parameters: ParametersArg, max_norm: float, total_norm: float, foreach: bool | None = None
) -> None:
    """Scales every gradient in place by min(max_norm / (total_norm + 1e-6), 1), as
    torch.nn.utils.clip_grads_with_norm_ (a NaN total_norm makes them NaN, as there). Gradients
    torch would hold as None stay as they are, zero and skipped by the optimizers."""
    _foreach(foreach)
    params = _with_grad(_parameters(parameters))
    max_norm = as_float(max_norm, "max_norm")
    if not max_norm >= 0:  # a negative one would flip every gradient: always a mistake
        raise ValueError(f"max_norm: expected a value >= 0, got {max_norm}")
    total = np.float32(as_float(total_norm, "total_norm"))
    # A non-finite norm gives NaN gradients (inf * 0), as in torch: no warning for it here.
    with np.errstate(invalid="ignore"):
        # torch's float32 arithmetic: max_norm / t is t's reciprocal times max_norm
        coef = (np.float32(1.0) / (total + _NORM_EPS)) * np.float32(max_norm)
        if coef >= 1.0:  # torch multiplies by 1.0, which changes nothing
            return
        for p in params:
            p.grad *= coef


def clip_grad_norm_(
    parameters: ParametersArg,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> float:
    """Scales the gradients in place so that their total p-norm (all of them as one vector) is at
    most max_norm; returns the norm before scaling. torch.nn.utils.clip_grad_norm_'s arguments,
    result (as a float) and float32 rounding. Gradients torch would hold as None are left out,
    as there."""
    params = _with_grad(_parameters(parameters))
    total = get_total_norm([p.grad for p in params], norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def clip_grad_value_(
    parameters: ParametersArg, clip_value: float, foreach: bool | None = None
) -> None:
    """Clamps every gradient element into [-clip_value, clip_value] in place, as
    torch.nn.utils.clip_grad_value_ (NaN elements stay NaN)."""
    _foreach(foreach)
    params = _parameters(parameters)
    clip_value = as_float(clip_value, "clip_value")
    if not clip_value >= 0:  # torch would set every element to -|clip_value|
        raise ValueError(f"clip_value: expected a value >= 0, got {clip_value}")
    for p in params:
        np.clip(p.grad, -clip_value, clip_value, out=p.grad)
