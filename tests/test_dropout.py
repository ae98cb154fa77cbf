"""Tests of dropout: seed-reproducible masks (independent of variant and thread count), PyTorch's
scaling and p == 1 / eval conventions, the float64 oracle, and bad input.
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

# float32(1) / float32(1 - p) and float32(1 / (1 - p)) differ for this p: it pins which scale
# PyTorch multiplies by (the first).
P_SCALE_PIN = 0.6930217329347984


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, P_SCALE_PIN, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 3, 13, 11), (4, 37, 129)])
def test_dropout_matches_oracle(core, rng, shape, p):
    x = rng.standard_normal(shape).astype(np.float32)
    y, mask = core.dropout_forward(x, p, 1234)
    assert mask.dtype == np.uint8 and mask.shape == x.shape and y.shape == x.shape
    assert set(np.unique(mask)) <= {0, 1}
    np.testing.assert_allclose(y, ref.dropout_apply(x, mask, p), rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(
        core.dropout_backward(dy, mask, p), ref.dropout_backward(dy, mask, p), rtol=RTOL, atol=ATOL
    )


def test_variants_agree_bitwise_and_mask_ignores_thread_count(rng):
    x = rng.standard_normal((12, 64, 33, 17)).astype(np.float32)  # big enough for 3 threads
    y0, m0 = fastcnn._core._variants["ref"].dropout_forward(x, 0.3, 99)
    threads = fastcnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fastcnn.set_num_threads(n)
            for name, core in fastcnn._core._variants.items():
                y, m = core.dropout_forward(x, 0.3, 99)
                np.testing.assert_array_equal(m, m0, err_msg=f"{name}, {n} threads")
                np.testing.assert_array_equal(y, y0, err_msg=f"{name}, {n} threads")
                np.testing.assert_array_equal(core.dropout_backward(x, m, 0.3), y0)
    finally:
        fastcnn.set_num_threads(threads)


def test_seed_reproduces_the_mask_and_none_draws_a_new_one(rng):
    x = rng.standard_normal((64, 100)).astype(np.float32)
    np.testing.assert_array_equal(F.dropout(x, 0.5, seed=7), F.dropout(x, 0.5, seed=7))
    assert not np.array_equal(F.dropout(x, 0.5, seed=7), F.dropout(x, 0.5, seed=8))
    assert not np.array_equal(F.dropout(x, 0.5), F.dropout(x, 0.5))
    # The mask depends on (seed, flat index) only, not on the values or the shape.
    _, m1 = fastcnn._core.dropout_forward(x, 0.5, 7)
    _, m2 = fastcnn._core.dropout_forward(np.ones(6400), 0.5, 7)
    np.testing.assert_array_equal(m1.reshape(-1), m2)
    _, m_big = fastcnn._core.dropout_forward(x, 0.5, 2**64 - 1)
    assert m_big.any() and not m_big.all()


@pytest.mark.parametrize("p", [0.05, 0.5, 0.8])
def test_drop_rate_is_p(p):
    n = 200_000
    _, mask = fastcnn._core.dropout_forward(np.ones(n, np.float32), p, 2024)
    dropped = 1.0 - mask.mean()
    # Binomial: 5 standard deviations.
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)
    # Neighbouring elements and seeds are uncorrelated.
    m = mask.astype(np.float64) - mask.mean()
    assert abs(np.mean(m[1:] * m[:-1])) < 5 * p * (1 - p) / np.sqrt(n)
    _, other = fastcnn._core.dropout_forward(np.ones(n, np.float32), p, 2025)
    agree = np.mean(mask == other)
    expected = p * p + (1 - p) * (1 - p)
    assert abs(agree - expected) < 5 * np.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, P_SCALE_PIN])
def test_scaling_matches_torch(core, rng, p):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    y, mask = core.dropout_forward(x, p, 3)
    # torch's mask is its own random stream: feed ours through its formula (x * mask / (1 - p)).
    keep = torch.from_numpy(mask.astype(np.float32))
    xt = torch.from_numpy(x).requires_grad_()
    yt = xt * keep.div_(1 - p)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    # ... and check that formula is torch's dropout: on ones, the kept values are the scale itself.
    ones_t = torch.nn.functional.dropout(torch.ones(1000), p).numpy()
    ones, _ = core.dropout_forward(np.ones(1000, np.float32), p, 3)
    np.testing.assert_array_equal(np.unique(ones_t[ones_t != 0]), np.unique(ones[ones != 0]))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(core.dropout_backward(dy, mask, p), xt.grad.numpy())


def test_p_one_eval_mode_and_nan_follow_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 50)).astype(np.float32)
    x[0, :5] = np.nan
    for p in (1.0, 0.5):
        y, _mask = fastcnn._core.dropout_forward(x, p, 5)
        # torch multiplies, so a NaN stays NaN even where it is dropped.
        assert np.isnan(y[0, :5]).all()
        np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_array_equal(
        F.dropout(x, 1.0), torch.nn.functional.dropout(torch.from_numpy(x), 1.0).numpy()
    )
    assert not F.dropout(x[1:], 1.0).any()
    y = F.dropout(x, 0.5, training=False)
    np.testing.assert_array_equal(y, x)
    assert y is not x and not np.shares_memory(y, x)
    np.testing.assert_array_equal(F.dropout(x, 0.0, seed=1), x)


def test_backward_from_seed_equals_backward_from_mask(rng):
    x = rng.standard_normal((2, 3, 13, 11)).astype(np.float32)
    dy = rng.standard_normal(x.shape)  # float64: converted
    _, mask = fastcnn._core.dropout_forward(x, 0.4, 77)
    from_mask = F.dropout_backward(dy, mask, 0.4)
    np.testing.assert_array_equal(F.dropout_backward(dy, 77, 0.4), from_mask)
    np.testing.assert_array_equal(F.dropout_backward(dy, np.uint64(77), 0.4), from_mask)
    np.testing.assert_array_equal(F.dropout_backward(dy, mask.astype(bool), 0.4), from_mask)
    np.testing.assert_array_equal(
        F.dropout(x, 0.4, seed=77), fastcnn._core.dropout_forward(x, 0.4, 77)[0]
    )


def test_inputs_converted_and_unchanged(rng):
    x = rng.standard_normal((6, 10))[:, ::2]  # non-contiguous float64
    saved = x.copy()
    y, mask = fastcnn._core.dropout_forward(x, 0.5, 1)
    y32, _ = fastcnn._core.dropout_forward(np.ascontiguousarray(x, np.float32), 0.5, 1)
    np.testing.assert_array_equal(y, y32)
    assert y.dtype == np.float32
    mask_saved = mask.copy()
    F.dropout_backward(x, mask, 0.5)
    np.testing.assert_array_equal(x, saved)
    np.testing.assert_array_equal(mask, mask_saved)
    assert F.dropout(np.arange(6), 0.5, seed=3).dtype == np.float32


def test_zero_size(core):
    y, mask = core.dropout_forward(np.zeros((0, 5), np.float32), 0.5, 1)
    assert y.shape == mask.shape == (0, 5)
    assert core.dropout_backward(y, mask, 0.5).shape == (0, 5)


def test_python_threads_at_once(rng):
    xs = [rng.standard_normal((64, 1000)).astype(np.float32) for _ in range(4)]
    expected = [F.dropout(x, 0.3, seed=i) for i, x in enumerate(xs)]
    results: list = [None] * len(xs)

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = F.dropout(xs[i], 0.3, seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((np.ones(3), -0.1, 1), ValueError, "p"),
        ((np.ones(3), 1.5, 1), ValueError, "p"),
        ((np.ones(3), float("nan"), 1), ValueError, "p"),
        ((np.ones(3), "half", 1), TypeError, "p"),
        ((np.ones(3), 0.5, -1), ValueError, "seed"),
        ((np.ones(3), 0.5, 2**64), ValueError, "seed"),
        ((np.ones(3), 0.5, 1.5), TypeError, "seed"),
        ((np.ones(3), 0.5, True), TypeError, "seed"),
        (("abc", 0.5, 1), TypeError, "x"),
        ((None, 0.5, 1), TypeError, "x"),
    ],
)
def test_forward_bad_input(core, args, exc, match):
    with pytest.raises(exc, match=match):
        core.dropout_forward(*args)
    if args[2] is not True:  # functional refuses the bool seed too
        with pytest.raises(exc, match=match):
            F.dropout(args[0], args[1], seed=args[2])


def test_backward_bad_input(core):
    dy = np.ones((3, 4), np.float32)
    good = np.ones((3, 4), np.uint8)
    with pytest.raises(ValueError, match="mask"):
        core.dropout_backward(dy, good[:2], 0.5)
    with pytest.raises(TypeError, match="mask"):
        core.dropout_backward(dy, good.astype(np.float32), 0.5)
    with pytest.raises(TypeError, match="mask"):
        core.dropout_backward(dy, good.astype(np.int64), 0.5)
    with pytest.raises(TypeError, match="mask"):
        core.dropout_backward(dy, None, 0.5)
    bad = good.copy()
    bad[2, 1] = 2
    with pytest.raises(ValueError, match="mask"):
        F.dropout_backward(dy, bad, 0.5)
    with pytest.raises(ValueError, match="p"):
        core.dropout_backward(dy, good, 2.0)
    with pytest.raises(TypeError, match="dy"):
        core.dropout_backward("dy", good, 0.5)
    with pytest.raises(ValueError, match="seed"):
        F.dropout_backward(dy, -3, 0.5)
