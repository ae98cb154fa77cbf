"""Tests of the float64 oracle: its backward against central differences, everything against torch.

Layout key: x is (N, C, H, W), w is (K, C/groups, R, S). All arrays here are float64.
"""

from __future__ import annotations

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref
from gradcheck import check_backward

# float64 against float64 torch: both sides sum the same terms in possibly different orders.
TORCH_RTOL = 1e-10
TORCH_ATOL = 1e-12


def _rng(seed: int) -> np.random.Generator:
    """Seeded generator; every test draws fresh, non-zero inputs from its own seed."""
    return np.random.default_rng(seed)


def _distinct(rng: np.random.Generator, shape) -> np.ndarray:
    """Values at least 0.05 apart and away from 0, so eps steps never cross a kink or a tie."""
    n = int(np.prod(shape))
    vals = (rng.permutation(n) - n / 2 + 0.5) * 0.1 + rng.uniform(-0.02, 0.02, n)
    return vals.reshape(shape)


def _away_from_zero(rng: np.random.Generator, shape) -> np.ndarray:
    """Normal values pushed at least 0.1 away from 0 (the ReLU kink)."""
    x = rng.standard_normal(shape)
    return x + np.where(x >= 0, 0.1, -0.1)


# (x shape, w shape, kwargs): odd sizes, batch 1, stride, dilation, groups, depthwise, 1x1, 7x7.
CONV_CASES = [
    ((1, 3, 7, 5), (4, 3, 3, 3), dict(padding=1)),
    ((2, 2, 7, 7), (3, 2, 3, 3), dict(stride=2, padding=1)),
    ((1, 2, 7, 6), (2, 2, 3, 3), dict(dilation=2, padding=2)),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(groups=2)),
    ((2, 3, 5, 5), (3, 1, 3, 3), dict(groups=3, padding=1)),
    ((2, 3, 4, 5), (5, 3, 1, 1), dict()),
    ((1, 2, 9, 9), (2, 2, 7, 7), dict(stride=2, padding=3)),
    ((1, 2, 5, 6), (3, 2, 3, 2), dict(padding=(2, 1))),
    ((1, 2, 6, 5), (2, 2, 3, 3), dict(padding="same")),
    ((1, 2, 6, 7), (2, 2, 2, 4), dict(padding="same", dilation=(1, 2))),
    ((1, 2, 6, 5), (2, 2, 3, 2), dict(padding="valid")),
    ((2, 2, 8, 7), (3, 2, 3, 2), dict(stride=(2, 3), padding=(0, 1))),
]
CONV_IDS = [f"{x}-{w}-{kw}" for x, w, kw in CONV_CASES]


def _maybe_same_even(kw: dict, wshape) -> list:
    """Marks for torch's warn-once note about even kernels with padding='same'."""
    even = wshape[2] % 2 == 0 or wshape[3] % 2 == 0
    if kw.get("padding") == "same" and even:
        return [pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")]
    return []


# (x shape, kernel_size, stride, padding, dilation, ceil_mode)
MAXPOOL_CASES = [
    ((1, 2, 6, 6), 2, None, 0, 1, False),
    ((2, 2, 7, 5), 3, 2, 1, 1, False),
    ((1, 3, 7, 7), 3, 2, 1, 1, True),
    ((1, 2, 5, 5), 2, 2, 1, 1, True),  # ceil_mode drops a window that starts in the right pad
    ((1, 2, 5, 7), 2, 2, 0, 1, True),
    ((1, 1, 9, 8), 3, 2, 1, 2, False),
    ((1, 1, 9, 8), (3, 2), (2, 1), (1, 0), (2, 1), True),
    ((2, 1, 6, 6), 4, 3, 2, 1, True),
]

# (x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVGPOOL_CASES = [
    ((1, 2, 6, 6), 2, None, 0, False, True, None),
    ((2, 2, 7, 5), 3, 2, 1, False, True, None),
    ((2, 2, 7, 5), 3, 2, 1, False, False, None),
    ((1, 2, 7, 7), 3, 2, 1, True, True, None),
    ((1, 2, 7, 7), 3, 2, 1, True, False, None),
    ((1, 2, 5, 5), 2, 2, 1, True, True, None),
    ((1, 2, 6, 6), 4, 3, 2, True, True, None),  # last window clipped by the padded border
    ((1, 2, 6, 6), 4, 3, 2, True, False, None),
    ((1, 1, 8, 6), (3, 2), (2, 1), (1, 1), True, True, None),
    ((1, 2, 7, 5), 3, 2, 1, True, True, 5),
    ((1, 1, 6, 6), 3, 2, 1, True, True, None),  # last window runs past the padded border
    ((1, 1, 6, 6), 3, 2, 1, True, False, None),
]

