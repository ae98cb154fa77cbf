"""Batch normalization: each compiled variant against the float64 oracle, functional against torch.

Layout key: x is (N, C), (N, C, L) or (N, C, H, W), normalized per channel (dim 1); per-channel
vectors (weight, bias, running stats, save_mean, save_invstd) are (C,).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as oracle

import fastcnn
from fastcnn import functional as F

RTOL = 1e-4
ATOL = 1e-5
# float32 torch sums a channel in its own order; its rounding, not ours, sets this limit.
TORCH_RTOL = 1e-4
TORCH_ATOL = 1e-4

SHAPES = [
    (5, 7),  # rank 2, odd C
    (3, 33, 10),  # rank 3, odd C and L
    (4, 3, 5, 7),  # RGB input
    (1, 7, 4, 4),  # batch 1, H * W > 1
    (8, 64, 14, 14),  # VGG-sized layer
]


def _channels(shape) -> int:
    return shape[1]


def _params(rng, C, affine):
    if not affine:
        return None, None
    return (rng.uniform(0.5, 1.5, C).astype(np.float32), rng.standard_normal(C).astype(np.float32))


def _running(rng, C):
    return rng.standard_normal(C).astype(np.float32), rng.uniform(0.5, 2.0, C).astype(np.float32)


# ---- kernels, every variant, against the oracle ----------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_forward_train_matches_oracle(core, rng, shape, affine, momentum):
    C = _channels(shape)
    x = rng.standard_normal(shape).astype(np.float32) * 2.0 + 0.5
    w, b = _params(rng, C, affine)
    rm, rv = _running(rng, C)
    want = oracle.batch_norm(x, rm, rv, w, b, True, momentum, 1e-5)
    y, save_mean, save_invstd = core.batchnorm2d_forward_train(x, w, b, rm, rv, momentum, 1e-5)
    np.testing.assert_allclose(y, want[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rm, want[1], rtol=RTOL, atol=ATOL)  # updated in place
    np.testing.assert_allclose(rv, want[2], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(save_mean, want[3], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(save_invstd, want[4], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_train_without_running_stats(core, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    want = oracle.batch_norm(x, None, None, training=True)
    y, save_mean, save_invstd = core.batchnorm2d_forward_train(x, None, None, None, None, 0.1, 1e-5)
    np.testing.assert_allclose(y, want[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(save_mean, want[3], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(save_invstd, want[4], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_forward_eval_matches_oracle(core, rng, shape, affine):
    C = _channels(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    w, b = _params(rng, C, affine)
    rm, rv = _running(rng, C)
    rm0, rv0 = rm.copy(), rv.copy()
    want = oracle.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-3)[0]
    np.testing.assert_allclose(
        core.batchnorm2d_forward_eval(x, w, b, rm, rv, 1e-3), want, rtol=RTOL, atol=ATOL
    )
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_backward_train_matches_oracle(core, rng, shape, affine):
    C = _channels(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w, _ = _params(rng, C, affine)
    _, save_mean, save_invstd = core.batchnorm2d_forward_train(x, None, None, None, None, 0.1, 1e-5)
    got = core.batchnorm2d_backward(dy, x, w, save_mean, save_invstd, True)
    for g, want in zip(got, oracle.batch_norm_backward(dy, x, w, 1e-5)):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_backward_eval_matches_oracle(core, rng, shape, affine):
    C = _channels(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w, _ = _params(rng, C, affine)
    rm, rv = _running(rng, C)
    got = core.batchnorm2d_backward_eval(dy, x, w, rm, rv, 1e-5)
    for g, want in zip(got, oracle.batch_norm_eval_backward(dy, x, rm, rv, w, 1e-5)):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL)


def test_large_offset_stays_accurate(core, rng):
    """x = 1000 + noise: a naive one-pass E[x^2] - E[x]^2 in float would lose every digit."""
    shape = (16, 5, 12, 12)
    x = (1000.0 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    rm, rv = _running(rng, 5)
    want = oracle.batch_norm(x, rm, rv, None, None, True, 0.1, 1e-5)
    y, save_mean, save_invstd = core.batchnorm2d_forward_train(x, None, None, rm, rv, 0.1, 1e-5)
    np.testing.assert_allclose(y, want[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rv, want[2], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(save_invstd, want[4], rtol=RTOL)
    # Backward refines the float32 save_mean (off by ~1000 * 2**-24, a few 1e-3 of the std) from x.
    got = core.batchnorm2d_backward(dy, x, None, save_mean, save_invstd, True)
    for g, w in zip(got, oracle.batch_norm_backward(dy, x, None, 1e-5)):
        # dx and dweight scale with invstd = 100: compare relative to the largest entry.
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL * np.abs(w).max())


def test_constant_channel_gives_bias(core, rng):
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    x[:, 1] = 7.25
    w, b = _params(rng, 3, True)
    y, _, save_invstd = core.batchnorm2d_forward_train(x, w, b, None, None, 0.1, 1e-5)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[:, 1], b[1], atol=ATOL)
    np.testing.assert_allclose(save_invstd[1], 1.0 / np.sqrt(1e-5), rtol=RTOL)
    grads = core.batchnorm2d_backward(rng.standard_normal(x.shape), x, w, *_stats(core, x))
    assert all(np.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 3), (2, 3, 40)])
def test_non_finite_channel_gives_nan_variance(core, rng, shape):
    """A channel holding an Inf (or a NaN) has a NaN variance, as in ref and torch: NaN
    save_invstd and running_var. The fast variants clamped the NaN to 0 (as for a constant
    channel's tiny negative): invstd 1 / sqrt(eps) and running_var (1 - momentum) * running_var.
    An Inf as the channel's first element left their mean NaN instead of Inf."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    rest = len(shape) - 2
    x[(1, 0) + (0,) * rest], x[(0, 1) + (-1,) * rest] = np.inf, np.nan
    if len(shape) == 4:  # an Inf first element: the fast variants' shift, which made the mean NaN
        x[0, 0, 0, 0] = np.inf
    running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
    _, mean, invstd = core.batchnorm2d_forward_train(
        x, None, None, running_mean, running_var, 0.1, 1e-5
    )
    tm = torch.nn.BatchNorm1d(3, affine=False) if len(shape) < 4 else torch.nn.BatchNorm2d(3)
    tm(torch.from_numpy(x))
    np.testing.assert_array_equal(mean[:2], [np.inf, np.nan])
    np.testing.assert_array_equal(invstd[:2], [np.nan, np.nan])
    np.testing.assert_allclose(running_mean, tm.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(running_var, tm.running_var.numpy(), rtol=1e-5)
    assert np.isnan(running_var[:2]).all() and np.isfinite(invstd[2])


@pytest.mark.parametrize("shape", [(3, 2, 5, 4), (4, 2, 40)])
def test_huge_finite_values_keep_the_variance_finite(core, rng, shape):
    """A channel with values near 1e30 has a variance of ~1e59, past float32's range but not
    double's: ref and torch's float64 normalize it. The fast variants' float partial sums
    overflowed (d^2 past 3.4e38), giving invstd 0 (every output the bias) and dweight 0."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    x[(1, 0) + (1,) * (len(shape) - 2)] = 1e30
    x[(0, 1) + (0,) * (len(shape) - 2)] = -1e30
    x[(2, 1) + (2,) * (len(shape) - 2)] = 2e30
    w, dy = np.array([1.5, -0.5], np.float32), rng.standard_normal(shape).astype(np.float32)
    y, mean, invstd = core.batchnorm2d_forward_train(x, w, None, None, None, 0.1, 1e-5)
    dx, dw, db = core.batchnorm2d_backward(dy, x, w, mean, invstd, True)
    xt, wt = (
        torch.tensor(x, dtype=torch.float64, requires_grad=True),
        torch.tensor(w, dtype=torch.float64, requires_grad=True),
    )
    yt = torch.nn.functional.batch_norm(xt, None, None, wt, None, True)
    yt.backward(torch.tensor(dy, dtype=torch.float64))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-35)


@pytest.mark.parametrize("pooled", [False, True])
def test_eval_input_gradient_does_not_read_x(core, rng, pooled):
    """Eval mode's dx is dy * weight / sqrt(running_var + eps), which torch computes without x:
    an Inf or NaN input reaches only dweight. dx was NaN at those positions, through
    0 * (x - running_mean) (plain and fused max-pooling backward, every variant)."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    x[0, 0, 1, 1], x[1, 2, 0, 3], x[0, 1, 3, 5] = np.inf, -np.inf, np.nan
    w = rng.standard_normal(3).astype(np.float32)
    rm, rv = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2.0, 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    if pooled:  # 2x2 windows, each one's maximum at its top left: dy is g there, else 0
        g = rng.standard_normal((2, 3, 2, 3)).astype(np.float32)
        top_left = 12 * np.arange(2)[:, None] + 2 * np.arange(3)
        indices = np.broadcast_to(top_left, g.shape).astype(np.int64)
        dy = np.zeros_like(x)
        dy[:, :, ::2, ::2] = g
        got = core.batchnorm2d_backward_pooled_eval(g, indices, x, w, rm, rv, 1e-5, None)
    else:
        got = core.batchnorm2d_backward_eval(dy, x, w, rm, rv, 1e-5)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tF = torch.nn.functional
    tF.batch_norm(xt, torch.tensor(rm), torch.tensor(rv), wt, None, False).backward(
        torch.tensor(dy)
    )
    np.testing.assert_allclose(got[0], xt.grad.numpy(), rtol=1e-6, atol=1e-7)
    if not pooled:  # the fused fast kernels sum dweight over the window maxima only (no 0 * inf)
        np.testing.assert_array_equal(np.isfinite(got[1]), np.isfinite(wt.grad.numpy()))


def _stats(core, x):
    _, m, s = core.batchnorm2d_forward_train(x, None, None, None, None, 0.1, 1e-5)
    return m, s


def test_same_result_for_any_thread_count(core, rng):
    x = rng.standard_normal((8, 16, 40, 40)).astype(np.float32)  # big enough for 3 threads
    dy = rng.standard_normal(x.shape).astype(np.float32)
    before = fastcnn.get_num_threads()
    try:
        results = []
        for n in (1, 3):
            fastcnn.set_num_threads(n)
            y, m, s = core.batchnorm2d_forward_train(x, None, None, None, None, 0.1, 1e-5)
            results.append((y, m, s, *core.batchnorm2d_backward(dy, x, None, m, s, True)))
    finally:
        fastcnn.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- functional against PyTorch --------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (3, 7, 9), (2, 3, 6, 5), (1, 4, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_functional_matches_torch(rng, shape, training, affine):
    torch = pytest.importorskip("torch")
    C = _channels(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w, b = _params(rng, C, affine)
    rm, rv = _running(rng, C)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    tx = torch.tensor(x, requires_grad=True)
    tw = None if w is None else torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.batch_norm(tx, t_rm, t_rv, tw, tb, training, 0.3, 1e-4)
    ty.backward(torch.tensor(dy))

    y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3, eps=1e-4)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_allclose(rm, t_rm.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    np.testing.assert_allclose(rv, t_rv.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)

    # rm/rv were updated in place; the eval gradient needs the stats forward used.
    rm_fwd, rv_fwd = (rm, rv) if training else (t_rm.numpy(), t_rv.numpy())
    dx, dw, db = F.batch_norm_backward(dy, x, w, rm_fwd, rv_fwd, training=training, eps=1e-4)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    if affine:
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)


def test_functional_reuses_saved_stats(rng):
    x = rng.standard_normal((4, 6, 5, 5)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w, b = _params(rng, 6, True)
    y, save_mean, save_invstd = F.batch_norm_train(x, None, None, w, b)
    np.testing.assert_array_equal(y, F.batch_norm(x, None, None, w, b, training=True))
    reused = F.batch_norm_backward(dy, x, w, save_mean=save_mean, save_invstd=save_invstd)
    for a, e in zip(reused, F.batch_norm_backward(dy, x, w)):
        np.testing.assert_array_equal(a, e)


def test_running_stats_none_in_training_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    want = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True).numpy()
    np.testing.assert_allclose(
        F.batch_norm(x, None, None, training=True), want, rtol=1e-4, atol=1e-4
    )


def test_empty_batch_matches_torch(core, rng):
    torch = pytest.importorskip("torch")
    x = np.zeros((0, 3, 4, 4), np.float32)
    rm, rv = _running(rng, 3)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), t_rm, t_rv, training=True)
    y, save_mean, save_invstd = core.batchnorm2d_forward_train(x, None, None, rm, rv, 0.1, 1e-5)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(rm, t_rm.numpy())
    np.testing.assert_array_equal(rv, t_rv.numpy())
    np.testing.assert_array_equal(save_mean, 0.0)
    assert core.batchnorm2d_forward_eval(x, None, None, rm, rv, 1e-5).shape == x.shape
    dx, dw, db = core.batchnorm2d_backward(x, x, None, save_mean, save_invstd, True)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0.0)
    np.testing.assert_array_equal(db, 0.0)


