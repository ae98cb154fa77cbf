"""linear: every compiled CPU variant against the float64 oracle, fastcnn.functional against torch,
argument checking, output_mask, dtype/layout conversion, zero-size batches and thread safety.

Layout key: x (..., C) with C in-features, w (K, C), b (K,), y and dy (..., K).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import reference as ref

import fastcnn
from fastcnn import functional as F

RTOL = 1e-4
# Per-term float32 rounding; a sum of L terms of size ~1 drifts by ~sqrt(L) times that, so the
# absolute tolerance of each comparison is ATOL * sqrt(reduction length).
ATOL = 1e-5

# (x shape, out_features)
CASES = [
    ((1, 1), 1),
    ((7,), 5),
    ((5, 7), 9),
    ((3, 4, 40), 70),
    ((2, 3, 2, 17), 33),
    ((64, 200), 33),
    ((130, 513), 257),
    ((16, 400), 120),  # LeNet's first fully connected layer
    ((2, 3136), 128),  # a 64*7*7 feature map into 128 units, batch 2
    ((128, 3136), 128),  # the same at batch 128: the forward is cut into depth slices
    ((37, 2053), 45),  # depth slices of odd length, partial row tiles and a partial panel
]
IDS = [f"{x}-{k}" for x, k in CASES]


def _inputs(rng, xs, k):
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((k, xs[-1])).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    return x, w, b


def _close(got, want, length):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * max(length, 1) ** 0.5)


# GEMM micro-tiles cut by the panel edges: out_features leaves every width of last B panel
# (AVX-512 panels are 32 wide: 1-16 take the one-vector kernel, 17-20 the one-column-at-a-time
# kernel, 21-31 the padded full tile; AVX2 panels are 16 wide), 11 or 3 rows leave partial row
# tiles, and 170 in-features are two depth slices, so the second accumulates.
TAIL_CASES = [((11, 170), k) for k in (1, 5, 16, 17, 18, 19, 20, 21, 31, 49, 52)]
TAIL_CASES += [((3, 170), k) for k in (17, 20, 49)]
# The backward products with more than one row of tiles (dx here: 9 rows) read their B operands
# (w for dx, x for dw) in place, copying one panel at a time from its rows (AVX-512: 48 wide,
# AVX2: 16): whole panels, then a last partial one (AVX-512: 1-16 columns take one vector, 17-20
# the one-column-at-a-time kernel where A is packed (dw), 21-32 two vectors, 33-47 the padded
# full tile), within a range of at most 8 panels (530 and 545: two ranges of 8 panels, then one
# of 146 or 161 columns).
TAIL_CASES += [((9, c), 13) for c in (16, 20, 21, 32, 33, 47, 49, 63, 68, 80, 530, 545)]
# The weight gradient packs dy^T once for all its column ranges (every case above with
# out_features <= in_features), unless it is too large: here each range packs its own.
TAIL_CASES += [((2100, 150), 128)]
# More out-features than in-features: dy^T is not packed ahead, and with more rows than one
# A block (AVX-512: 128, AVX2: 96) the weight gradient packs both operands block by block.
TAIL_CASES += [((20, 50), 130)]
# The forward packs w^T into B panels by register transposes: on AVX-512, 16 x 16 blocks for each
# 16-deep step, then 8 x 8 blocks and single elements. 37 and 45 in-features end each panel in
# a 5-deep tail (45 after one 8-deep step); 20 and 33 out-features leave a panel's second half
# with 4 or 0 lines and the next panel with 1.
TAIL_CASES += [((7, c), k) for c in (37, 45) for k in (20, 33)]
# A forward on one or two rows is dot products, eight outputs per pass over x, then the rest
# one at a time.
TAIL_CASES += [((1, 170), k) for k in (7, 8, 9, 15, 17)] + [((2, 33), 23)]


@pytest.mark.parametrize(
    ("xs", "k"), CASES + TAIL_CASES, ids=IDS + [f"{x}-{k}" for x, k in TAIL_CASES]
)
def test_variants_match_oracle(core, rng, xs, k) -> None:
    x, w, b = _inputs(rng, xs, k)
    want_y = ref.linear(x, w, b)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    want_dx, want_dw, want_db = ref.linear_backward(dy, x, w)
    rows = x.size // xs[-1]
    _close(core.linear_forward(x, w, b), want_y, xs[-1])
    _close(core.linear_forward(x, w, None), want_y - b, xs[-1])
    _close(core.linear_backward_input(dy, w), want_dx, k)
    dw, db = core.linear_backward_weight(dy, x)
    _close(dw, want_dw, rows)
    _close(db, want_db, rows)


@pytest.mark.parametrize(("xs", "k"), CASES, ids=IDS)
def test_functional_matches_torch(rng, xs, k) -> None:
    torch = pytest.importorskip("torch")
    x, w, b = _inputs(rng, xs, k)
    tx, tw, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    rows = x.size // xs[-1]
    _close(F.linear(x, w, b), ty.detach().numpy(), xs[-1])
    dx, dw, db = F.linear_backward(dy, x, w)
    _close(dx, tx.grad.numpy(), k)
    _close(dw, tw.grad.numpy(), rows)
    _close(db, tb.grad.numpy(), rows)


@pytest.mark.parametrize(
    "mask",
    [(True, False, False), (False, True, False), (False, False, True), (False, False, False)],
)
def test_output_mask(rng, mask) -> None:
    x, w, _ = _inputs(rng, (6, 11), 7)
    dy = rng.standard_normal((6, 7)).astype(np.float32)
    full = F.linear_backward(dy, x, w)
    for want_it, g, f in zip(mask, F.linear_backward(dy, x, w, output_mask=mask), full):
        if want_it:
            np.testing.assert_array_equal(g, f)
        else:
            assert g is None


def test_converts_dtype_and_layout(rng) -> None:
    xt = rng.standard_normal((9, 5)).T  # float64, Fortran order
    w = rng.integers(-3, 4, (4, 9))
    b = rng.standard_normal(4)
    want = F.linear(
        np.ascontiguousarray(xt, np.float32), w.astype(np.float32), b.astype(np.float32)
    )
    got = F.linear(xt, w, b)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    dy = rng.standard_normal((5, 4))[::-1]
    want_g = F.linear_backward(
        np.ascontiguousarray(dy, np.float32),
        np.ascontiguousarray(xt, np.float32),
        w.astype(np.float32),
    )
    for g, wg in zip(F.linear_backward(dy, xt, w), want_g):
        np.testing.assert_array_equal(g, wg)


def test_float32_arrays_near_the_plain_case_read_the_same(rng) -> None:
    """_core takes a native C-contiguous aligned float32 ndarray as it is; big-endian, unaligned,
    strided, read-only and subclassed float32 arrays give the same result as their plain copies."""
    from fastcnn import _core

    x = rng.standard_normal((3, 13)).astype(np.float32)
    w = rng.standard_normal((6, 13)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    want = _core.linear_forward(x, w, b)
    np.testing.assert_allclose(want, ref.linear(x, w, b), rtol=RTOL, atol=ATOL * np.sqrt(13))
    unaligned = np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1).reshape(x.shape)
    assert not unaligned.flags.aligned
    read_only = x.copy()
    read_only.flags.writeable = False

    class Sub(np.ndarray):
        pass

    variants = [
        x.astype(">f4"),
        unaligned,
        np.asfortranarray(x),
        np.repeat(x, 2, axis=1)[:, ::2],
        read_only,
        x.view(Sub),
    ]
    for v in variants:
        got = _core.linear_forward(v, w, b)
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_core.linear_forward(x, w.astype(">f4"), b.astype(">f4")), want)


def test_zero_size_batch(core) -> None:
    x = np.ones((0, 7), np.float32)
    w = np.ones((5, 7), np.float32)
    y = core.linear_forward(x, w, np.ones(5, np.float32))
    assert y.shape == (0, 5)
    assert core.linear_backward_input(y, w).shape == (0, 7)
    dw, db = core.linear_backward_weight(y, x)
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros(5, np.float32))


def test_caller_arrays_unchanged(rng) -> None:
    x, w, b = _inputs(rng, (4, 12), 6)
    dy = rng.standard_normal((4, 6)).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, dy)]
    F.linear(x, w, b)
    F.linear_backward(dy, x, w)
    for a, c in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, c)


def _at_thread_counts(call, counts=(1, 2, 3)) -> list:
    """call() at each thread count, the process's count restored afterwards."""
    before = fastcnn.get_num_threads()
    try:
        outs = []
        for n in counts:
            fastcnn.set_num_threads(n)
            outs.append(call())
    finally:
        fastcnn.set_num_threads(before)
    return outs