ADAPTIVE_CASES = [
    ((1, 2, 7, 5), (3, 3)),
    ((2, 1, 6, 9), (None, 4)),
    ((1, 2, 5, 5), 1),
    ((1, 1, 4, 3), (7, 5)),  # more outputs than inputs: windows overlap
    ((1, 1, 10, 10), (3, None)),
]

# (shape, dim)
SOFTMAX_CASES = [
    ((3, 5), 0),
    ((3, 5), 1),
    ((3, 5), -1),
    ((2, 3, 4), 0),
    ((2, 3, 4), 1),
    ((2, 3, 4), -1),
    ((2, 3, 2, 3), 1),
    ((2, 3, 2, 3), -1),
    ((2, 3, 2, 3), 0),
]

# (logits shape, label_smoothing)
XENT_CASES = [((4, 5), 0.0), ((4, 5), 0.1), ((1, 3), 0.0), ((2, 4, 3, 2), 0.1), ((3, 4, 5), 0.0)]

BN_SHAPES = [(5, 3), (4, 3, 5), (2, 3, 3, 4), (1, 2, 3, 3)]


# ---------------------------------------------------------------------------------------------
# 1. Oracle backward against central differences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("xs", "ws", "kw"), CONV_CASES, ids=CONV_IDS)
def test_conv2d_gradcheck(xs, ws, kw) -> None:
    rng = _rng(sum(xs) + sum(ws))
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    check_backward(
        lambda x, w, b: ref.conv2d(x, w, b, **kw),
        lambda g, x, w, b: ref.conv2d_backward(g, x, w, **kw),
        [x, w, b],
        wrt=(0, 1, 2),
        seed=len(CONV_IDS),
    )


@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=str)
def test_max_pool2d_gradcheck(case) -> None:
    xs, k, s, p, d, ceil = case
    x = _distinct(_rng(sum(xs) + 1), xs)
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    check_backward(
        lambda x: ref.max_pool2d(x, **kw)[0],
        lambda g, x: ref.max_pool2d_backward(g, x, **kw),
        [x],
        seed=2,
    )


@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=str)
def test_avg_pool2d_gradcheck(case) -> None:
    xs, k, s, p, ceil, cip, div = case
    x = _rng(sum(xs) + 2).standard_normal(xs)
    kw = dict(
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil,
        count_include_pad=cip,
        divisor_override=div,
    )
    check_backward(
        lambda x: ref.avg_pool2d(x, **kw), lambda g, x: ref.avg_pool2d_backward(g, x, **kw), [x]
    )


@pytest.mark.parametrize(("xs", "out"), ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_gradcheck(xs, out) -> None:
    x = _rng(sum(xs) + 3).standard_normal(xs)
    check_backward(
        lambda x: ref.adaptive_avg_pool2d(x, out),
        lambda g, x: ref.adaptive_avg_pool2d_backward(g, x, out),
        [x],
        seed=3,
    )


def test_relu_gradcheck() -> None:
    x = _away_from_zero(_rng(4), (2, 3, 5))
    check_backward(ref.relu, ref.relu_backward, [x])


@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5])
def test_leaky_relu_gradcheck(slope) -> None:
    x = _away_from_zero(_rng(5), (3, 7))
    check_backward(
        lambda x: ref.leaky_relu(x, slope), lambda g, x: ref.leaky_relu_backward(g, x, slope), [x]
    )


@pytest.mark.parametrize("xs", [(3, 5), (1, 5), (2, 3, 5)], ids=str)
def test_linear_gradcheck(xs) -> None:
    rng = _rng(6 + len(xs))
    x, w, b = rng.standard_normal(xs), rng.standard_normal((4, 5)), rng.standard_normal(4)
    check_backward(
        ref.linear, lambda g, x, w, b: ref.linear_backward(g, x, w), [x, w, b], wrt=(0, 1, 2)
    )


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_train_gradcheck(shape) -> None:
    rng = _rng(7 + len(shape))
    x = rng.standard_normal(shape) * 2.0 + 0.5
    C = shape[1]
    w, b = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    check_backward(
        lambda x, w, b: ref.batch_norm(x, None, None, w, b, training=True)[0],
        lambda g, x, w, b: ref.batch_norm_backward(g, x, w),
        [x, w, b],
        wrt=(0, 1, 2),
    )