def test_converts_inputs_and_leaves_them_unchanged(rng):
    x64 = rng.standard_normal((4, 3, 6, 8))
    x_view = x64[:, :, :, ::2]  # float64, non-contiguous
    x_copy = x_view.copy()
    w = rng.uniform(0.5, 1.5, 3)  # float64 weight and bias are converted, never written
    b = rng.standard_normal(3)
    w0, b0 = w.copy(), b.copy()
    want = oracle.batch_norm(x_view, None, None, w, b, True)[0]
    np.testing.assert_allclose(
        F.batch_norm(x_view, None, None, w, b, training=True), want, rtol=RTOL, atol=ATOL
    )
    np.testing.assert_array_equal(x_view, x_copy)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(b, b0)
    xi = rng.integers(-5, 5, (3, 2, 4))
    np.testing.assert_allclose(
        F.batch_norm(xi, None, None, training=True),
        oracle.batch_norm(xi, None, None, training=True)[0],
        rtol=RTOL,
        atol=ATOL,
    )


def test_python_threads_at_once(rng):
    xs = [rng.standard_normal((8, 16, 10, 10)).astype(np.float32) for _ in range(4)]
    want = [F.batch_norm_train(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(10):
            got[i] = F.batch_norm_train(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        for a, e in zip(g, w):
            np.testing.assert_array_equal(a, e)


# ---- bad input -------------------------------------------------------------------------------


def _good(rng):
    return (
        rng.standard_normal((2, 3, 4, 4)).astype(np.float32),
        np.zeros(3, np.float32),
        np.ones(3, np.float32),
    )


def test_single_value_per_channel_in_training(core, rng):
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    for shape in [(1, 3), (1, 3, 1, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            F.batch_norm(x, rm, rv, training=True)
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            core.batchnorm2d_forward_train(x, None, None, rm, rv, 0.1, 1e-5)
        np.testing.assert_array_equal(rm, 0.0)
        F.batch_norm(x, rm, rv, training=False)  # eval mode has no such limit


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros(3, np.float64), TypeError, "running_mean.*float32"),
        ([0.0, 0.0, 0.0], TypeError, "running_mean"),
        (np.zeros(4, np.float32), ValueError, "running_mean.*shape"),
        (np.zeros(6, np.float32)[::2], ValueError, "running_mean.*C-contiguous"),
        (np.zeros(3, np.float32).astype(">f4"), TypeError, "running_mean"),
    ],
)
def test_running_mean_must_be_updatable(core, rng, bad, error, match):
    x, _, rv = _good(rng)
    with pytest.raises(error, match=match):
        F.batch_norm(x, bad, rv, training=True)
    with pytest.raises(error, match=match):
        core.batchnorm2d_forward_train(x, None, None, bad, rv, 0.1, 1e-5)


def test_read_only_running_var(core, rng):
    x, rm, rv = _good(rng)
    rv.flags.writeable = False
    with pytest.raises(ValueError, match="running_var.*writeable"):
        F.batch_norm(x, rm, rv, training=True)
    with pytest.raises(ValueError, match="running_var.*writeable"):
        core.batchnorm2d_forward_train(x, None, None, rm, rv, 0.1, 1e-5)
    F.batch_norm(x, rm, rv, training=False)  # eval only reads it


def test_bad_arguments(core, rng):
    x, rm, rv = _good(rng)
    with pytest.raises(ValueError, match="input: expected an array \\(N, C\\)"):
        F.batch_norm(np.ones(3, np.float32), rm, rv, training=True)
    with pytest.raises(ValueError, match="input: expected"):
        core.batchnorm2d_forward_eval(np.ones(3, np.float32), None, None, rm, rv, 1e-5)
    with pytest.raises(TypeError, match="input"):
        F.batch_norm("abc", rm, rv)
    with pytest.raises(TypeError, match="input"):
        core.batchnorm2d_forward_train(None, None, None, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="weight: expected shape \\(3,\\), got shape \\(4,\\)"):
        F.batch_norm(x, rm, rv, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="bias"):
        core.batchnorm2d_forward_train(x, None, np.ones((3, 1)), None, None, 0.1, 1e-5)
    with pytest.raises(ValueError, match="running_mean, running_var: required"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match="running_mean"):
        core.batchnorm2d_forward_eval(x, None, None, None, rv, 1e-5)
    with pytest.raises(ValueError, match="running_var"):
        F.batch_norm(x, rm, np.ones(2), training=False)
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm(x, rm, rv, eps=-1.0)
    # as torch: eps = 0 is refused in training only (a constant channel's invstd would be Inf)
    np.testing.assert_array_equal(F.batch_norm(x, rm, rv, training=False, eps=0.0).shape, x.shape)
    with pytest.raises(ValueError, match="eps: expected a value > 0 in training, got 0"):
        F.batch_norm(x, rm, rv, training=True, eps=0.0)
    with pytest.raises(ValueError, match="eps: expected a value > 0 in training"):
        fastcnn.nn.BatchNorm2d(x.shape[1], eps=0.0)(x)
    with pytest.raises(TypeError, match="momentum"):
        F.batch_norm(x, rm, rv, training=True, momentum="fast")
    with pytest.raises(ValueError, match="dy: expected shape"):
        F.batch_norm_backward(x[:1], x)
    with pytest.raises(ValueError, match="dy: expected shape"):
        core.batchnorm2d_backward(x[:1], x, None, rm, rv, True)
    with pytest.raises(ValueError, match="invstd"):
        core.batchnorm2d_backward(x, x, None, rm, rv[:2], True)
    with pytest.raises(ValueError, match="save_mean, save_invstd"):
        F.batch_norm_backward(x, x, save_mean=rm)
    with pytest.raises(ValueError, match="running_mean, running_var"):
        F.batch_norm_backward(x, x, training=False)
    with pytest.raises(ValueError, match="running_var"):
        core.batchnorm2d_backward_eval(x, x, None, rm, rv[:2], 1e-5)


# --- batch norm followed by max pooling: the fused backward --------------------------------------
# (x shape, max_pool2d keyword arguments): 2x2/2 windows (the fast kernels' vector path: planes
# narrower and wider than a vector of windows, odd sizes whose last row and column no window
# covers), overlapping padded ceil-mode windows (a position can be the maximum of several), 3x3/2
# windows as many as 2x2/2 ones would be (the vector path must notice and step aside), windows
# that skip rows, and planes whose rows hold at most half a vector of windows (two rows of windows
# a vector on AVX-512) with an odd number of window rows.
POOLED_CASES = [
    ((4, 6, 8, 8), dict(kernel_size=2)),
    ((3, 5, 9, 11), dict(kernel_size=2)),
    ((2, 3, 6, 70), dict(kernel_size=2)),
    ((3, 2, 13, 37), dict(kernel_size=2)),
    ((3, 5, 9, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 4, 10, 36), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 7, 13), dict(kernel_size=2, stride=3)),
    ((5, 2, 6, 5), dict(kernel_size=(2, 3), stride=1, dilation=(2, 1))),
    ((2, 3, 14, 14), dict(kernel_size=2)),
    ((3, 2, 11, 17), dict(kernel_size=2)),
]


def _pooled_inputs(rng, shape, pool, mean=2.0, std=3.0):
    x = (rng.standard_normal(shape) * std + mean).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    y, save_mean, save_invstd = F.batch_norm_train(x, None, None, w, None)
    p, indices = F.max_pool2d(y, **pool, return_indices=True)
    g = rng.standard_normal(p.shape).astype(np.float32)
    return x, w, save_mean, save_invstd, g, indices


def _scattered(g, indices, shape):
    """max_pool2d_backward in float64: g added at the flat plane positions in indices."""
    dy = np.zeros(shape[:2] + (shape[2] * shape[3],))
    planes = dy.reshape(-1, shape[2] * shape[3])
    for plane, (gp, ip) in enumerate(
        zip(g.reshape(len(planes), -1), indices.reshape(len(planes), -1))
    ):
        np.add.at(planes[plane], ip, gp)
    return dy.reshape(shape)


@pytest.mark.parametrize(("shape", "pool"), POOLED_CASES)
def test_backward_pooled_matches_oracle(core, rng, shape, pool) -> None:
    x, w, mean, invstd, g, indices = _pooled_inputs(rng, shape, pool)
    want = oracle.batch_norm_backward(_scattered(g, indices, shape), x, w)
    got = core.batchnorm2d_backward_pooled(g, indices, x, w, mean, invstd, True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * np.sqrt(x.size / shape[1]))


@pytest.mark.parametrize("moved", ["one", "half", "all"])
@pytest.mark.parametrize("shape", [(3, 4, 10, 38), (3, 4, 14, 14)])
def test_backward_pooled_takes_any_indices(core, rng, moved, shape) -> None:
    """Indices need not come from a 2x2 pooling: some (or all) point anywhere in their plane,
    repeats included, and the gradient is added at each."""
    x, w, mean, invstd, g, indices = _pooled_inputs(rng, shape, dict(kernel_size=2))
    flat = indices.reshape(-1)
    where = {"one": [flat.size // 2], "half": slice(0, None, 2), "all": slice(None)}[moved]
    flat[where] = rng.integers(0, shape[2] * shape[3], flat[where].shape)
    want = oracle.batch_norm_backward(_scattered(g, indices, shape), x, w)
    got = core.batchnorm2d_backward_pooled(g, indices, x, w, mean, invstd, True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * np.sqrt(x.size / shape[1]))


@pytest.mark.parametrize(("shape", "pool"), [POOLED_CASES[1], POOLED_CASES[3], POOLED_CASES[4]])
@pytest.mark.parametrize("training", [True, False])
def test_backward_pooled_through_a_relu(core, rng, shape, pool, training) -> None:
    """relu_output: the pooled gradient first goes through relu_backward (zero where the ReLU's
    output is <= 0; a NaN output passes the gradient)."""
    x, w, mean, invstd, g, indices = _pooled_inputs(rng, shape, pool)
    relu_out = np.maximum(rng.standard_normal(g.shape), 0).astype(np.float32)
    relu_out.flat[::5] = np.nan
    gated = np.where(relu_out <= 0, 0, g)
    if training:
        want = oracle.batch_norm_backward(_scattered(gated, indices, shape), x, w)
        got = core.batchnorm2d_backward_pooled(g, indices, x, w, mean, invstd, True, relu_out)
    else:
        rm, rv = mean, rng.uniform(0.5, 2, shape[1]).astype(np.float32)
        want = oracle.batch_norm_eval_backward(_scattered(gated, indices, shape), x, rm, rv, w)
        got = core.batchnorm2d_backward_pooled_eval(g, indices, x, w, rm, rv, 1e-5, relu_out)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * np.sqrt(x.size / shape[1]))
    with pytest.raises(ValueError, match="relu_output"):
        core.batchnorm2d_backward_pooled(g, indices, x, w, mean, invstd, True, relu_out[:1])


def test_backward_pooled_refines_a_large_mean(core, rng) -> None:
    """|mean| >> std: the float32 saved mean is off by more than the data's spread allows."""
    shape, pool = (6, 3, 10, 10), dict(kernel_size=2)
    x, w, mean, invstd, g, indices = _pooled_inputs(rng, shape, pool, mean=3000.0, std=0.05)
    want = oracle.batch_norm_backward(_scattered(g, indices, shape), x, w)
    got = core.batchnorm2d_backward_pooled(g, indices, x, w, mean, invstd, True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.max(np.abs(b)))


def test_backward_pooled_eval_matches_oracle(rng) -> None:
    shape, pool = (3, 4, 9, 7), dict(kernel_size=2)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(4).astype(np.float32)
    rm = rng.standard_normal(4).astype(np.float32)
    rv = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    y = F.batch_norm(x, rm, rv, w, None, training=False)
    p, indices = F.max_pool2d(y, **pool, return_indices=True)
    g = rng.standard_normal(p.shape).astype(np.float32)
    got = F.batch_norm_max_pool2d_backward(
        g, indices, x, w, running_mean=rm, running_var=rv, training=False
    )
    want = oracle.batch_norm_eval_backward(_scattered(g, indices, shape), x, rm, rv, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * np.sqrt(x.size / 4))


def test_backward_pooled_equals_the_composition(rng) -> None:
    shape, pool = (4, 5, 12, 10), dict(kernel_size=3, stride=2, padding=1)
    x, w, mean, invstd, g, indices = _pooled_inputs(rng, shape, pool)
    y = F.batch_norm_train(x, None, None, w, None)[0]
    dy = F.max_pool2d_backward(g, y, **pool, indices=indices)
    want = F.batch_norm_backward(dy, x, w, save_mean=mean, save_invstd=invstd)
    got = F.batch_norm_max_pool2d_backward(g, indices, x, w, save_mean=mean, save_invstd=invstd)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.max(np.abs(b)))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(indices=lambda i: i + 1000), ValueError, r"indices: expected values in \[0, 64\)"),
        (dict(indices=lambda i: -i - 1), ValueError, "indices: expected values"),
        (dict(indices=lambda i: i.astype(np.float32)), TypeError, "indices: expected an integer"),
        (dict(indices=lambda i: i[:, :, :2]), ValueError, "indices"),
        (dict(g=lambda g: g[:1]), ValueError, r"dy: expected \(2, 3, P, Q\)"),
        (dict(g=lambda g: g[0]), ValueError, "dy"),
        (dict(x=lambda x: x[0]), ValueError, "x"),
        (dict(mean=lambda m: m[:2]), ValueError, "mean"),
    ],
)
def test_backward_pooled_bad_input(core, rng, change, error, match) -> None:
    args = dict(
        zip(
            ("x", "w", "mean", "invstd", "g", "indices"),
            _pooled_inputs(rng, (2, 3, 8, 8), dict(kernel_size=2)),
        )
    )
    for key, fn in change.items():
        args[key] = fn(args[key])
    with pytest.raises(error, match=match):
        core.batchnorm2d_backward_pooled(
            args["g"], args["indices"], args["x"], args["w"], args["mean"], args["invstd"], True
        )


