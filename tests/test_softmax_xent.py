"""Softmax, log-softmax, cross-entropy and MSE: every compiled variant against the float64 oracle,
functional against PyTorch.

Layout key: softmax reduces over `dim` of any rank; cross_entropy takes logits (N, C) or
(N, C, d1, ...) and integer labels (N,) or (N, d1, ...).
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as oracle
from gradcheck import check_backward

import fastcnn
from fastcnn import functional as F

RTOL = 1e-4
ATOL = 1e-5
# float32 torch rounds its own way; agreement with it pins conventions, not the last digit.
TORCH_RTOL = 1e-4
TORCH_ATOL = 1e-5

# (shape, dim): rank 1 to 4, dims 0, 1 and -1; (2, 3, 5, 70) has a strided row of 350 positions,
# more than one block of 64 and a partial one.
CASES = [
    ((7,), 0),
    ((7,), -1),
    ((5, 10), 0),
    ((5, 10), 1),
    ((4, 1000), -1),
    ((3, 33, 7), 1),
    ((3, 33, 7), 0),
    ((3, 33, 7), -1),
    ((2, 3, 5, 70), 1),
    ((2, 3, 5, 70), -1),
    ((1, 10, 1, 1), 1),
    ((130, 29), 1),  # short rows, reduced across blocks of 16 (or 8) rows: a partial block last
    ((64, 63), -1),
    ((65, 1), 1),
    ((3, 64), 1),  # the shortest row reduced along itself: whole vectors, no partial one
    ((9, 77), 1),  # four whole vectors and a partial one
    ((2, 5, 3, 1), 2),  # strided rows of one position
]


def _logits(rng, shape, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- softmax / log_softmax kernels, every variant --------------------------------------------


@pytest.mark.parametrize("shape, dim", CASES)
def test_softmax_matches_oracle(core, rng, shape, dim):
    x = _logits(rng, shape)
    np.testing.assert_allclose(
        core.softmax_forward(x, dim), oracle.softmax(x, dim), rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(
        core.log_softmax_forward(x, dim), oracle.log_softmax(x, dim), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("shape, dim", CASES)
def test_softmax_backward_matches_oracle(core, rng, shape, dim):
    x = _logits(rng, shape)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = core.softmax_forward(x, dim)
    np.testing.assert_allclose(
        core.softmax_backward(dy, y, dim), oracle.softmax_backward(dy, x, dim), rtol=RTOL, atol=ATOL
    )
    logy = core.log_softmax_forward(x, dim)
    np.testing.assert_allclose(
        core.log_softmax_backward(dy, logy, dim),
        oracle.log_softmax_backward(dy, x, dim),
        rtol=RTOL,
        atol=ATOL,
    )


@pytest.mark.parametrize("shape, dim", [((6, 50), 1), ((3, 8, 80), 1)])
def test_huge_logits_stay_finite(core, rng, shape, dim):
    x = (rng.choice([-1e4, 1e4], shape) + rng.standard_normal(shape)).astype(np.float32)
    for op, want in [
        (core.softmax_forward, oracle.softmax),
        (core.log_softmax_forward, oracle.log_softmax),
    ]:
        y = op(x, dim)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, want(x, dim), rtol=RTOL, atol=ATOL)
    labels = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    loss, _ = core.softmax_xent_forward(x, labels, 0.1)
    assert loss == pytest.approx(oracle.cross_entropy(x, labels, 0.1), rel=RTOL)


@pytest.mark.parametrize("shape", [(37, 10), (5, 100), (3, 12, 21)])
def test_small_log_probabilities_keep_their_digits(core, rng, shape):
    """Where one logit dominates, log_softmax's top output and the loss are -log(1 + tiny): the
    sum of exponentials must keep the tiny part (relative, not absolute, agreement)."""
    x = _logits(rng, shape, scale=1.0)
    top = np.argmax(x, axis=1)
    gap = rng.uniform(5.0, 20.0, top.shape).astype(np.float32)  # sums from 1 + 1e-8 to ~1.06
    np.put_along_axis(x, top[:, None], np.max(x, axis=1, keepdims=True) + gap[:, None], axis=1)
    want = np.take_along_axis(oracle.log_softmax(x, 1), top[:, None], axis=1)
    got = np.take_along_axis(core.log_softmax_forward(x, 1), top[:, None], axis=1)
    assert (want < 0).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    loss, _ = core.softmax_xent_forward(x, top, 0.0)
    assert loss == pytest.approx(-want.mean(), rel=1e-5)


@pytest.mark.parametrize("offset", [1e6, -1e6, 1e17, 3e38])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_loss_keeps_its_digits_under_a_large_common_logit_offset(
    core, rng, offset, label_smoothing
):
    # The loss is a sum of gaps max - z[c] and log(sum): adding z's magnitude back first (max +
    # logsum, or the mean of the raw logits) rounded the loss to 0 on equal 1e17 logits and made
    # the smoothing term 1e-4 off at an offset of 1e6 (NaN at 3e38); torch keeps 7 digits.
    z = (offset + rng.standard_normal((9, 16)) * abs(offset) * 1e-7).astype(np.float32)
    z[0] = np.float32(offset)  # one row of equal logits: its loss is log(16)
    t = rng.integers(0, 16, 9)
    loss, _ = core.softmax_xent_forward(z, t, label_smoothing)
    assert loss == pytest.approx(oracle.cross_entropy(z, t, label_smoothing), rel=1e-6)
    one, _ = core.softmax_xent_forward(z[:1], t[:1], label_smoothing)
    assert one == pytest.approx(np.log(16.0), rel=1e-6)


def test_nan_spreads_over_its_row_like_torch(core, rng):
    torch = pytest.importorskip("torch")
    x = _logits(rng, (3, 20))
    x[1, 4] = np.nan
    want = torch.softmax(torch.tensor(x), 1).numpy()
    np.testing.assert_array_equal(np.isnan(core.softmax_forward(x, 1)), np.isnan(want))
    np.testing.assert_array_equal(np.isnan(core.log_softmax_forward(x, 1)), np.isnan(want))


@pytest.mark.parametrize("shape", [(21, 6), (4, 33), (5, 90), (3, 7, 19)])
def test_special_values_match_torch(core, rng, shape):
    """NaN, +-inf, huge and subnormal logits, in short rows, long rows and strided rows: torch's
    float64 result, NaN for NaN."""
    torch = pytest.importorskip("torch")
    x = _logits(rng, shape)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=max(4, flat.size // 8), replace=False)
    flat[picks] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-40], picks.size)
    x[0] = -np.inf  # a row (or plane) of -inf only
    for op, top in [
        (core.softmax_forward, torch.softmax),
        (core.log_softmax_forward, torch.log_softmax),
    ]:
        got = op(x, 1)
        want = top(torch.tensor(x, dtype=torch.float64), 1).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_same_result_for_any_thread_count(core, rng):
    x = _logits(rng, (256, 300))
    x4 = _logits(rng, (32, 30, 90))
    short = _logits(rng, (3000, 17))
    labels = rng.integers(0, 300, 256)
    before = fastcnn.get_num_threads()
    try:
        results = []
        for n in (1, 3):
            fastcnn.set_num_threads(n)
            loss, probs = core.softmax_xent_forward(x, labels, 0.1)
            results.append(
                (
                    np.float64(loss),
                    probs,
                    core.softmax_forward(x4, 1),
                    core.softmax_forward(short, 1),
                )
            )
    finally:
        fastcnn.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- cross-entropy kernels, every variant ----------------------------------------------------


@pytest.mark.parametrize("N", [1, 7, 128])
@pytest.mark.parametrize("C", [2, 10, 1000])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_xent_matches_oracle(core, rng, N, C, label_smoothing):
    z = _logits(rng, (N, C))
    t = rng.integers(0, C, N)
    loss, probs = core.softmax_xent_forward(z, t, label_smoothing)
    assert isinstance(loss, float)
    assert loss == pytest.approx(oracle.cross_entropy(z, t, label_smoothing), rel=1e-6)
    np.testing.assert_allclose(probs, oracle.softmax(z, 1), rtol=RTOL, atol=ATOL)
    dz = core.softmax_xent_backward(probs, t, label_smoothing, 2.5)
    want = oracle.cross_entropy_backward(z, t, label_smoothing, 2.5)
    np.testing.assert_allclose(dz, want, rtol=RTOL, atol=ATOL / N)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_xent_spatial_matches_oracle(core, rng, label_smoothing):
    z = _logits(rng, (3, 5, 4, 6))
    t = rng.integers(0, 5, (3, 4, 6))
    loss, probs = core.softmax_xent_forward(z, t, label_smoothing)
    assert loss == pytest.approx(oracle.cross_entropy(z, t, label_smoothing), rel=1e-6)
    np.testing.assert_allclose(probs, oracle.softmax(z, 1), rtol=RTOL, atol=ATOL)
    dz = core.softmax_xent_backward(probs, t, label_smoothing, 1.0)
    want = oracle.cross_entropy_backward(z, t, label_smoothing)
    np.testing.assert_allclose(dz, want, rtol=RTOL, atol=ATOL / t.size)


# ---- functional against PyTorch --------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, dim", [((5, 10), 1), ((3, 33, 7), -1), ((2, 3, 5, 6), 1), ((9,), 0)]
)
def test_functional_softmax_matches_torch(rng, shape, dim):
    torch = pytest.importorskip("torch")
    x = _logits(rng, shape)
    dy = rng.standard_normal(shape).astype(np.float32)
    for ours, ours_bwd, theirs in [
        (F.softmax, F.softmax_backward, torch.softmax),
        (F.log_softmax, F.log_softmax_backward, torch.log_softmax),
    ]:
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx, dim)
        ty.backward(torch.tensor(dy))
        y = ours(x, dim)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
        np.testing.assert_array_equal(ours(x, axis=dim), y)
        dx = ours_bwd(dy, x, dim)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
        np.testing.assert_array_equal(ours_bwd(dy, None, axis=dim, y=y), dx)


@pytest.mark.parametrize("shape, dim", [((4, 6), 1), ((4, 6, 3, 2), 1), ((4, 6, 3), 0)])
def test_softmax_default_dim_is_torchs(rng, shape, dim):
    # PyTorch's implicit choice: dim 1, except dim 0 for an unbatched (C, H, W) rank-3 input
    x = _logits(rng, shape)
    np.testing.assert_array_equal(F.softmax(x), F.softmax(x, dim))
    np.testing.assert_array_equal(F.log_softmax(x), F.log_softmax(x, dim=dim, axis=dim))


def test_softmax_default_dim_of_a_vector_is_0(rng):
    # a 1-D input has no dim 1; PyTorch's implicit choice is dim 0 there
    x = _logits(rng, (7,))
    dy = _logits(rng, (7,))
    np.testing.assert_array_equal(F.softmax(x), F.softmax(x, 0))
    np.testing.assert_array_equal(F.log_softmax(x), F.log_softmax(x, 0))
    np.testing.assert_array_equal(F.softmax_backward(dy, x), F.softmax_backward(dy, x, 0))
    np.testing.assert_array_equal(F.log_softmax_backward(dy, x), F.log_softmax_backward(dy, x, 0))


@pytest.mark.parametrize("N, C", [(1, 2), (7, 10), (128, 1000)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_functional_cross_entropy_matches_torch(rng, N, C, label_smoothing):
    torch = pytest.importorskip("torch")
    z = _logits(rng, (N, C))
    t = rng.integers(0, C, N)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t), label_smoothing=label_smoothing)
    (tl * 0.5).backward()
    loss = F.cross_entropy(z, t, label_smoothing)
    assert loss == pytest.approx(tl.item(), rel=1e-5)
    dz = F.cross_entropy_backward(z, t, label_smoothing, 0.5)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL / N)
    loss2, probs = F.cross_entropy_with_probabilities(z, t, label_smoothing)
    assert loss2 == loss
    np.testing.assert_array_equal(
        F.cross_entropy_backward(None, t, label_smoothing, 0.5, probabilities=probs), dz
    )


def test_functional_cross_entropy_spatial_matches_torch(rng):
    torch = pytest.importorskip("torch")
    z = _logits(rng, (2, 4, 3, 5))
    t = rng.integers(0, 4, (2, 3, 5))
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t), label_smoothing=0.1)
    tl.backward()
    assert F.cross_entropy(z, t, 0.1) == pytest.approx(tl.item(), rel=1e-5)
    np.testing.assert_allclose(
        F.cross_entropy_backward(z, t, 0.1), tz.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL
    )


def test_mse_loss_matches_torch_and_oracle(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((4, 3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 3, 5)).astype(np.float32)
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tl = torch.nn.functional.mse_loss(ta, tb)
    (tl * 3.0).backward()
    assert F.mse_loss(a, b) == pytest.approx(tl.item(), rel=1e-6)
    assert F.mse_loss(a, b) == pytest.approx(oracle.mse_loss(a, b), rel=1e-6)
    da, db = F.mse_loss_backward(a, b, 3.0)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    for g, want in zip((da, db), oracle.mse_loss_backward(a, b, 3.0)):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL)


# ---- zero-size, conversions, threads ---------------------------------------------------------


def test_zero_size(core):
    for shape, dim in [((0, 5), 1), ((3, 0), 1), ((2, 0, 4), -1)]:
        x = np.zeros(shape, np.float32)
        assert core.softmax_forward(x, dim).shape == shape
        assert core.log_softmax_backward(x, x, dim).shape == shape
    # An empty batch's mean loss is NaN, as in PyTorch; its gradient is empty.
    z = np.zeros((0, 5), np.float32)
    t = np.zeros(0, np.int64)
    loss, probs = core.softmax_xent_forward(z, t, 0.0)
    assert np.isnan(loss) and probs.shape == (0, 5)
    assert core.softmax_xent_backward(probs, t, 0.0, 1.0).shape == (0, 5)
    assert np.isnan(F.cross_entropy(z, t))
    assert F.cross_entropy_backward(z, t).shape == (0, 5)
    assert np.isnan(F.mse_loss(np.zeros(0), np.zeros(0)))
    assert F.mse_loss_backward(np.zeros((0, 2)), np.zeros((0, 2)))[0].shape == (0, 2)


@pytest.mark.parametrize(
    "shape", [(0, 5), (0, 5, 3), (0, 0), (0, 0, 2, 2)], ids=["N0", "N0-K-dim", "C0", "C0-K-dim"]
)
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"weight": True}])
def test_empty_batch_losses_as_torch(shape, options):
    # An empty sum is 0 and an empty mean NaN, as torch's, on every path: the module's "sum" was
    # the fused mean (NaN) times 0, and with no classes at all the smoothing share e / C divided
    # by zero (ZeroDivisionError).
    z = np.zeros(shape, np.float32)
    t = np.zeros((0,) + shape[2:], np.int64)
    if options.get("weight"):
        options = {"weight": np.ones(shape[1], np.float32)}
    for reduction in ("mean", "sum", "none"):
        module = fastcnn.nn.CrossEntropyLoss(reduction=reduction, **options)
        for loss in (F.cross_entropy(z, t, reduction=reduction, **options), module(z, t)):
            if reduction == "none":
                assert loss.shape == t.shape
            else:
                assert np.isnan(loss) if reduction == "mean" else loss == 0.0
        assert module.backward(np.zeros(t.shape) if reduction == "none" else 1.0).shape == shape


def test_converts_inputs_and_leaves_them_unchanged(rng):
    z64 = rng.standard_normal((6, 20)) * 2.0
    view = z64[:, ::2]  # float64, non-contiguous
    copy = view.copy()
    t = rng.integers(0, 10, 6).astype(np.int32)
    t_copy = t.copy()
    assert F.cross_entropy(view, t) == pytest.approx(oracle.cross_entropy(view, t), rel=1e-6)
    np.testing.assert_allclose(F.softmax(view, 0), oracle.softmax(view, 0), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(view, copy)
    np.testing.assert_array_equal(t, t_copy)
    xi = rng.integers(-3, 3, (4, 5))
    np.testing.assert_allclose(F.log_softmax(xi), oracle.log_softmax(xi, 1), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        F.cross_entropy_backward(z64, t.astype(np.uint8)),
        oracle.cross_entropy_backward(z64, t),
        rtol=RTOL,
        atol=ATOL,
    )


def test_python_threads_at_once(rng):
    zs = [_logits(rng, (64, 100)) for _ in range(4)]
    ts = [rng.integers(0, 100, 64) for _ in range(4)]
    want = [(F.cross_entropy(z, t), F.softmax(z, 0)) for z, t in zip(zs, ts)]
    got = [None] * len(zs)

    def work(i):
        for _ in range(20):
            got[i] = (F.cross_entropy(zs[i], ts[i]), F.softmax(zs[i], 0))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(zs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (gl, gs), (wl, ws) in zip(got, want):
        assert gl == wl
        np.testing.assert_array_equal(gs, ws)


# ---- bad input -------------------------------------------------------------------------------


def test_bad_labels(core, rng):
    z = _logits(rng, (4, 10))
    cases = [
        (np.array([0.0, 1.0, 2.0, 3.0]), TypeError, "labels: expected an integer array"),
        (np.array([0, 1, -1, 3]), ValueError, "labels: .*C = 10, got -1 at flat position 2"),
        (np.array([0, 10, 2, 3]), ValueError, "labels: .*C = 10, got 10 at flat position 1"),
        (np.array([0, 1, 2]), ValueError, "labels: expected shape \\(4,\\), got shape \\(3,\\)"),
        (np.zeros((4, 1), np.int64), ValueError, "labels: expected shape"),
        ("abc", TypeError, "labels"),
    ]
    for labels, error, match in cases:
        with pytest.raises(error, match=match.replace("labels", "target")):  # torch's name
            F.cross_entropy(z, labels)
        with pytest.raises(error, match=match):
            F.cross_entropy_backward(z, labels)
        with pytest.raises(error, match=match):
            core.softmax_xent_forward(z, labels, 0.0)
        with pytest.raises(error, match=match):
            core.softmax_xent_backward(z, labels, 0.0, 1.0)


def test_bad_arguments(core, rng):
    z = _logits(rng, (4, 10))
    t = rng.integers(0, 10, 4)
    with pytest.raises(ValueError, match="input: expected an array \\(N, C\\)"):
        F.cross_entropy(z[0, 0], t[0])  # (C,) is one unbatched row, as in torch; 0-d is nothing
    with pytest.raises(ValueError, match="logits"):
        core.softmax_xent_forward(z[0], t[0], 0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        core.softmax_xent_backward(z, t, -0.1, 1.0)
    with pytest.raises(TypeError, match="label_smoothing"):
        F.cross_entropy(z, t, label_smoothing="0.1")
    with pytest.raises(TypeError, match="logits"):
        core.softmax_xent_forward(None, t, 0.0)
    with pytest.raises(TypeError, match="grad_output"):
        F.cross_entropy_backward(z, t, grad_output=None)
    with pytest.raises(ValueError, match="dim: expected a dim in \\[-2, 1\\]"):
        F.softmax(z, 2)
    with pytest.raises(ValueError, match="dim"):
        core.log_softmax_forward(z, -3)
    with pytest.raises(ValueError, match="dim"):
        core.softmax_backward(z, z, 5)
    with pytest.raises(TypeError, match="dim, axis"):
        F.softmax(z, 0, axis=1)
    with pytest.raises(TypeError, match="dim"):
        F.log_softmax(z, 1.5)
    with pytest.raises(TypeError, match="input"):
        F.softmax("abc")
    with pytest.raises(TypeError, match="input"):
        core.softmax_forward(np.array([1j, 2j]), 0)
    with pytest.raises(ValueError, match="dy: expected shape"):
        F.softmax_backward(z[:2], z)
    with pytest.raises(ValueError, match="dy: expected shape"):
        core.log_softmax_backward(z[:2], z, 1)
    with pytest.raises(ValueError, match="target: expected shape"):
        F.mse_loss(z, z[:2])
    with pytest.raises(TypeError, match="input"):
        F.mse_loss_backward(np.array(["a"]), np.array([1.0]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_options_match_torch(rng, reduction, ignore_index, weighted, label_smoothing):
    # weight, ignore_index and reduction as torch.nn.functional.cross_entropy defines them, on
    # class maps (N, C, d) with some positions ignored; the module takes the same options
    torch = pytest.importorskip("torch")
    z = _logits(rng, (5, 6, 3))
    t = rng.integers(0, 6, (5, 3))
    t[0, :2] = ignore_index
    t[3, 1] = ignore_index
    weight = rng.uniform(0.2, 2.0, 6).astype(np.float32) if weighted else None
    opts = dict(weight=weight, ignore_index=ignore_index, reduction=reduction)
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(
        tz,
        torch.tensor(t),
        weight=None if weight is None else torch.tensor(weight, dtype=torch.float64),
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    g = rng.standard_normal(t.shape) if reduction == "none" else 0.5
    (tl * torch.as_tensor(g)).sum().backward()
    loss = F.cross_entropy(z, t, label_smoothing, **opts)
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-5, atol=1e-6)
    dz = F.cross_entropy_backward(z, t, label_smoothing, g, **opts)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    module = fastcnn.nn.CrossEntropyLoss(
        weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    np.testing.assert_allclose(module(z, t), tl.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        module.backward(g), tz.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL
    )


def test_cross_entropy_all_positions_ignored_gives_nan_loss_and_zero_gradient(rng):
    z = _logits(rng, (3, 4))
    t = np.full(3, -100)
    assert np.isnan(F.cross_entropy(z, t))
    np.testing.assert_array_equal(F.cross_entropy_backward(z, t), np.zeros_like(z))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": np.ones(5)}, "weight"),
        ({"reduction": "avg"}, "reduction"),
        ({"ignore_index": 1.5}, "ignore_index"),
        ({"target": np.array([0, 7, 1])}, "target"),
        ({"target": np.array([0, -1, 1]), "ignore_index": -100}, "target"),
    ],
)
def test_cross_entropy_bad_options(rng, kwargs, match):
    args = {"input": _logits(rng, (3, 4)), "target": np.array([0, 1, 2])}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        F.cross_entropy(**args)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_reductions_match_torch(rng, reduction):
    torch = pytest.importorskip("torch")
    a, b = _logits(rng, (4, 5)), _logits(rng, (4, 5))
    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tl = torch.nn.functional.mse_loss(ta, torch.tensor(b, dtype=torch.float64), reduction=reduction)
    g = rng.standard_normal(a.shape).astype(np.float32) if reduction == "none" else 1.5
    (tl * torch.as_tensor(g)).sum().backward()
    np.testing.assert_allclose(
        F.mse_loss(a, b, reduction=reduction), tl.detach().numpy(), rtol=1e-5
    )
    da, db = F.mse_loss_backward(a, b, g, reduction)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_array_equal(db, -da)
    module = fastcnn.nn.MSELoss(reduction=reduction)
    np.testing.assert_allclose(module(a, b), tl.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        module.backward(g), ta.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL
    )
    if reduction == "mean":
        assert np.isnan(module(np.zeros(0), np.zeros(0)))  # torch: NaN for an empty mean


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_probability_targets_match_torch(rng, reduction, weighted):
    # floating labels shaped like the logits are class probabilities (soft targets), as in torch
    torch = pytest.importorskip("torch")
    z = _logits(rng, (4, 5, 2))
    target = np.moveaxis(rng.dirichlet(np.ones(5), size=(4, 2)), -1, 1).astype(np.float32)
    weight = rng.uniform(0.2, 2.0, 5).astype(np.float32) if weighted else None
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(
        tz,
        torch.tensor(target, dtype=torch.float64),
        weight=None if weight is None else torch.tensor(weight, dtype=torch.float64),
        reduction=reduction,
        label_smoothing=0.1,
    )
    g = rng.standard_normal((4, 2)) if reduction == "none" else 2.0
    (tl * torch.as_tensor(g)).sum().backward()
    opts = dict(weight=weight, reduction=reduction)
    np.testing.assert_allclose(
        F.cross_entropy(z, target, 0.1, **opts), tl.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        F.cross_entropy_backward(z, target, 0.1, g, **opts),
        tz.grad.numpy(),
        rtol=TORCH_RTOL,
        atol=TORCH_ATOL,
    )
    module = fastcnn.nn.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=0.1)
    np.testing.assert_allclose(module(z, target), tl.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        module.backward(g), tz.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL
    )


# (input shape, target shape) pairs that broadcast, as torch's mse_loss accepts them with a warning
MSE_BROADCASTS = [
    ((3, 4), (4,)),
    ((3, 4), (3, 1)),
    ((1, 4), (3, 4)),
    ((3, 1, 5), (2, 5)),
    ((), (3,)),
]


@pytest.mark.parametrize("shapes", MSE_BROADCASTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_broadcasts_with_a_warning(rng, shapes, reduction):
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    full = np.broadcast_shapes(a.shape, b.shape)
    with pytest.warns(UserWarning, match="different to the input size"):
        loss = F.mse_loss(a, b, reduction=reduction)
    d = a.astype(np.float64) - b
    want = {"none": d * d, "sum": (d * d).sum(), "mean": (d * d).mean()}[reduction]
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    g = rng.standard_normal(full).astype(np.float32) if reduction == "none" else 1.5
    with pytest.warns(UserWarning, match="different to the input size"):
        da, db = F.mse_loss_backward(a, b, g, reduction)
    dd = 2.0 * d * g / (d.size if reduction == "mean" else 1.0)
    want_da = oracle._sum_to(dd, a.shape)
    want_db = -oracle._sum_to(dd, b.shape)
    assert da.shape == a.shape and db.shape == b.shape and da.dtype == np.float32
    np.testing.assert_allclose(da, want_da, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, want_db, rtol=1e-5, atol=1e-6)
    module = fastcnn.nn.MSELoss(reduction=reduction)
    with pytest.warns(UserWarning, match="different to the input size"):
        np.testing.assert_array_equal(module(a, b), F._mse_loss(a, b, reduction))
    np.testing.assert_array_equal(module.backward(g), da)


def test_mse_loss_broadcast_oracle_by_finite_differences(rng):
    a, b = rng.standard_normal((3, 1, 5)), rng.standard_normal((2, 5))
    check_backward(
        lambda a, b: np.asarray(oracle.mse_loss(a, b)),
        lambda g, a, b: oracle.mse_loss_backward(a, b, grad_output=float(g)),
        [a, b],
        wrt=(0, 1),
    )


def test_mse_loss_same_shape_does_not_warn(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.mse_loss(a, a + 1)
        fastcnn.nn.MSELoss()(a, a + 1)


def test_mse_loss_shapes_that_do_not_broadcast():
    z = np.zeros((3, 4), np.float32)
    for bad in (np.zeros((4, 3)), np.zeros(3), np.zeros((2, 3, 4, 1, 2))):
        with pytest.raises(ValueError, match=r"target: expected shape \(3, 4\) \(the input's\) or"):
            F.mse_loss(z, bad)
        with pytest.raises(ValueError, match="target: expected shape"):
            fastcnn.nn.MSELoss()(z, bad)
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=r"grad_output: expected shape \(3, 4\)"),
    ):
        F.mse_loss_backward(z, z[0], np.ones(4), "none")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses_past_float32_range_are_inf_as_torch(reduction):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    # A square of 4e38 overflows torch's float32 MSE, and so does a sum of two row losses of 3e38
    # its cross-entropy and NLL; the reductions in double gave a finite 5e37 (MSE mean) or 6e38.
    a, b = np.array([2e19] + [0] * 7, np.float32), np.zeros(8, np.float32)
    mse = tF.mse_loss(torch.tensor(a), torch.tensor(b), reduction=reduction).item()
    assert (
        F.mse_loss(a, b, reduction=reduction)
        == fastcnn.nn.MSELoss(reduction=reduction)(a, b)
        == mse
        == np.inf
    )
    z, labels = np.array([[2e38, -1e38, 0.0]] * 2, np.float32), np.array([1, 1])
    logp = np.array([[-3e38, 0.0]] * 2, np.float32)
    xent = tF.cross_entropy(torch.tensor(z), torch.tensor(labels), reduction="sum").item()
    nll = tF.nll_loss(torch.tensor(logp), torch.tensor(labels * 0), reduction="sum").item()
    assert xent == nll == np.inf
    for weight in (None, np.ones(3)):  # the fused kernel and the NumPy path
        assert F.cross_entropy(z, labels, weight=weight, reduction="sum") == np.inf
        assert fastcnn.nn.CrossEntropyLoss(weight, reduction="sum")(z, labels) == np.inf
    assert F.nll_loss(logp, labels * 0, reduction="sum") == np.inf
    # finite results keep their double accumulation
    assert F.mse_loss(np.array([3.0, 0.0], np.float32), np.zeros(2), reduction=reduction) == (
        4.5 if reduction == "mean" else 9.0
    )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_gradient_when_the_counted_weights_sum_to_zero(label_smoothing):
    # The labels not ignored all have class weight 0: torch's mean is 0 / 0 (NaN) and so is the
    # gradient of every row it counts (the ignored row's stays 0); fastcnn gave zeros everywhere.
    torch = pytest.importorskip("torch")
    z = np.random.default_rng(0).standard_normal((3, 4, 2)).astype(np.float32)
    labels = np.array([[2, -100], [-100, 2], [2, 2]])
    weight = np.array([1, 1, 0, 1], np.float32)
    zt = torch.tensor(z, requires_grad=True)
    torch.nn.functional.cross_entropy(
        zt, torch.tensor(labels), torch.tensor(weight), label_smoothing=label_smoothing
    ).backward()
    expected = zt.grad.numpy()
    assert np.isnan(expected[0, :, 0]).all() and (expected[0, :, 1] == 0).all()
    module = fastcnn.nn.CrossEntropyLoss(weight, label_smoothing=label_smoothing)
    assert np.isnan(module(z, labels))
    for grad in (
        module.backward(),
        F.cross_entropy_backward(z, labels, label_smoothing, weight=weight),
    ):
        np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_non_finite_class_weights_and_logits_as_torch(reduction):
    # Without smoothing torch multiplies out each counted label's term only: a NaN or Inf class
    # weight reaches the rows labelled with it (fastcnn spread it to every row, ignored ones too,
    # through the 0 * w smoothing share), a weight of 0 on a -inf logit is 0 * inf = NaN (fastcnn
    # left zero coefficients out), and an ignored position's loss is +0.0 (it was -0.0).
    torch = pytest.importorskip("torch")
    z = np.random.default_rng(1).standard_normal((4, 3, 2)).astype(np.float32)
    z[1, 2, 0] = -np.inf
    labels = np.array([[0, 1], [2, 0], [-100, 1], [0, -100]])
    for weight in ([np.nan, 1, 1], [np.inf, 1, 2], [1, 1, 0]):
        weight = np.array(weight, np.float32)
        zt = torch.tensor(z, requires_grad=True)
        expected = torch.nn.functional.cross_entropy(
            zt, torch.tensor(labels), torch.tensor(weight), reduction=reduction
        )
        expected.backward(torch.ones_like(expected))
        module = fastcnn.nn.CrossEntropyLoss(weight, reduction=reduction)
        loss = np.asarray(module(z, labels), np.float32)
        np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-5)
        np.testing.assert_array_equal(np.signbit(loss), np.signbit(expected.detach().numpy()))
        grad = module.backward(np.ones(labels.shape) if reduction == "none" else 1.0)
        np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-5, atol=1e-6)