def test_depth_sliced_forward_is_the_same_at_any_thread_count(rng) -> None:
    # The depth cut of a deep, narrow forward depends on the shape only: every output is summed
    # in the same order whatever the thread count, so the results are bitwise equal.
    x, w, b = _inputs(rng, (70, 2600), 90)
    outs = _at_thread_counts(lambda: F.linear(x, w, b))
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def test_few_row_forward_is_the_same_at_any_thread_count(rng) -> None:
    # One or two rows take dot products, whose outputs the threads split by ranges: each output
    # is summed in the same order on any thread, so the results are bitwise equal.
    x, w, b = _inputs(rng, (1, 3136), 131)
    outs = _at_thread_counts(lambda: F.linear(x, w, b))
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


@pytest.mark.parametrize("c", [1, 3, 17, 3137])
@pytest.mark.parametrize("k", [1, 5, 129])
def test_one_row_matches_oracle_and_the_batched_rows(core, rng, c, k) -> None:
    # One and two rows take dot products, more rows (c < 256) the GEMM: each row alone, the first
    # two together and all three in one batch must match the oracle, and one another within
    # rounding (each path may sum in its own order).
    x, w, b = _inputs(rng, (3, c), k)
    want = ref.linear(x, w, b)
    batched = core.linear_forward(x, w, b)
    pair = core.linear_forward(x[:2], w, b)
    for i in range(3):
        alone = core.linear_forward(x[i : i + 1], w, b)
        _close(alone[0], want[i], c)
        _close(alone[0], batched[i], c)
        if i < 2:
            _close(pair[i], alone[0], c)


