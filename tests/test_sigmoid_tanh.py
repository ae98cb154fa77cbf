"""Tests of sigmoid and tanh: every compiled variant against the float64 oracle (odd sizes, tails,
large magnitudes, +-inf and NaN), the oracle's backward by finite differences, thread-count
determinism, the functional and module forms, and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref
from gradcheck import check_backward

import fastcnn
import fastcnn.functional as F
from fastcnn import nn

# A few ulp of float32: the fast variants build on a polynomial exp (~1.5 ulp) and tanh switches
# formulas at |x| = 0.4.
RTOL = 2e-6
ATOL = 1e-7
OPS = {
    "sigmoid": (ref.sigmoid, ref.sigmoid_backward),
    "tanh": (ref.tanh, ref.tanh_backward),
}
SHAPES = [(1,), (7,), (3, 17), (2, 3, 13, 11), (1, 65), (4, 64, 28, 28), (1000003,)]


def _forward(core, op):
    return getattr(core, f"{op}_forward")


def _backward(core, op):
    return getattr(core, f"{op}_backward")


def _special_values(rng, n: int = 4099) -> np.ndarray:
    """Zeros of both signs, +-inf, NaN, huge and tiny magnitudes, the tanh formula switch at
    |x| = 0.4 and the exp flush at -87.3, among ordinary values."""
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-30, -1e-30, 1e-7, -1e-7]
    special += [0.4, -0.4, np.nextafter(0.4, 0), -np.nextafter(0.4, 0), 20, -20, 44, -44]
    special += [87, -87, 88, -88, 89, -89, 100, -100, 1e4, -1e4, 3e38, -3e38]
    x[: len(special)] = special
    return rng.permutation(x)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_oracle(core, rng, op, shape):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    forward, backward = OPS[op]
    y = _forward(core, op)(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, forward(x), rtol=RTOL, atol=ATOL)
    # backward reads forward's output, as torch's does
    np.testing.assert_allclose(_backward(core, op)(dy, y), backward(dy, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_special_values_match_oracle(core, rng, op):
    x = _special_values(rng)
    y = _forward(core, op)(x)
    want = OPS[op][0](x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=1e-30)  # subnormal outputs may flush to 0
    assert np.all((y >= -1) & (y <= 1) | np.isnan(y))
    if op == "tanh":  # odd, and exactly +-1 far out; tanh(-0) is -0
        np.testing.assert_array_equal(np.signbit(y), np.signbit(x))
        np.testing.assert_array_equal(y[np.abs(x) > 10], np.sign(x[np.abs(x) > 10]))
    else:
        np.testing.assert_array_equal(y[x > 20], 1.0)
        assert np.all(y[x < -20] < 3e-9) and np.all(y[~np.isnan(x)] >= 0)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = _backward(core, op)(dy, y)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(x))
    finite = ~np.isnan(x)
    np.testing.assert_allclose(dx[finite], OPS[op][1](dy, x)[finite], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_variants_agree_with_ref(rng, op):
    x = _special_values(rng).repeat(50)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    base = fastcnn._core._variants["ref"]
    y0 = _forward(base, op)(x)
    for core in fastcnn._core._variants.values():
        y = _forward(core, op)(x)
        np.testing.assert_allclose(y, y0, rtol=RTOL, atol=1e-30)
        np.testing.assert_array_equal(_backward(core, op)(dy, y0), _backward(base, op)(dy, y0))


@pytest.mark.parametrize("op", OPS)
def test_bitwise_across_thread_counts(rng, op):
    x = _special_values(rng).repeat(300)  # large enough to go parallel, on 3 threads too
    dy = rng.standard_normal(x.shape).astype(np.float32)
    threads = fastcnn.get_num_threads()
    try:
        for core in fastcnn._core._variants.values():
            fastcnn.set_num_threads(1)
            want = _forward(core, op)(x), _backward(core, op)(dy, x)
            for n in (2, 3):
                fastcnn.set_num_threads(n)
                np.testing.assert_array_equal(_forward(core, op)(x), want[0])
                np.testing.assert_array_equal(_backward(core, op)(dy, x), want[1])
    finally:
        fastcnn.set_num_threads(threads)


@pytest.mark.parametrize("op", OPS)
def test_oracle_backward_by_finite_differences(rng, op):
    x = rng.standard_normal((3, 5, 7)) * 3
    forward, backward = OPS[op]
    check_backward(forward, lambda g, x: backward(g, x), [x])


@pytest.mark.parametrize("op", OPS)
def test_functional_and_module(rng, op):
    x = rng.standard_normal((3, 4, 5))[:, ::2]  # non-contiguous float64
    x32 = np.ascontiguousarray(x, np.float32)
    dy = rng.standard_normal(x32.shape)
    f, f_backward = getattr(F, op), getattr(F, f"{op}_backward")
    y = f(x)
    np.testing.assert_array_equal(y, f(x32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(f_backward(dy, x), f_backward(dy, None, y=y))
    np.testing.assert_allclose(f_backward(dy, x), OPS[op][1](dy, x), rtol=1e-5, atol=1e-6)
    module = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[op]()
    with pytest.raises(RuntimeError, match="before forward"):
        module.backward(dy)
    np.testing.assert_array_equal(module(x), y)
    np.testing.assert_array_equal(module.backward(dy), f_backward(dy, None, y=y))
    assert module.backward(dy, input_grad=False) is None
    assert module.state_dict() == {} and list(module.parameters()) == []
    assert repr(module) == f"{type(module).__name__}()"


@pytest.mark.parametrize("op", OPS)
def test_zero_size(core, op):
    x = np.zeros((0, 3, 4), np.float32)
    assert _forward(core, op)(x).shape == x.shape
    assert _backward(core, op)(x, x).shape == x.shape


@pytest.mark.parametrize("op", OPS)
def test_bad_input(core, op):
    x = np.ones((2, 3), np.float32)
    for bad in ("abc", None, np.ones(3, complex), {"a": 1}):
        with pytest.raises(TypeError, match="x"):
            _forward(core, op)(bad)
        with pytest.raises(TypeError, match="y"):
            _backward(core, op)(x, bad)
    with pytest.raises(TypeError, match="dy"):
        _backward(core, op)("dy", x)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3\)"):
        _backward(core, op)(np.ones((3, 2), np.float32), x)
    with pytest.raises(TypeError):
        _forward(core, op)()
