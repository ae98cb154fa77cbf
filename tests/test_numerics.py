"""Numerical edge cases of every op: large logits, constant batch-norm channels, -inf in pooling,
and NaN inputs, which must reach exactly the outputs and gradients they reach in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn.functional as F
from fastcnn import _core

torch = pytest.importorskip("torch")
TF = torch.nn.functional

VARIANTS = sorted(_core._variants)


def _t(a, grad=False):
    t = torch.from_numpy(np.array(a, dtype=np.float32))
    return t.requires_grad_() if grad else t


def _torch_grads(fn, arrays, dy):
    ts = [_t(a, grad=True) for a in arrays]
    fn(*ts).backward(_t(dy))
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("variant", VARIANTS)
def test_softmax_family_is_stable_for_logits_of_1e4(variant):
    core = _core._variants[variant]
    x = np.array(
        [[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, -1e4, 9999.0]], np.float32
    )
    labels = np.array([1, 0, 3])
    want_p = TF.softmax(_t(x), 1).numpy()
    want_logp = TF.log_softmax(_t(x), 1).numpy()
    p = core.softmax_forward(x, 1)
    logp = core.log_softmax_forward(x, 1)
    loss, probs = core.softmax_xent_forward(x, labels)
    dx = core.softmax_xent_backward(probs, labels)
    for a in (p, logp, probs, dx):
        assert np.isfinite(a).all()
    np.testing.assert_allclose(p, want_p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(logp, want_logp, rtol=1e-6)
    want_loss = TF.cross_entropy(_t(x), torch.from_numpy(labels)).item()
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    want_dx = _torch_grads(lambda a: TF.cross_entropy(a, torch.from_numpy(labels)), [x], 1.0)[0]
    np.testing.assert_allclose(dx, want_dx, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_norm_of_a_constant_channel_is_zero_with_finite_gradients(variant, rng):
    core = _core._variants[variant]
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    x[:, 1] = 7.25  # zero variance: invstd = 1/sqrt(eps)
    w = rng.standard_normal(3).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    y, mean, invstd = core.batchnorm2d_forward_train(x, w, b, rm, rv, 0.1, 1e-5)
    assert np.isfinite(y).all() and np.isfinite(invstd).all()
    np.testing.assert_allclose(y[:, 1], b[1], atol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw, db = core.batchnorm2d_backward(dy, x, w, mean, invstd, True)
    want = _torch_grads(
        lambda a, g, c: TF.batch_norm(a, None, None, g, c, training=True), [x, w, b], dy
    )
    for got, ref in zip((dx, dw, db), want):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_max_pooling_of_minus_inf(variant):
    core = _core._variants[variant]
    x = np.full((1, 2, 4, 5), -np.inf, np.float32)
    x[0, 1, 3, 4] = 1.0
    y, idx = core.max_pool2d_forward(x, 3, 1, 1, 1, False)
    ty, tidx = TF.max_pool2d(_t(x), 3, 1, 1, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    dy = np.ones_like(y)
    np.testing.assert_array_equal(
        core.max_pool2d_backward(dy, x, 3, 1, 1, 1, False, idx),
        _torch_grads(lambda a: TF.max_pool2d(a, 3, 1, 1), [x], dy)[0],
    )


def _nan(rng, shape, *positions):
    a = rng.standard_normal(shape).astype(np.float32)
    for p in positions:
        a.flat[p] = np.nan
    return a


def _forward_cases(rng):
    """(name, ours, torch's) for every forward op, each fed one or two NaNs."""
    x = _nan(rng, (2, 3, 6, 6), 5, 100)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    wn = _nan(rng, (4, 3, 3, 3), 7)
    xl, wl = _nan(rng, (3, 5), 2), rng.standard_normal((4, 5)).astype(np.float32)
    logits, labels = _nan(rng, (4, 5), 3), np.array([0, 1, 2, 3])
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    t = _t
    return [
        ("relu", F.relu(x), TF.relu(t(x))),
        ("leaky_relu", F.leaky_relu(x), TF.leaky_relu(t(x))),
        ("conv2d x", F.conv2d(x, w, padding=1), TF.conv2d(t(x), t(w), padding=1)),
        (
            "conv2d weight",
            F.conv2d(np.ones((2, 3, 4, 4)), wn),
            TF.conv2d(torch.ones(2, 3, 4, 4), t(wn)),
        ),
        ("linear", F.linear(xl, wl), TF.linear(t(xl), t(wl))),
        ("max_pool2d", F.max_pool2d(x, 2), TF.max_pool2d(t(x), 2)),
        ("max_pool2d padded", F.max_pool2d(x, 3, 2, 1), TF.max_pool2d(t(x), 3, 2, 1)),
        ("avg_pool2d", F.avg_pool2d(x, 2), TF.avg_pool2d(t(x), 2)),
        (
            "adaptive_avg_pool2d",
            F.adaptive_avg_pool2d(x, (4, 3)),
            TF.adaptive_avg_pool2d(t(x), (4, 3)),
        ),
        (
            "batch_norm train",
            F.batch_norm_train(x)[0],
            TF.batch_norm(t(x), None, None, training=True),
        ),
        ("batch_norm eval", F.batch_norm(x, rm, rv), TF.batch_norm(t(x), t(rm), t(rv))),
        ("softmax", F.softmax(logits, 1), TF.softmax(t(logits), 1)),
        ("log_softmax", F.log_softmax(logits, 1), TF.log_softmax(t(logits), 1)),
        (
            "cross_entropy",
            F.cross_entropy(logits, labels),
            TF.cross_entropy(t(logits), torch.from_numpy(labels)),
        ),
        (
            "mse_loss",
            F.mse_loss(logits, np.zeros_like(logits)),
            TF.mse_loss(t(logits), torch.zeros(4, 5)),
        ),
        ("dropout p=0", F.dropout(x, 0.0), TF.dropout(t(x), 0.0)),
    ]


def test_nan_reaches_the_same_forward_outputs_as_in_pytorch(rng):
    with np.errstate(invalid="ignore"):
        cases = _forward_cases(rng)
    for name, ours, theirs in cases:
        theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
        assert np.isnan(ours).any(), name
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=name)


