"""Parameter's arrays: what `p.data = ...` and `p.grad = ...` accept, as torch users write them."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import nn, optim


def _step(net, x):
    y = net(x)
    net.zero_grad()
    net.backward(np.ones_like(y))
    optim.SGD(net.parameters(), lr=0.1, momentum=0.9).step()


def test_constructor_copies(rng):
    source = rng.standard_normal((3, 4)).astype(np.float32)
    p = nn.Parameter(source)
    assert not np.shares_memory(p.data, source)
    assert p.data.flags.c_contiguous and p.data.dtype == np.float32


def test_float32_data_is_shared_as_torch_shares_it(rng):
    net = nn.Linear(5, 3)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    net.weight.data = w
    assert net.weight.data is w
    before = w.copy()
    _step(net, rng.standard_normal((4, 5)).astype(np.float32))
    assert not np.array_equal(w, before)  # the optimizer stepped the caller's array in place


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(np.float64),
        lambda a: np.asfortranarray(a),
        lambda a: a.astype(np.float16),
        lambda a: np.round(a * 10).astype(np.int64),
        lambda a: a.tolist(),
        lambda a: np.lib.stride_tricks.as_strided(a, writeable=False),
    ],
    ids=["float64", "fortran", "float16", "int64", "list", "read-only"],
)
def test_other_real_data_is_converted_and_trains(rng, make):
    w = rng.standard_normal((3, 5)).astype(np.float32)
    net = nn.Linear(5, 3)
    net.weight.data = make(w)
    p = net.weight
    assert p.data.dtype == np.float32 and p.data.flags.c_contiguous and p.data.flags.writeable
    np.testing.assert_array_equal(p.data, np.asarray(make(w), dtype=np.float32))
    before = p.data.copy()
    _step(net, rng.standard_normal((4, 5)).astype(np.float32))
    assert not np.array_equal(p.data, before)


def test_new_shape_gets_a_fresh_none_gradient(rng):
    p = nn.Parameter(rng.standard_normal((3, 4)))
    p.grad += 1.0
    assert not p.grad_is_none
    p.data = rng.standard_normal((3, 4))
    assert not p.grad_is_none and p.grad.shape == (3, 4)  # same shape: the gradient stays
    p.data = rng.standard_normal((2, 6))
    assert p.grad_is_none and p.grad.shape == (2, 6) and not p.grad.any()


@pytest.mark.parametrize("value", [np.array(["a", "b"]), np.ones(3, dtype=complex), None])
def test_non_real_data_is_refused(value):
    p = nn.Parameter(np.zeros(3))
    with pytest.raises(TypeError, match="data: expected a real numeric array"):
        p.data = value


def test_grad_must_have_data_shape(rng):
    p = nn.Parameter(rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match=r"grad: expected shape \(3, 4\)"):
        p.grad = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_grad_of_another_dtype_is_refused_as_torch_refuses_it(name):
    p = nn.Parameter(np.ones(3))
    opt = getattr(optim, name)([p], lr=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
    with pytest.raises(TypeError, match="grad: expected float32.*float64"):
        p.grad = np.ones(3)
    assert p.grad_is_none
    p.grad = np.full(3, 0.5, np.float32)
    opt.step()
    fresh = nn.Parameter(np.ones(3))
    fresh.grad[...] = 0.5
    getattr(optim, name)([fresh], **opt.defaults).step()
    np.testing.assert_array_equal(p.data, fresh.data)


def test_grad_in_another_layout_is_copied_contiguous(rng):
    p = nn.Parameter(rng.standard_normal((3, 4)))
    g = np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32))
    p.grad = g
    assert p.grad.flags.c_contiguous and not p.grad_is_none
    np.testing.assert_array_equal(p.grad, g)
    same = p.grad
    p.grad += 1.0  # in place, as backward passes add: the array is kept
    assert p.grad is same


def _starts_a_cache_line(a: np.ndarray) -> bool:
    return a.ctypes.data % 64 == 0


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (128, 3136), (32, 1, 3, 3)])
def test_arrays_a_parameter_allocates_start_a_cache_line(rng, shape):
    """Kernels read weights in whole vectors; one starting mid-line straddles two cache lines."""
    p = nn.Parameter(rng.standard_normal(shape))
    assert _starts_a_cache_line(p.data) and _starts_a_cache_line(p.grad)
    assert p.data.dtype == np.float32 and p.data.flags.c_contiguous and p.data.flags.writeable
    p.grad = None
    assert _starts_a_cache_line(p.grad) and p.grad.shape == shape
    p.data = rng.standard_normal((2, 9))  # float64: copied, with a new gradient for the new shape
    assert _starts_a_cache_line(p.grad)
    for layer in (nn.Linear(3136, 128), nn.Conv2d(3, 5, 3), nn.BatchNorm2d(7)):
        for param in layer.parameters():
            assert _starts_a_cache_line(param.data) and _starts_a_cache_line(param.grad)