@pytest.mark.parametrize("n", [3, 4, 5, 7, 8])
@pytest.mark.parametrize(("c", "k"), [(256, 1), (301, 6), (515, 9), (3136, 130)])
def test_few_rows_match_the_oracle_and_each_row_alone(core, rng, n, c, k) -> None:
    # Three to eight rows of 256 or more take dot products in tiles of rows and outputs (k not a
    # multiple of the tile's outputs, c not of the vector): each output is summed in the order
    # of one row alone, so every row equals that row computed by itself, bit for bit.
    x, w, b = _inputs(rng, (n, c), k)
    got = core.linear_forward(x, w, b)
    _close(got, ref.linear(x, w, b), c)
    for i in range(n):
        np.testing.assert_array_equal(got[i], core.linear_forward(x[i : i + 1], w, b)[0])
    outs = _at_thread_counts(lambda: core.linear_forward(x, w, b))
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def _placed(a: np.ndarray, skew: int) -> np.ndarray:
    """A copy of a that starts `skew` floats past a 64-byte boundary."""
    buf = np.empty(a.size + 32, np.float32)
    start = (-buf.ctypes.data % 64) // 4 + skew
    out = buf[start : start + a.size].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize(("c", "k"), [(16, 8), (48, 9), (3136, 129)])
def test_one_row_is_the_same_at_any_alignment(core, rng, c, k) -> None:
    # Rows of w that share a misalignment are read a whole cache line at a time (AVX-512), each
    # element still added to the partial sum it has from aligned rows: the same bits at every
    # placement of w and x, signed zeros, Inf and NaN included.
    x, w, b = _inputs(rng, (2, c), k)
    x[0, :3] = [-0.0, np.inf, 1e-30]
    w[1, :3] = [-0.0, 2.0, -1e-30]
    w[2, 1] = np.nan
    w[3] = -0.0
    want = core.linear_forward(_placed(x, 0), _placed(w, 0), b)
    with np.errstate(invalid="ignore"):  # the NaN weight
        oracle = ref.linear(x[1:], w, b)[0]
    finite = np.isfinite(oracle)
    assert finite.sum() == k - 1
    _close(want[1][finite], oracle[finite], c)
    for skew in range(1, 16):
        got = core.linear_forward(_placed(x, (3 * skew) % 16), _placed(w, skew), b)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        got_one = core.linear_forward(_placed(x[:1], skew), _placed(w, skew), b)
        np.testing.assert_array_equal(got_one.view(np.uint32), want[:1].view(np.uint32))