@pytest.mark.parametrize("shape", BN_SHAPES[:3], ids=str)
def test_batch_norm_train_gradcheck_no_affine(shape) -> None:
    x = _rng(8).standard_normal(shape)
    check_backward(
        lambda x: ref.batch_norm(x, None, None, training=True)[0],
        lambda g, x: ref.batch_norm_backward(g, x)[0],
        [x],
    )


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_eval_gradcheck(shape) -> None:
    rng = _rng(9 + len(shape))
    C = shape[1]
    x = rng.standard_normal(shape)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    w, b = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    check_backward(
        lambda x, w, b: ref.batch_norm(x, rm, rv, w, b, training=False)[0],
        lambda g, x, w, b: ref.batch_norm_eval_backward(g, x, rm, rv, w),
        [x, w, b],
        wrt=(0, 1, 2),
    )


@pytest.mark.parametrize(("shape", "dim"), SOFTMAX_CASES, ids=str)
def test_softmax_gradcheck(shape, dim) -> None:
    x = _rng(10 + dim).standard_normal(shape) * 3.0
    check_backward(lambda x: ref.softmax(x, dim), lambda g, x: ref.softmax_backward(g, x, dim), [x])
    check_backward(
        lambda x: ref.log_softmax(x, dim), lambda g, x: ref.log_softmax_backward(g, x, dim), [x]
    )


@pytest.mark.parametrize(("shape", "eps"), XENT_CASES, ids=str)
def test_cross_entropy_gradcheck(shape, eps) -> None:
    rng = _rng(11 + len(shape))
    z = rng.standard_normal(shape) * 2.0
    t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    check_backward(
        lambda z: ref.cross_entropy(z, t, eps),
        lambda g, z: ref.cross_entropy_backward(z, t, eps, grad_output=float(g)),
        [z],
    )


def test_mse_loss_gradcheck() -> None:
    rng = _rng(12)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_backward(
        ref.mse_loss,
        lambda g, a, b: ref.mse_loss_backward(a, b, grad_output=float(g)),
        [a, b],
        wrt=(0, 1),
    )


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_gradcheck(p) -> None:
    rng = _rng(13)
    x = rng.standard_normal((4, 6))
    mask = (rng.uniform(size=x.shape) >= p).astype(np.float64)
    check_backward(
        lambda x: ref.dropout_apply(x, mask, p), lambda g, x: ref.dropout_backward(g, mask, p), [x]
    )
    if p == 1.0:
        assert not ref.dropout_apply(x, mask, p).any()


# ---------------------------------------------------------------------------------------------
# Direct semantic pins that need no torch
# ---------------------------------------------------------------------------------------------


def test_relu_grad_at_zero_is_zero() -> None:
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(ref.relu_backward(np.ones(3), x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ref.leaky_relu_backward(np.ones(3), x, 0.1), [0.1, 0.1, 1.0])


def test_oracle_does_not_modify_inputs() -> None:
    rng = _rng(14)
    x, rm, rv = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3), rng.uniform(1, 2, 3)
    copies = [a.copy() for a in (x, rm, rv)]
    ref.batch_norm(x, rm, rv, training=True)
    for a, c in zip((x, rm, rv), copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_returns_float64_from_float32() -> None:
    x = np.ones((1, 1, 3, 3), np.float32)
    assert ref.conv2d(x, np.ones((1, 1, 2, 2), np.float32)).dtype == np.float64
    assert ref.max_pool2d(x, 2)[0].dtype == np.float64


def test_softmax_is_stable_for_huge_logits() -> None:
    x = np.array([[1000.0, 1001.0, -1000.0]])
    y = ref.softmax(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(), 1.0)
    assert np.isfinite(ref.cross_entropy(x, np.array([2])))


def test_pool_ceil_mode_corner_cases() -> None:
    # 5 wide, k=2, s=2, pad 1: ceil gives 4 windows, but the 4th would start in the right padding.
    assert ref.max_pool2d(np.ones((1, 1, 5, 5)), 2, 2, 1, ceil_mode=True)[0].shape == (1, 1, 3, 3)
    # 6 wide, k=3, s=2, pad 1, ceil: the last window covers input, padding, and a cell beyond the
    # padding; count_include_pad counts only the first two, so the corner divisor is 2*2.
    y = ref.avg_pool2d(np.ones((1, 1, 6, 6)), 3, 2, 1, ceil_mode=True)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, -1, -1] == 0.25 and y[0, 0, 0, 0] == 4 / 9
    y = ref.avg_pool2d(np.ones((1, 1, 6, 6)), 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_array_equal(y, 1.0)


def test_batch_norm_without_running_stats_matches_torch() -> None:
    torch = _torch()
    x = _rng(33).standard_normal((6, 4, 3))
    y, rm, rv, _, _ = ref.batch_norm(x, None, None, training=True)
    assert rm is None and rv is None
    _close(y, torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True))


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (
            lambda: ref.conv2d(
                np.ones((1, 2, 5, 5)), np.ones((1, 2, 3, 3)), stride=2, padding="same"
            ),
            ValueError,
        ),
        (lambda: ref.conv2d(np.ones((1, 3, 5, 5)), np.ones((2, 2, 3, 3)), groups=2), ValueError),
        (lambda: ref.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))), ValueError),
        (lambda: ref.max_pool2d(np.ones((1, 1, 5, 5)), 2, padding=2), ValueError),
        (lambda: ref.avg_pool2d(np.ones((1, 1, 5, 5)), 3, padding=2), ValueError),
        (lambda: ref.batch_norm(np.ones((1, 3)), None, None, training=True), ValueError),
        (
            lambda: ref.batch_norm(np.ones((2, 3)), None, None, training=True, momentum=None),
            NotImplementedError,
        ),
        (lambda: ref.cross_entropy(np.ones((2, 3)), np.array([0, 3])), ValueError),
        (lambda: ref.cross_entropy(np.ones((2, 3)), np.array([0.0, 1.0])), TypeError),
    ],
)
def test_invalid_arguments_raise(call, exc) -> None:
    with pytest.raises(exc):
        call()


