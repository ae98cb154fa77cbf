"""Central differences of L = sum(f(*arrays) * g) for a fixed random g, in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Central differences have truncation error O(eps**2) and rounding error about 1e-16 * |L| / eps.
# With eps = 1e-6 and the O(1)..O(100) losses these tests build, the rounding term dominates at
# roughly 1e-10..1e-8, so atol 1e-7 leaves headroom while rtol 1e-6 still catches a wrong factor.
RTOL = 1e-6
ATOL = 1e-7


def numeric_grad(
    f: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], index: int, g, eps: float = 1e-6
) -> np.ndarray:
    """Return dL/d arrays[index] for L = sum(f(*arrays) * g) by central differences."""
    args = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in arrays]
    g = np.asarray(g, dtype=np.float64)
    x = args[index]
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = float(np.sum(np.asarray(f(*args)) * g))
        flat[i] = saved - eps
        minus = float(np.sum(np.asarray(f(*args)) * g))
        flat[i] = saved
        gflat[i] = (plus - minus) / (2.0 * eps)
    return grad


def check_backward(
    f: Callable[..., np.ndarray],
    backward: Callable[..., object],
    arrays: Sequence[np.ndarray],
    wrt: Sequence[int] = (0,),
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    """Assert backward(g, *arrays) matches numeric gradients for each index in wrt.

    backward returns one array when wrt has one index, else a sequence aligned with wrt.
    """
    y = np.asarray(f(*arrays))
    g = np.random.default_rng(seed).standard_normal(y.shape)
    analytic = backward(g, *arrays)
    if len(wrt) == 1 and isinstance(analytic, np.ndarray):
        analytic = (analytic,)
    assert len(analytic) == len(wrt), "backward must return one gradient per wrt index"
    for got, i in zip(analytic, wrt, strict=True):
        want = numeric_grad(f, arrays, i, g, eps)
        got = np.asarray(got)
        assert got.shape == want.shape, f"grad {i}: shape {got.shape} != {want.shape}"
        np.testing.assert_allclose(
            got, want, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}"
        )