def test_one_row_sees_a_weight_changed_in_place(rng) -> None:
    # Nothing derived from w may outlive a call: a weight changed in place between two batch-1
    # calls gives the new result, bit for bit what a fresh copy of it gives.
    x, w, b = _inputs(rng, (1, 3137), 129)
    F.linear(x, w, b)
    w[-1, -1] += 0.5
    w[0, :] *= -1.0
    got = F.linear(x, w, b)
    np.testing.assert_array_equal(got, F.linear(x, w.copy(), b))
    _close(got, ref.linear(x, w, b), 3137)


def test_wide_backward_is_the_same_at_any_thread_count(rng) -> None:
    # Wide products run as column ranges of at most 8 B panels, however many threads share
    # them; a range does not change any element's summation order, so the gradients are bitwise
    # equal. 1100 in-features: five ranges, the last with a partial panel.
    x, w, _ = _inputs(rng, (45, 1100), 70)
    dy = rng.standard_normal((45, 70)).astype(np.float32)
    outs = _at_thread_counts(lambda: F.linear_backward(dy, x, w))
    for grads in outs[1:]:
        for got, want in zip(grads, outs[0]):
            np.testing.assert_array_equal(got, want)


def test_thread_count_and_concurrent_callers(rng) -> None:
    jobs = [_inputs(rng, (96 + i, 300), 150) for i in range(4)]
    jobs = [
        (x, w, b, rng.standard_normal((x.shape[0], 150)).astype(np.float32)) for x, w, b in jobs
    ]

    def run(job):
        x, w, b, dy = job
        return F.linear(x, w, b), *F.linear_backward(dy, x, w)

    before = fastcnn.get_num_threads()
    try:
        fastcnn.set_num_threads(1)
        serial = [run(j) for j in jobs]
        fastcnn.set_num_threads(2)
        parallel = [run(j) for j in jobs]
    finally:
        fastcnn.set_num_threads(before)
    for s, p in zip(serial, parallel):
        for a, b in zip(s, p):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    results = [None] * len(jobs)
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, run(jobs[i])))
        for i in range(len(jobs))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p, r in zip(parallel, results):
        for a, b in zip(p, r):
            np.testing.assert_array_equal(b, a)


X = np.ones((3, 8), np.float32)
W = np.ones((5, 8), np.float32)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.float32(1.0), W), ValueError, "x"),
        ((X, np.ones(8, np.float32)), ValueError, "weight"),
        ((X, np.ones((5, 7), np.float32)), ValueError, "x"),
        ((X, W, np.ones(4, np.float32)), ValueError, "bias"),
        ((X, W, np.ones((5, 1), np.float32)), ValueError, "bias"),
        (("abc", W), TypeError, "x"),
        ((X, None), TypeError, "weight"),
        ((X, W, "b"), TypeError, "bias"),
    ],
)
def test_bad_input_forward(args, error, match) -> None:
    with pytest.raises(error, match=match):
        F.linear(*args)
    with pytest.raises(error, match=match):
        fastcnn._core.linear_forward(*args, *([None] if len(args) == 2 else []))


def test_bad_input_backward(core) -> None:
    dy = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="dy"):
        core.linear_backward_input(dy[:, :4], W)
    with pytest.raises(ValueError, match="weight"):
        core.linear_backward_input(dy, W[0])
    with pytest.raises(ValueError, match="dy"):
        core.linear_backward_weight(dy[:2], X)
    with pytest.raises(ValueError, match="x"):
        core.linear_backward_weight(dy, np.float32(2.0))
    with pytest.raises(ValueError, match="dy"):
        F.linear_backward(dy[:, :4], X, W)
    with pytest.raises(ValueError, match="output_mask"):
        F.linear_backward(dy, X, W, output_mask=(True,))