# ---------------------------------------------------------------------------------------------
# 2. Oracle against torch (float64, autograd for every gradient)
# ---------------------------------------------------------------------------------------------


def _torch():
    """Import torch or skip the calling test."""
    return pytest.importorskip("torch")


def _close(got, want, rtol: float = TORCH_RTOL, atol: float = TORCH_ATOL, what: str = "") -> None:
    """Compare an oracle result with a torch tensor or array."""
    if hasattr(want, "detach"):
        want = want.detach().numpy()
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol, err_msg=what)


def _torch_run(fn, arrays, g, needs_grad):
    """Return (y, grads) of fn on float64 tensors, grads of sum(y * g) for flagged inputs."""
    torch = _torch()
    ts = [
        None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=rg)
        for a, rg in zip(arrays, needs_grad, strict=True)
    ]
    y = fn(*ts)
    (y * torch.tensor(g)).sum().backward()
    return y, [t.grad for t, rg in zip(ts, needs_grad, strict=True) if rg]


LENET_CASES = [
    ((16, 6, 14, 14), (16, 6, 5, 5), dict()),  # LeNet-5 C3
    ((4, 1, 32, 32), (6, 1, 5, 5), dict()),  # LeNet-5 C1
    ((1, 32, 16, 16), (64, 32, 3, 3), dict(padding=1)),  # VGG-style 3x3
]
TORCH_CONV_CASES = [
    pytest.param(*c, id=i, marks=_maybe_same_even(c[2], c[1]))
    for c, i in zip(CONV_CASES, CONV_IDS, strict=True)
] + [pytest.param(*c, id=f"real-{c[0]}-{c[1]}") for c in LENET_CASES]


@pytest.mark.parametrize(("xs", "ws", "kw"), TORCH_CONV_CASES)
def test_conv2d_matches_torch(xs, ws, kw) -> None:
    torch = _torch()
    rng = _rng(sum(xs) * 7 + sum(ws))
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    y = ref.conv2d(x, w, b, **kw)
    g = rng.standard_normal(y.shape)
    ty, (dx, dw, db) = _torch_run(
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw), [x, w, b], g, [True] * 3
    )
    _close(y, ty, what="y")
    got = ref.conv2d_backward(g, x, w, **kw)
    for name, a, t in zip(("dx", "dw", "db"), got, (dx, dw, db), strict=True):
        _close(a, t, what=name)
    # Without a bias the forward must equal the biased one minus the bias.
    _close(ref.conv2d(x, w, None, **kw), y - b.reshape(1, -1, 1, 1), what="no bias")