@pytest.mark.parametrize(("shape", "pool"), [POOLED_CASES[1], POOLED_CASES[3], POOLED_CASES[8]])
def test_backward_pooled_one_index_outside_its_plane_raises(core, rng, shape, pool) -> None:
    """The kernels check the indices as they read them: a single bad one, in any plane, raises
    the ValueError that names it and its position, in training and eval mode, with a ReLU too."""
    x, w, mean, invstd, g, indices = _pooled_inputs(rng, shape, pool)
    L = shape[2] * shape[3]
    relu_out = np.maximum(g, 0)
    for bad in (-1, L, L + shape[3] + 1, 2**40, -(2**63)):
        broken = indices.copy()
        at = int(rng.integers(0, broken.size))
        broken.reshape(-1)[at] = bad
        match = rf"indices: expected values in \[0, {L}\).* got {bad} at flat position {at}$"
        with pytest.raises(ValueError, match=match):
            core.batchnorm2d_backward_pooled(g, broken, x, w, mean, invstd, True)
        with pytest.raises(ValueError, match=match):
            core.batchnorm2d_backward_pooled(g, broken, x, w, mean, invstd, True, relu_out)
        with pytest.raises(ValueError, match=match):
            core.batchnorm2d_backward_pooled_eval(g, broken, x, w, mean, 1 / invstd**2, 1e-5)


