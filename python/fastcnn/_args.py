"""Normalizing and checking the non-array arguments of `fastcnn.functional` (sizes, strides, modes).

Each helper names the argument in its message, gives the expected form and the value it got.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import TypeVar, Union

import numpy as np

IntPair = Union[int, Sequence[int]]
T = TypeVar("T")


def as_int(value: object, name: str) -> int:
    """An exact integer (bool is refused: `stride=True` is a bug, not 1)."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}") from None


def pair(value: IntPair, name: str) -> tuple[int, int]:
    """An int or a pair of ints, as (height, width). As in PyTorch, a one-element sequence stands
    for both, and a 1-D NumPy array counts as a sequence."""
    if type(value) is int:  # the common case, first: no isinstance chain (bool is not int here)
        return value, value
    if isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        if len(value) == 1:
            v = as_int(value[0], name)
            return v, v
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair (h, w), got {value!r}")
        return as_int(value[0], name), as_int(value[1], name)
    v = as_int(value, name)
    return v, v


def positive_pair(value: IntPair, name: str) -> tuple[int, int]:
    """A pair whose entries are >= 1 (kernel sizes, strides, dilations)."""
    p = pair(value, name)
    if p[0] < 1 or p[1] < 1:
        raise ValueError(f"{name}: expected values >= 1, got {value!r}")
    return p


def nonnegative_pair(value: IntPair, name: str) -> tuple[int, int]:
    """A pair whose entries are >= 0 (paddings)."""
    p = pair(value, name)
    if p[0] < 0 or p[1] < 0:
        raise ValueError(f"{name}: expected values >= 0, got {value!r}")
    return p


def as_bool(value: object, name: str) -> bool:
    """A bool (Python's or NumPy's); torch's flags refuse 0, 1 and None alike."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def as_float(value: object, name: str) -> float:
    """A real scalar."""
    if type(value) is float:
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        and not hasattr(value, "__float__")
    ):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__} {value!r}")
    if np.ndim(value):  # e.g. torch's positional class weights where fastcnn takes a scalar
        raise TypeError(f"{name}: expected a float, got an array of shape {np.shape(value)}")
    return float(value)


def named_as_called(call: Callable[[], T], names: dict[str, str]) -> T:
    """call(), a kernel reached under other argument names than its own: a TypeError or
    ValueError whose message names a kernel argument (a key of names) is raised again naming the
    caller's (its value), so that the message names what the user passed - `x` to a backward op
    that reuses a forward kernel (whose argument is torch's `input`), `input` and `target` to
    cross_entropy (whose kernels take `logits` and `labels`)."""
    try:
        return call()
    except (TypeError, ValueError) as e:
        pattern = r"\b(" + "|".join(map(re.escape, names)) + r")\b"
        message = re.sub(pattern, lambda m: names[m.group(1)], str(e))
        if message == str(e):
            raise
        raise type(e)(message) from None


def check_device_dtype(device: object, dtype: object) -> None:
    """torch's factory keywords on the layers that hold parameters: accepted where they ask for
    what fastcnn has (CPU memory, float32), so code written for torch runs unchanged; anything
    else is refused by name rather than silently ignored."""
    if device is not None and str(device).split(":")[0] != "cpu":
        raise ValueError(
            f"device: fastcnn's parameters are NumPy arrays in CPU memory; expected None or "
            f"'cpu', got {device!r}"
        )
    if dtype is None or str(dtype) == "torch.float32":
        return
    try:
        ok = np.dtype(dtype) == np.float32
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"dtype: fastcnn computes in float32; expected None or float32, got {dtype!r}"
        )
