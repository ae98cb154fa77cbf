"""`Parameter`: a trainable array and the gradient that backward passes accumulate into it.

Both arrays are C-contiguous float32 of the same shape, kept until the user replaces them:
optimizers update `.data` in place and `zero_grad()` refills `.grad`, so no step allocates
parameter-sized memory.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fastcnn._args import as_bool


class Parameter:
    """A trainable array `data` and its gradient `grad`, both float32 with the same shape.

    `Parameter(data)` copies `data` (any real array-like) into a new C-contiguous float32 array, so
    an optimizer's in-place steps never write into the caller's array; `grad` starts at zero.
    Backward passes add into `grad`; `zero_grad()` resets it in place.

    Where torch's gradient would be None (a new parameter, or one zeroed with set_to_none=True that
    no backward has reached since), `grad` is zeros and `grad_is_none` is True; optimizers then
    leave the parameter and its state alone, as torch's skip a None gradient. Any assignment to
    `grad`, such as a backward's `p.grad += dw`, clears the flag; `p.grad = None` sets it.

    `p.data = array` replaces the array, as torch's `p.data = t`: a writeable C-contiguous float32
    array is used as it is (shared with the caller, as torch shares `t`), any other real array-like
    is copied into one, as the constructor does (a float64 array from NumPy, a Fortran-ordered one).
    A new shape gets a fresh None gradient. `p.grad = array` must have `data`'s shape and dtype,
    as torch requires (a float32 array in another layout is copied into a C-contiguous one).

    `requires_grad=False` freezes the parameter, as in torch: layers then compute no gradient for
    it (its `grad` stays as it was, normally torch's None, which optimizers skip; a gradient it
    still holds is stepped on, as in torch). It is a training setting, not state: `state_dict()`
    and `fastcnn.save` leave it out, as torch does.
    """

    __slots__ = ("_data", "_grad", "_requires_grad", "grad_is_none")

    def __init__(self, data: ArrayLike, requires_grad: bool = True) -> None:
        self._data: np.ndarray = _aligned_copy(_real(data, "data"))
        self._grad: np.ndarray = _aligned_zeros(self._data.shape)
        self.grad_is_none = True
        self.requires_grad = requires_grad

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: ArrayLike) -> None:
        array = _float32_c(_real(value, "data"))
        if array.shape != self._data.shape:
            self._grad = _aligned_zeros(array.shape)
            self.grad_is_none = True
        self._data = array

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self._requires_grad = as_bool(value, "requires_grad")

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Sets `requires_grad` in place and returns the parameter, as torch's Tensor method."""
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self) -> np.ndarray:
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        if value is None:
            # torch's way to drop a gradient; a fresh buffer, as the old one may be the caller's
            self._grad = _aligned_zeros(self._data.shape)
            self.grad_is_none = True
            return
        if value is not self._grad:  # `p.grad += dw` hands back the same array
            array = np.asarray(value)
            if array.dtype != np.float32:
                raise TypeError(f"grad: expected float32 (data's dtype), got dtype {array.dtype}")
            if array.shape != self._data.shape:
                raise ValueError(
                    f"grad: expected shape {self._data.shape} (data's), got shape {array.shape}"
                )
            value = _float32_c(array)
        self._grad = value
        self.grad_is_none = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def size(self) -> int:
        return self._data.size

    def numel(self) -> int:
        """The element count, under torch's name (sum(p.numel() for p in net.parameters()))."""
        return self._data.size

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set the gradient to zero in place (the buffer is reused, never reallocated); with
        set_to_none, also mark it as torch's None gradient (see the class docstring). Without, a
        gradient torch holds as None stays None, as torch's zero_grad(set_to_none=False) zeroes
        only the gradients that exist: a parameter no backward has reached is still skipped."""
        self._grad.fill(0.0)
        if set_to_none:
            self.grad_is_none = True

    def __repr__(self) -> str:
        frozen = "" if self._requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self._data.shape}{frozen})"


# The kernels read weights in whole vectors, and a vector that straddles two cache lines costs
# two reads: NumPy starts large arrays 16 bytes past a 64-byte line, which made every AVX-512 load
# of a 3136 -> 128 Linear weight row straddle two (batch 1, 2 threads: 15-16 us against 9 with the
# weight on a line boundary). The arrays a Parameter allocates start on a line.
_LINE_BYTES = 64


def _aligned_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous float32 array of zeros whose first element starts a cache line."""
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(count * 4 + _LINE_BYTES, np.uint8)
    skip = -raw.ctypes.data % _LINE_BYTES
    return raw[skip : skip + count * 4].view(np.float32).reshape(shape)


def _aligned_copy(array: np.ndarray) -> np.ndarray:
    """`array` converted to float32 in a new array from _aligned_zeros."""
    out = _aligned_zeros(array.shape)
    np.copyto(out, array, casting="unsafe")
    return out


def _real(value: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    return array


def _float32_c(array: np.ndarray) -> np.ndarray:
    """`array` itself when optimizers can update it in place (writeable, C-contiguous float32),
    else a copy that they can."""
    if array.dtype == np.float32 and array.flags.c_contiguous and array.flags.writeable:
        return array
    return np.array(array, dtype=np.float32, order="C", copy=True)