def test_nan_reaches_the_same_gradients_as_in_pytorch(rng):
    x = _nan(rng, (2, 3, 6, 6), 5)
    xc = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    dyn = _nan(rng, dy.shape, 7)
    xr = x.copy()
    xr.flat[7] = 1.0  # where dy is NaN, so that the NaN passes through relu's gradient
    dyp = _nan(rng, (2, 3, 3, 3), 4)
    xl, wl = _nan(rng, (3, 5), 2), rng.standard_normal((4, 5)).astype(np.float32)
    logits, labels = _nan(rng, (4, 5), 3), np.array([0, 1, 2, 3])

    def conv(a, b):
        return TF.conv2d(a, b, padding=1)

    cases = [
        (
            "conv2d, x NaN",
            F.conv2d_backward(dy, x, w, padding=1)[:2],
            _torch_grads(conv, [x, w], dy),
        ),
        (
            "conv2d, dy NaN",
            F.conv2d_backward(dyn, xc, w, padding=1)[:2],
            _torch_grads(conv, [xc, w], dyn),
        ),
        (
            "linear",
            F.linear_backward(np.ones((3, 4)), xl, wl)[:2],
            _torch_grads(TF.linear, [xl, wl], np.ones((3, 4))),
        ),
        ("relu", [F.relu_backward(dyn[:, :3], xr)], _torch_grads(TF.relu, [xr], dyn[:, :3])),
        (
            "max_pool2d",
            [F.max_pool2d_backward(dyp, x, 2)],
            _torch_grads(lambda a: TF.max_pool2d(a, 2), [x], dyp),
        ),
        (
            "avg_pool2d",
            [F.avg_pool2d_backward(dyp, xc, 2)],
            _torch_grads(lambda a: TF.avg_pool2d(a, 2), [xc], dyp),
        ),
        (
            "batch_norm",
            [F.batch_norm_backward(np.ones_like(x), x)[0]],
            _torch_grads(
                lambda a: TF.batch_norm(a, None, None, training=True), [x], np.ones_like(x)
            ),
        ),
        (
            "softmax",
            [F.softmax_backward(np.ones((4, 5)), logits, 1)],
            _torch_grads(lambda a: TF.softmax(a, 1), [logits], np.ones((4, 5))),
        ),
        (
            "cross_entropy",
            [F.cross_entropy_backward(logits, labels)],
            _torch_grads(lambda a: TF.cross_entropy(a, torch.from_numpy(labels)), [logits], 1.0),
        ),
    ]
    for name, ours, theirs in cases:
        assert any(np.isnan(g).any() for g in ours), name
        for got, want in zip(ours, theirs):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_propagates_nan_like_ref(variant, rng):
    core, ref = _core._variants[variant], _core._variants["ref"]
    x = _nan(rng, (2, 16, 9, 9), 3, 700)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    for op, args in [
        ("relu_forward", (x,)),
        ("conv2d_forward", (x, w)),
        ("max_pool2d_forward", (x, 3, 2, 1)),
        ("avg_pool2d_forward", (x, 3, 2, 1)),
        ("softmax_forward", (x.reshape(2, -1), 1)),
    ]:
        got, want = getattr(core, op)(*args), getattr(ref, op)(*args)
        got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=op)