@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=str)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_pool2d_matches_torch(case, ties) -> None:
    torch = _torch()
    xs, k, s, p, d, ceil = case
    rng = _rng(sum(xs) + 21)
    # Small integers create ties inside windows, which pins down the first-max rule.
    x = rng.integers(-2, 3, xs).astype(np.float64) if ties else rng.standard_normal(xs)
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    y, idx = ref.max_pool2d(x, **kw)
    g = rng.standard_normal(y.shape)
    t = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(t, return_indices=True, **kw)
    (ty * torch.tensor(g)).sum().backward()
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    _close(ref.max_pool2d_backward(g, x, **kw), t.grad, what="dx")


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, dilation=2),
    ],
    ids=["ceil", "dilated"],
)
def test_max_pool2d_nan_and_neg_inf_match_torch(kw) -> None:
    torch = _torch()
    x = _rng(22).standard_normal((1, 2, 7, 7))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 0, 1] = np.nan  # two NaNs in one window: which index wins is pinned here
    # All -inf: each window reports its first in-bounds tap (dilated windows skip the padding).
    x[0, 1] = -np.inf
    y, idx = ref.max_pool2d(x, **kw)
    ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(y, ty.numpy())  # assert_array_equal treats NaN == NaN
    np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=str)
def test_avg_pool2d_matches_torch(case) -> None:
    torch = _torch()
    xs, k, s, p, ceil, cip, div = case
    rng = _rng(sum(xs) + 23)
    x = rng.standard_normal(xs)
    kw = dict(
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil,
        count_include_pad=cip,
        divisor_override=div,
    )
    y = ref.avg_pool2d(x, **kw)
    g = rng.standard_normal(y.shape)
    ty, (dx,) = _torch_run(lambda x: torch.nn.functional.avg_pool2d(x, **kw), [x], g, [True])
    assert y.shape == tuple(ty.shape)
    _close(y, ty, what="y")
    _close(ref.avg_pool2d_backward(g, x, **kw), dx, what="dx")


@pytest.mark.parametrize(("xs", "out"), ADAPTIVE_CASES + [((2, 3, 13, 11), (4, 3))], ids=str)
def test_adaptive_avg_pool2d_matches_torch(xs, out) -> None:
    torch = _torch()
    rng = _rng(sum(xs) + 24)
    x = rng.standard_normal(xs)
    y = ref.adaptive_avg_pool2d(x, out)
    g = rng.standard_normal(y.shape)
    ty, (dx,) = _torch_run(
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, out), [x], g, [True]
    )
    _close(y, ty, what="y")
    _close(ref.adaptive_avg_pool2d_backward(g, x, out), dx, what="dx")


@pytest.mark.parametrize("kind", ["relu", "leaky_relu"])
def test_activations_match_torch(kind) -> None:
    torch = _torch()
    rng = _rng(25)
    x = rng.standard_normal((3, 4, 5))
    x.flat[:3] = [0.0, np.nan, -0.0]
    g = rng.standard_normal(x.shape)
    if kind == "relu":
        fwd, bwd, tfn = ref.relu, ref.relu_backward, torch.relu
    else:
        fwd = lambda x: ref.leaky_relu(x, 0.2)  # noqa: E731
        bwd = lambda g, x: ref.leaky_relu_backward(g, x, 0.2)  # noqa: E731
        tfn = lambda x: torch.nn.functional.leaky_relu(x, 0.2)  # noqa: E731
    ty, (dx,) = _torch_run(tfn, [x], g, [True])
    np.testing.assert_array_equal(fwd(x), ty.detach().numpy())
    np.testing.assert_array_equal(bwd(g, x), dx.numpy())


@pytest.mark.parametrize("xs", [(7, 5), (1, 5), (2, 3, 5), (16, 400)], ids=str)
def test_linear_matches_torch(xs) -> None:
    torch = _torch()
    rng = _rng(26 + xs[-1])
    fan_out = 120 if xs[-1] == 400 else 4  # (16, 400) -> 120 is LeNet-5's F5
    x = rng.standard_normal(xs)
    w, b = rng.standard_normal((fan_out, xs[-1])), rng.standard_normal(fan_out)
    y = ref.linear(x, w, b)
    g = rng.standard_normal(y.shape)
    ty, grads = _torch_run(torch.nn.functional.linear, [x, w, b], g, [True] * 3)
    _close(y, ty, what="y")
    for name, a, t in zip(("dx", "dw", "db"), ref.linear_backward(g, x, w), grads, strict=True):
        _close(a, t, what=name)


