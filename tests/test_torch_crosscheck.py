"""Random configurations against PyTorch: every functional op, forward and backward, on shapes and
arguments drawn afresh per case (seeded, so a failure reproduces), beyond the hand-picked matrices
of the per-family tests."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastcnn.functional as F

torch = pytest.importorskip("torch", reason="the cross-check needs PyTorch")
tF = torch.nn.functional

CASES = range(40)


def _close(ours, theirs, atol_scale: float = 1.0, rtol: float = 1e-4) -> None:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    # float32 sums of `atol_scale` terms of unit size carry about sqrt(terms) ulps of error
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-5 * max(1.0, atol_scale))


def _t(a: np.ndarray, grad: bool = True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_random(case):
    rng = np.random.default_rng(1000 + case)
    groups = int(rng.choice([1, 1, 2, 3]))
    cpg, kpg = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    c, k = cpg * groups, kpg * groups
    r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    if rng.random() < 0.2:
        stride, padding = (1, 1), str(rng.choice(["same", "valid"]))
    h = int(rng.integers(1, 14)) + dilation[0] * (r - 1)
    w = int(rng.integers(1, 14)) + dilation[1] * (s - 1)
    n = int(rng.integers(1, 4))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, cpg, r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if rng.random() < 0.7 else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv2d(x, wt, b, **args)
    xt, wtt = _t(x), _t(wt)
    bt = _t(b) if b is not None else None
    with warnings.catch_warnings():
        # torch warns (once per process) that "same" with an even kernel pads asymmetrically
        warnings.simplefilter("ignore", UserWarning)
        yt = tF.conv2d(xt, wtt, bt, **args)
    terms = cpg * r * s
    _close(y, yt, terms**0.5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    dx, dw, db = F.conv2d_backward(dy, x, wt, **args)
    _close(dx, xt.grad, (kpg * r * s) ** 0.5)
    _close(dw, wtt.grad, (n * y.shape[2] * y.shape[3]) ** 0.5)
    if b is not None:
        _close(db, bt.grad, (n * y.shape[2] * y.shape[3]) ** 0.5)


@pytest.mark.parametrize("case", CASES)
def test_pooling_random(case):
    rng = np.random.default_rng(2000 + case)
    kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kernel[0] // 2 + 1)), int(rng.integers(0, kernel[1] // 2 + 1)))
    ceil_mode = bool(rng.random() < 0.5)
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    h, w = kernel[0] + int(rng.integers(0, 12)), kernel[1] + int(rng.integers(0, 12))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)

    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    if (
        all(h + 2 * p >= d * (k - 1) + 1 for p, d, k in ((padding[0], dilation[0], kernel[0]),))
        and w + 2 * padding[1] >= dilation[1] * (kernel[1] - 1) + 1
        and rng.random() < 0.5
    ):
        mdil = dilation
    else:
        mdil = (1, 1)
    margs = dict(
        kernel_size=kernel, stride=stride, padding=padding, dilation=mdil, ceil_mode=ceil_mode
    )
    xt = _t(x)
    try:
        yt, it = tF.max_pool2d(xt, **margs, return_indices=True)
    except RuntimeError:
        with pytest.raises(ValueError):
            F.max_pool2d(x, **margs)
        return
    y, idx = F.max_pool2d(x, **margs, return_indices=True)
    _close(y, yt)
    np.testing.assert_array_equal(idx, it.numpy())
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(F.max_pool2d_backward(dy, x, **margs, indices=idx), xt.grad)

    include = bool(rng.random() < 0.5)
    divisor = int(rng.integers(1, 7)) if rng.random() < 0.2 else None
    aargs = dict(
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=include,
        divisor_override=divisor,
    )
    xt = _t(x)
    yt = tF.avg_pool2d(xt, **aargs)
    y = F.avg_pool2d(x, **aargs)
    _close(y, yt)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(F.avg_pool2d_backward(dy, x, **aargs), xt.grad)

    out = (int(rng.integers(1, h + 3)), None if rng.random() < 0.2 else int(rng.integers(1, w + 3)))
    xt = _t(x)
    yt = tF.adaptive_avg_pool2d(xt, out)
    y = F.adaptive_avg_pool2d(x, out)
    _close(y, yt)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(F.adaptive_avg_pool2d_backward(dy, x, out), xt.grad)


@pytest.mark.parametrize("case", CASES)
def test_norm_softmax_loss_linear_random(case):
    rng = np.random.default_rng(3000 + case)
    rank = int(rng.integers(2, 5))
    shape = (int(rng.integers(2, 6)), int(rng.integers(1, 8))) + tuple(
        int(rng.integers(1, 7)) for _ in range(rank - 2)
    )
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 5) + rng.uniform(-3, 3)).astype(np.float32)
    c = shape[1]
    weight = rng.standard_normal(c).astype(np.float32) if rng.random() < 0.8 else None
    bias = rng.standard_normal(c).astype(np.float32) if weight is not None else None
    momentum = float(rng.uniform(0.01, 0.9))
    rm, rv = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    rmt, rvt = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
    xt = _t(x)
    wt = _t(weight) if weight is not None else None
    bt = _t(bias) if bias is not None else None
    yt = tF.batch_norm(xt, rmt, rvt, wt, bt, training=True, momentum=momentum, eps=1e-5)
    y = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=momentum, eps=1e-5)
    _close(y, yt, 10)
    _close(rm, rmt, 10)
    _close(rv, rvt, 10)
    dy = rng.standard_normal(shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    dx, dw, db = F.batch_norm_backward(dy, x, weight, training=True, eps=1e-5)
    count = x.size // c
    _close(dx, xt.grad, 10 * count**0.5, rtol=1e-3)
    if weight is not None:
        _close(dw, wt.grad, count**0.5, rtol=1e-3)
        _close(db, bt.grad, count**0.5)

    dim = int(rng.integers(-rank, rank))
    xt = _t(x)
    for ours, theirs, back in (
        (F.softmax, torch.softmax, F.softmax_backward),
        (F.log_softmax, torch.log_softmax, F.log_softmax_backward),
    ):
        xt = _t(x)
        yt = theirs(xt, dim)
        _close(ours(x, dim=dim), yt)
        yt.backward(torch.from_numpy(dy.astype(np.float64)))
        _close(back(dy, x, dim=dim), xt.grad, shape[dim] ** 0.5)

    n, classes = int(rng.integers(1, 20)), int(rng.integers(2, 30))
    logits = (rng.standard_normal((n, classes)) * 4).astype(np.float32)
    labels = rng.integers(0, classes, n)
    smoothing = float(rng.choice([0.0, 0.1, 0.3]))
    lt = _t(logits)
    loss_t = tF.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
    loss_t.backward()
    assert float(F.cross_entropy(logits, labels, label_smoothing=smoothing)) == pytest.approx(
        loss_t.item(), rel=1e-5, abs=1e-6
    )
    _close(F.cross_entropy_backward(logits, labels, label_smoothing=smoothing), lt.grad)

    inf, outf = int(rng.integers(1, 40)), int(rng.integers(1, 20))
    lead = tuple(int(rng.integers(1, 4)) for _ in range(int(rng.integers(1, 3))))
    xl = rng.standard_normal(lead + (inf,)).astype(np.float32)
    wl = rng.standard_normal((outf, inf)).astype(np.float32)
    bl = rng.standard_normal(outf).astype(np.float32)
    xlt, wlt, blt = _t(xl), _t(wl), _t(bl)
    ylt = tF.linear(xlt, wlt, blt)
    _close(F.linear(xl, wl, bl), ylt, inf**0.5)
    dyl = rng.standard_normal(ylt.shape).astype(np.float32)
    ylt.backward(torch.from_numpy(dyl.astype(np.float64)))
    dx, dw, db = F.linear_backward(dyl, xl, wl)
    _close(dx, xlt.grad, outf**0.5)
    _close(dw, wlt.grad, int(np.prod(lead)) ** 0.5)
    _close(db, blt.grad, int(np.prod(lead)) ** 0.5)