@pytest.mark.parametrize(
    ("rv", "eps", "error", "match"),
    [
        (np.ones(2, np.float32), 1e-5, ValueError, "running_var"),
        (np.ones(3, np.float32), -1.0, ValueError, "eps"),
    ],
)
def test_backward_pooled_eval_bad_input(core, rng, rv, eps, error, match) -> None:
    x, w, mean, _, g, indices = _pooled_inputs(rng, (2, 3, 8, 8), dict(kernel_size=2))
    with pytest.raises(error, match=match):
        core.batchnorm2d_backward_pooled_eval(g, indices, x, w, mean, rv, eps)


# --- batch norm followed by 2x2 max pooling (and ReLU): the fused forward ------------------------
# Odd heights and widths (a row and a column no window covers), planes wider than a vector of
# windows, a single window, an odd number of window rows in planes that take two rows of windows
# a vector, and a large mean.
FUSED_FORWARD_SHAPES = [
    (4, 6, 8, 8),
    (3, 5, 9, 11),
    (2, 3, 6, 70),
    (1, 2, 2, 2),
    (5, 3, 13, 37),
    (2, 3, 14, 14),
    (3, 2, 11, 17),
]


def _fused_composition(core, x, w, b, rm, rv, training, relu):
    """The calls the fused forward replaces, in the same variant: (y, indices, mean, invstd)."""
    if training:
        y, mean, invstd = core.batchnorm2d_forward_train(x, w, b, rm, rv, 0.1, 1e-5)
    else:
        y, mean, invstd = core.batchnorm2d_forward_eval(x, w, b, rm, rv, 1e-5), None, None
    p, indices = core.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0), (1, 1), False)
    return (core.relu_forward(p) if relu else p), indices, mean, invstd


