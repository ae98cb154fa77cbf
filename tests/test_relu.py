"""Tests of ReLU and leaky ReLU: every compiled variant against the float64 oracle and PyTorch,
the conventions at 0, +-inf and NaN, and bad input.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref

import fastcnn
import fastcnn.functional as F

RTOL = 1e-4
ATOL = 1e-5

# Any shape: a scalar-like vector, odd sizes, a conv activation, sizes off the SIMD width.
SHAPES = [(1,), (7,), (3, 17), (2, 3, 13, 11), (4, 64, 28, 28), (1000003,)]
SLOPES = [0.01, 0.2, 1.5, -0.3]


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_matches_oracle(core, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(core.relu_forward(x), ref.relu(x).astype(np.float32))
    np.testing.assert_array_equal(core.relu_backward(dy, x), ref.relu_backward(dy, x))


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_leaky_relu_matches_oracle(core, rng, shape, slope):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(
        core.leaky_relu_forward(x, slope), ref.leaky_relu(x, slope), rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(
        core.leaky_relu_backward(dy, x, slope),
        ref.leaky_relu_backward(dy, x, slope),
        rtol=RTOL,
        atol=ATOL,
    )


def _special_values(rng) -> np.ndarray:
    """Exact zeros (both signs), infinities and NaNs among ordinary values."""
    x = rng.standard_normal(4099).astype(np.float32)
    x[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan]
    x[rng.choice(np.arange(6, x.size), 200, replace=False)] = 0.0
    return rng.permutation(x)


def test_relu_matches_torch_at_special_values(core, rng):
    torch = pytest.importorskip("torch")
    x = _special_values(rng)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.relu(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(core.relu_forward(x), yt.detach().numpy())
    # The gradient at 0 is 0; a NaN input passes dy through (torch tests x <= 0).
    np.testing.assert_array_equal(core.relu_backward(dy, x), xt.grad.numpy())


@pytest.mark.parametrize("slope", SLOPES)
def test_leaky_relu_matches_torch_at_special_values(core, rng, slope):
    torch = pytest.importorskip("torch")
    x = _special_values(rng)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.leaky_relu(xt, slope)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(core.leaky_relu_forward(x, slope), yt.detach().numpy())
    np.testing.assert_array_equal(core.leaky_relu_backward(dy, x, slope), xt.grad.numpy())


def test_variants_agree_bitwise_across_thread_counts(rng):
    x = _special_values(rng).repeat(1000)  # large enough to go parallel, on 3 threads too
    dy = rng.standard_normal(x.shape).astype(np.float32)
    base = fastcnn._core._variants["ref"]
    want = [base.relu_forward(x), base.relu_backward(dy, x), base.leaky_relu_forward(x, 0.1)]
    want.append(base.leaky_relu_backward(dy, x, 0.1))
    threads = fastcnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fastcnn.set_num_threads(n)
            for core in fastcnn._core._variants.values():
                got = [core.relu_forward(x), core.relu_backward(dy, x)]
                got += [core.leaky_relu_forward(x, 0.1), core.leaky_relu_backward(dy, x, 0.1)]
                for a, b in zip(got, want):
                    np.testing.assert_array_equal(a, b)
    finally:
        fastcnn.set_num_threads(threads)


def test_functional_defaults_and_conversion(rng):
    x = rng.standard_normal((3, 4, 5))[:, ::2]  # non-contiguous float64
    x32 = np.ascontiguousarray(x, np.float32)
    saved = x.copy()
    np.testing.assert_array_equal(F.relu(x), F.relu(x32))
    np.testing.assert_array_equal(F.leaky_relu(x), fastcnn._core.leaky_relu_forward(x32, 0.01))
    np.testing.assert_array_equal(F.relu_backward(x, x), F.relu_backward(x32, x32))
    np.testing.assert_array_equal(F.leaky_relu_backward(x, x), F.leaky_relu_backward(x32, x32))
    np.testing.assert_array_equal(x, saved)
    assert F.relu(np.arange(-2, 3)).dtype == np.float32
    assert F.relu(np.array([True, False])).tolist() == [1.0, 0.0]
    y = F.relu(x32)
    assert not np.shares_memory(y, x32)


def test_zero_size(core):
    x = np.zeros((0, 3, 4), np.float32)
    assert core.relu_forward(x).shape == x.shape
    assert core.relu_backward(x, x).shape == x.shape
    assert core.leaky_relu_forward(x, 0.1).shape == x.shape
    assert core.leaky_relu_backward(x, x, 0.1).shape == x.shape


def test_python_threads_at_once(rng):
    xs = [rng.standard_normal(300_000).astype(np.float32) for _ in range(4)]
    expected = [F.leaky_relu(x, 0.1) for x in xs]
    results: list = [None] * len(xs)

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = F.leaky_relu(xs[i], 0.1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_bad_input(core):
    x = np.ones((2, 3), np.float32)
    for bad in ("abc", None, np.ones(3, complex), {"a": 1}):
        with pytest.raises(TypeError, match="x"):
            core.relu_forward(bad)
        with pytest.raises(TypeError, match="x"):
            F.leaky_relu(bad)
    with pytest.raises(ValueError, match="dy"):
        core.relu_backward(np.ones((3, 2), np.float32), x)
    with pytest.raises(ValueError, match="dy"):
        F.leaky_relu_backward(np.ones(6, np.float32), x)
    with pytest.raises(TypeError, match="dy"):
        core.relu_backward("dy", x)
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, "0.1")
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu_backward(x, x, None)


_CUDA_DEVICES, _CUDA_REASON = fastcnn._core.cuda_device_count()


@pytest.mark.skipif(_CUDA_DEVICES == 0, reason=f"no usable CUDA device: {_CUDA_REASON}")
@pytest.mark.parametrize("shape", [(1,), (257,), (3, 5, 7, 11), (2, 3, 331, 337)])
def test_cuda_relu_matches_cpu(rng, shape):
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    special = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0], np.float32)
    k = min(x.size, special.size)
    x.flat[-k:] = special[:k]
    got = fastcnn._core.cuda_relu_forward(x)
    # NaN stays NaN; the GPU may write the canonical NaN bits instead of the input's.
    np.testing.assert_array_equal(got, F.relu(x))


def test_cuda_relu_without_device_raises_runtime_error():
    if _CUDA_DEVICES > 0:
        pytest.skip("a CUDA device is present: the no-device path is not reachable")
    with pytest.raises(RuntimeError, match="CUDA"):
        fastcnn._core.cuda_relu_forward(np.ones(3, np.float32))