@pytest.mark.parametrize("shape", BN_SHAPES + [(8, 16, 5, 5)], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_batch_norm_matches_torch(shape, training, affine) -> None:
    torch = _torch()
    rng = _rng(27 + sum(shape))
    C = shape[1]
    x = rng.standard_normal(shape) * 1.5 + 0.3
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    w = rng.uniform(0.5, 1.5, C) if affine else None
    b = rng.standard_normal(C) if affine else None
    momentum, eps = 0.3, 1e-3
    y, new_rm, new_rv, save_mean, save_invstd = ref.batch_norm(
        x, rm, rv, w, b, training=training, momentum=momentum, eps=eps
    )
    g = rng.standard_normal(shape)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty, grads = _torch_run(
        lambda x, w, b: torch.nn.functional.batch_norm(
            x, trm, trv, w, b, training=training, momentum=momentum, eps=eps
        ),
        [x, w, b],
        g,
        [True, affine, affine],
    )
    _close(y, ty, what="y")
    _close(new_rm, trm, what="running_mean")  # torch updated trm/trv in place
    _close(new_rv, trv, what="running_var")
    if training:
        _, tmean, tinvstd = torch.native_batch_norm(
            torch.tensor(x), None, None, None, None, True, momentum, eps
        )
        _close(save_mean, tmean, what="save_mean")
        _close(save_invstd, tinvstd, what="save_invstd")
        got = ref.batch_norm_backward(g, x, w, eps=eps)
    else:
        assert save_mean is None and save_invstd is None
        got = ref.batch_norm_eval_backward(g, x, rm, rv, w, eps=eps)
    _close(got[0], grads[0], what="dx")
    if affine:
        _close(got[1], grads[1], what="dweight")
        _close(got[2], grads[2], what="dbias")


def test_batch_norm_repeated_running_updates_match_torch() -> None:
    torch = _torch()
    rng = _rng(28)
    bn = torch.nn.BatchNorm2d(3, momentum=0.1, dtype=torch.float64)
    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(4):
        x = rng.standard_normal((2, 3, 3, 5)) * 3.0 + 1.0
        bn(torch.tensor(x))
        _, rm, rv, _, _ = ref.batch_norm(x, rm, rv, training=True, momentum=0.1)
    _close(rm, bn.running_mean, what="running_mean")
    _close(rv, bn.running_var, what="running_var")


@pytest.mark.parametrize(("shape", "dim"), SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_torch(shape, dim, log) -> None:
    torch = _torch()
    rng = _rng(29 + sum(shape) + dim)
    x = rng.standard_normal(shape) * 4.0
    g = rng.standard_normal(shape)
    tfn = torch.log_softmax if log else torch.softmax
    fwd, bwd = (
        (ref.log_softmax, ref.log_softmax_backward) if log else (ref.softmax, ref.softmax_backward)
    )
    ty, (dx,) = _torch_run(lambda x: tfn(x, dim), [x], g, [True])
    _close(fwd(x, dim), ty, what="y")
    _close(bwd(g, x, dim), dx, what="dx")


@pytest.mark.parametrize(
    ("shape", "eps"), XENT_CASES + [((16, 10), 0.1), ((2, 3, 4), 0.1)], ids=str
)
def test_cross_entropy_matches_torch(shape, eps) -> None:
    torch = _torch()
    rng = _rng(30 + sum(shape))
    z = rng.standard_normal(shape) * 2.0
    t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    zt = torch.tensor(z, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(zt, torch.tensor(t), label_smoothing=eps)
    (loss * 0.7).backward()
    _close(ref.cross_entropy(z, t, eps), loss, what="loss")
    _close(ref.cross_entropy_backward(z, t, eps, grad_output=0.7), zt.grad, what="dlogits")


def test_mse_loss_matches_torch() -> None:
    torch = _torch()
    rng = _rng(31)
    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    loss = torch.nn.functional.mse_loss(ta, tb)
    (loss * 1.3).backward()
    _close(ref.mse_loss(a, b), loss, what="loss")
    da, db = ref.mse_loss_backward(a, b, grad_output=1.3)
    _close(da, ta.grad, what="da")
    _close(db, tb.grad, what="db")


def test_dropout_scaling_matches_torch() -> None:
    torch = _torch()
    x = _rng(32).standard_normal((64, 64)) + 5.0  # never 0, so the mask is readable from y
    p = 0.25
    torch.manual_seed(0)
    ty = torch.nn.functional.dropout(torch.tensor(x), p=p, training=True).numpy()
    mask = (ty != 0).astype(np.float64)
    _close(ref.dropout_apply(x, mask, p), ty, what="y")
