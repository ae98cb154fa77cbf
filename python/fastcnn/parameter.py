"""`Parameter`: a trainable array and the gradient that backward passes accumulate into it.

Both arrays are C-contiguous float32 of the same shape and live as long as the parameter: optimizers
update `.data` in place and `zero_grad()` refills `.grad`, so no step allocates parameter-sized memory.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


class Parameter:
    """A trainable array `data` and its gradient `grad`, both float32 with the same shape.

    `Parameter(data)` copies `data` (any real array-like) into a new C-contiguous float32 array, so an
    optimizer's in-place steps never write into the caller's array; `grad` starts at zero.
    Backward passes add into `grad`; `zero_grad()` resets it in place.

    Where torch's gradient would be None (a new parameter, or one zeroed with set_to_none=True that
    no backward has reached since), `grad` is zeros and `grad_is_none` is True; optimizers then
    leave the parameter and its state alone, as torch's skip a None gradient. Any assignment to
    `grad`, such as a backward's `p.grad += dw`, clears the flag; `p.grad = None` sets it.

    `requires_grad=False` freezes the parameter, as in torch: layers then compute no gradient for
    it (its `grad` stays as it was, normally torch's None) and optimizers never change it. It is a
    training setting, not state: `state_dict()` and `fastcnn.save` leave it out, as torch does.
    """

    __slots__ = ("_grad", "_requires_grad", "data", "grad_is_none")

    def __init__(self, data: ArrayLike, requires_grad: bool = True) -> None:
        source = np.asarray(data)
        if source.dtype.kind not in "iuf":
            raise TypeError(f"data: expected a real numeric array, got dtype {source.dtype}")
        self.data: np.ndarray = np.array(source, dtype=np.float32, order="C", copy=True)
        self._grad: np.ndarray = np.zeros_like(self.data)
        self.grad_is_none = True
        self.requires_grad = requires_grad

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"requires_grad: expected a bool, got {type(value).__name__} {value!r}")
        self._requires_grad = bool(value)

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
            self._grad = np.zeros_like(self.data)
            self.grad_is_none = True
            return
        self._grad = value
        self.grad_is_none = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def size(self) -> int:
        return self.data.size

    def numel(self) -> int:
        """The element count, under torch's name (sum(p.numel() for p in net.parameters()))."""
        return self.data.size

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
        return f"Parameter(shape={self.data.shape}{frozen})"