@pytest.mark.parametrize("shape", FUSED_FORWARD_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("return_indices", [True, False])
def test_max_pool2d_forward_equals_the_composition(
    core, rng, shape, training, relu, return_indices
) -> None:
    """The fused forward equals its composition bit for bit; return_indices=False gives None
    for the indices and the same values."""
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    x.flat[:: max(1, x.size // 7)] = np.nan  # NaN wins its window, and ReLU keeps it
    w, b = rng.standard_normal((2, c)).astype(np.float32)
    stats = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    rm, rv = (s.copy() for s in stats)
    got = core.batchnorm2d_max_pool2d_forward(
        x, w, b, rm, rv, training, relu, 0.1, 1e-5, return_indices
    )
    rm_want, rv_want = (s.copy() for s in stats)
    want = _fused_composition(core, x, w, b, rm_want, rv_want, training, relu)
    if not return_indices:
        want = (want[0], None, *want[2:])
    for a, e in zip(got, want):
        if e is None:
            assert a is None
        else:
            np.testing.assert_array_equal(a, e)
    np.testing.assert_array_equal(rm, rm_want)
    np.testing.assert_array_equal(rv, rv_want)


@pytest.mark.parametrize("shape", [(21, 11, 27, 29), (75, 13, 14, 14), (5, 9, 57, 55)])
def test_fused_kernels_same_bits_for_any_thread_count(core, rng, shape) -> None:
    """One thread owns a channel and sums its planes in order: the fused forward (statistics,
    pooled values, indices) and backward give the same bits on 1 and 3 threads, for odd plane
    sizes, batches that are no multiple of a vector, and planes longer than one float run."""
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    w, b = rng.standard_normal((2, c)).astype(np.float32)
    before = fastcnn.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            fastcnn.set_num_threads(n)
            rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
            y, idx, mean, invstd = core.batchnorm2d_max_pool2d_forward(
                x, w, b, rm, rv, True, True, 0.1, 1e-5, True
            )
            g = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
            grads = core.batchnorm2d_backward_pooled(g, idx, x, w, mean, invstd, True, y)
            results.append((y, idx, mean, invstd, rm, rv, *grads))
    finally:
        fastcnn.set_num_threads(before)
    for one, three in zip(*results):
        if one.dtype == np.float32:  # bits, so that NaN payloads and signed zeros count too
            one, three = one.view(np.uint32), three.view(np.uint32)
        np.testing.assert_array_equal(one, three)


@pytest.mark.parametrize("shape", [(2, 12, 14, 15), (1, 12, 28, 28), (3, 12, 5, 9)])
def test_eval_max_pool2d_relu_forward_keeps_the_bits_of_the_composition(core, rng, shape) -> None:
    """Eval mode with ReLU and no indices: the same bits as batch norm, pooling and ReLU run one
    by one, NaN payloads, signed zeros, infinities, subnormals and ties included, for positive,
    negative, zero, tiny and huge scales, a -0.0 bias and non-finite running statistics."""
    x = rng.integers(-3, 4, shape).astype(np.float32) * np.float32(0.5)
    flat = x.reshape(-1)
    specials = np.array(
        [np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3e-39, -3e-39], np.float32
    )
    at = rng.choice(flat.size, flat.size // 3, replace=False)
    flat[at] = rng.choice(specials, at.size)
    w = np.array([1.0, -1.0, 0.0, 1e-30, 1e30, 2.0, 0.5, 3.0, 1.0, 1.0, 1.0, 1.0], np.float32)
    b = np.array([-0.0, 0.0, -0.0, 0.0, 1.0, -0.0, 0.5, -2.0, 0.0, -0.0, 0.0, 1e38], np.float32)
    rm = np.array([0.0, 0.5, 0.0, -0.0, 1.0, 0.0, 1.5, np.inf, 0.0, -0.5, 0.0, 0.0], np.float32)
    rv = np.array([1.0, 2.0, 1.0, 1.0, 0.5, 1e-30, 1.0, 1.0, np.nan, 1.0, 0.0, 1.0], np.float32)
    eps = 0.0  # rv 0 with eps 0: an infinite scale
    got = core.batchnorm2d_max_pool2d_forward(x, w, b, rm, rv, False, True, 0.0, eps, False)[0]
    y = core.batchnorm2d_forward_eval(x, w, b, rm, rv, eps)
    want = core.relu_forward(core.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0), (1, 1), False)[0])
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_max_pool2d_forward_matches_the_oracle(rng) -> None:
    shape = (3, 4, 10, 12)
    x = (rng.standard_normal(shape) * 2 - 1).astype(np.float32)
    w, b = rng.standard_normal((2, 4)).astype(np.float32)
    y, indices, mean, invstd = F.batch_norm_max_pool2d(x, None, None, w, b, True, relu=True)
    normalized = oracle.batch_norm(x, None, None, w, b, training=True)[0]
    # (N, C, P, Q, 4): each 2x2 window's taps in max_pool2d's order.
    windows = normalized.reshape(3, 4, 5, 2, 6, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(3, 4, 5, 6, 4)
    np.testing.assert_allclose(y, np.maximum(windows.max(axis=-1), 0), rtol=1e-5, atol=1e-5)
    tap = windows.argmax(axis=-1)
    rows = 2 * np.arange(5).reshape(1, 1, 5, 1) + tap // 2
    cols = 2 * np.arange(6).reshape(1, 1, 1, 6) + tap % 2
    np.testing.assert_array_equal(indices, rows * 12 + cols)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5), rtol=1e-5)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (dict(x=np.ones((2, 3, 4), np.float32)), ValueError, r"x: expected a 4-D array"),
        (dict(x=np.ones((2, 3, 4, 4), np.int32) + 0.5j), TypeError, "x"),
        (dict(w=np.ones(2, np.float32)), ValueError, "weight"),
        (dict(rm=np.ones(2, np.float32)), ValueError, "running_mean"),
        (dict(training=False, rv=None), TypeError, "running_var"),
        (dict(x=np.ones((1, 3, 1, 1), np.float32)), ValueError, "more than 1 value per channel"),
        (dict(eps=-1.0), ValueError, "eps"),
    ],
)
def test_max_pool2d_forward_bad_input(core, args, error, match) -> None:
    a = dict(
        x=np.ones((2, 3, 4, 4), np.float32),
        w=None,
        b=None,
        rm=np.zeros(3, np.float32),
        rv=np.ones(3, np.float32),
        training=True,
        eps=1e-5,
    )
    a.update(args)
    with pytest.raises(error, match=match):
        core.batchnorm2d_max_pool2d_forward(
            a["x"], a["w"], a["b"], a["rm"], a["rv"], a["training"], True, 0.1, a["eps"]
        )
