"""Tests of max, average and adaptive average pooling: every compiled variant against the float64
oracle and PyTorch, tie/NaN/-inf conventions, torch's divisor and ceil_mode rules, bad input.

Layout key: x is (N, C, H, W), y and dy are (N, C, P, Q), indices are flat h * W + w per plane.
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

# (x shape, max_pool2d arguments): batch 1, odd sizes, 2x2/s2, 3x3/s2 pad 1, 3x3/s1, (2, 3)/(1, 2),
# dilation, ceil_mode, a stride the fast path does not specialize, and real network layers.
MAX_CASES = [
    ((1, 1, 4, 4), {"kernel_size": 2}),
    ((2, 3, 13, 11), {"kernel_size": 2, "stride": 2}),
    ((2, 3, 13, 11), {"kernel_size": 2, "stride": 2, "ceil_mode": True}),
    ((2, 3, 13, 11), {"kernel_size": 2, "stride": 2, "padding": 1}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 1}),
    ((2, 3, 13, 11), {"kernel_size": (2, 3), "stride": (1, 2)}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2}),
    (
        (2, 3, 13, 11),
        {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (1, 3)},
    ),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((1, 2, 12, 12), {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 3}),
    ((2, 5, 17, 33), {"kernel_size": 2}),
    ((1, 64, 56, 56), {"kernel_size": 3, "stride": 2, "padding": 1}),  # ResNet stem
    ((2, 16, 28, 28), {"kernel_size": 2, "stride": 2}),  # LeNet/VGG block
    ((1, 6, 14, 15), {"kernel_size": 2}),  # 7x7 outputs: two rows a vector, an odd last row
    # ceil_mode keeps a window longer than the padded input when it overhangs by < stride
    (
        (1, 2, 16, 8),
        {"kernel_size": (4, 5), "padding": (1, 0), "dilation": (3, 2), "ceil_mode": True},
    ),
    ((2, 3, 3, 10), {"kernel_size": (4, 5), "ceil_mode": True}),
]

# One window a plane (the fast variants gather a vector of planes' taps): global pooling over 10
# planes (a part vector), a window inside a larger plane, one hanging past the plane (ceil_mode).
ONE_WINDOW_MAX_CASES = [
    ((2, 5, 7, 7), {"kernel_size": 7}),
    ((3, 7, 5, 6), {"kernel_size": (3, 4), "stride": 5}),
    ((2, 3, 3, 4), {"kernel_size": (4, 5), "ceil_mode": True}),
]
# Rows of several vectors of outputs with windows across both borders (the fast variants mask
# the outside taps): stride 1 and 2, ceil_mode, a wide padded window.
WIDE_MAX_CASES = [
    ((2, 3, 9, 40), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((1, 2, 7, 37), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 2, 6, 35), {"kernel_size": (2, 5), "stride": (1, 2), "padding": (1, 2)}),
]
# Column stride 1 or 2 (the fast variants' separable pass: row maxima of -inf padded rows, then
# column maxima): rows of one and of several vectors with a tail, non-square windows, batch 1,
# ceil_mode, a row stride above the window height, planes cut into bands of rows (W = 2000),
# and rows too long for the band buffer (W = 3000).
SEPARABLE_MAX_CASES = [
    ((1, 1, 5, 7), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((2, 3, 17, 37), {"kernel_size": (2, 5), "stride": 1, "padding": (1, 2)}),
    ((1, 4, 28, 28), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((2, 2, 9, 33), {"kernel_size": (5, 3), "stride": 1, "padding": (2, 0), "ceil_mode": True}),
    ((2, 2, 19, 16), {"kernel_size": 4, "stride": 1}),
    ((2, 3, 14, 45), {"kernel_size": (2, 3), "stride": (3, 2), "padding": 1}),
    ((1, 1, 9, 2000), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((1, 1, 9, 2000), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 1, 4, 3000), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((1, 1, 5, 3000), {"kernel_size": 3, "stride": 2, "padding": 1}),
]
# Small planes and short rows (the fast variants pool kLanes planes at once, each plane's taps in
# the lanes of one vector): column strides 3 to 5, dilation, padding and ceil_mode; stride 1 and
# 2 rows shorter than a vector; 2x2 stride 2 with Q = 7; plane counts that leave a last block of
# fewer than 16 or 8 planes; and a plane too large for the padded buffer (the row paths).
LANE_MAX_CASES = [
    ((8, 32, 9, 9), {"kernel_size": 3, "stride": 3, "padding": 1}),
    ((1, 64, 6, 6), {"kernel_size": 5, "stride": 5, "padding": 2}),
    ((3, 7, 11, 9), {"kernel_size": 3, "stride": 4, "padding": 1, "ceil_mode": True}),
    ((2, 9, 13, 12), {"kernel_size": (2, 4), "stride": (5, 3), "padding": (1, 2)}),
    ((1, 19, 10, 11), {"kernel_size": 3, "stride": (1, 3), "padding": 1, "dilation": (2, 3)}),
    ((2, 5, 7, 7), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((3, 6, 15, 17), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 11, 14, 14), {"kernel_size": 2, "stride": 2}),
    ((1, 3, 31, 29), {"kernel_size": (3, 2), "stride": (3, 5), "dilation": (2, 1)}),
    ((1, 2, 70, 66), {"kernel_size": 3, "stride": 3, "padding": 1}),
]
MAX_CASES += ONE_WINDOW_MAX_CASES + WIDE_MAX_CASES + SEPARABLE_MAX_CASES + LANE_MAX_CASES

AVG_CASES = [
    ((1, 1, 4, 4), {"kernel_size": 2}),
    # windows that tile the plane (the fast variants' one-pass backward): uncovered last rows and
    # columns, rows wider than a vector (Q = 35), 3x3 and non-square windows, divisor_override
    ((3, 2, 9, 70), {"kernel_size": 2}),
    ((2, 3, 10, 13), {"kernel_size": 3}),
    ((2, 2, 11, 9), {"kernel_size": (2, 3)}),
    ((2, 3, 8, 34), {"kernel_size": 2, "divisor_override": 3}),
    ((2, 2, 10, 35), {"kernel_size": (3, 2)}),
    ((1, 2, 1, 40), {"kernel_size": (1, 2)}),
    # 2-wide stride-2 windows between padded borders (the forward's deinterleaving path)
    ((2, 3, 9, 70), {"kernel_size": 2, "stride": 2, "padding": 1}),
    ((2, 2, 7, 35), {"kernel_size": (3, 2), "stride": 2, "ceil_mode": True}),
    ((2, 3, 13, 11), {"kernel_size": 2, "stride": 2}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 1}),
    ((2, 3, 13, 11), {"kernel_size": (2, 3), "stride": (1, 2)}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    (
        (2, 3, 13, 11),
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "divisor_override": 5}),
    ((2, 3, 13, 11), {"kernel_size": (4, 2), "stride": 3, "padding": (2, 1), "ceil_mode": True}),
    ((2, 5, 17, 33), {"kernel_size": 2}),
    ((2, 16, 28, 28), {"kernel_size": 2, "stride": 2}),
    # ceil_mode keeps a window longer than the padded input when it overhangs by < stride
    ((3, 1, 3, 10), {"kernel_size": (4, 5), "ceil_mode": True}),
    ((2, 3, 1, 9), {"kernel_size": 4, "stride": 3, "padding": 1, "ceil_mode": True}),
    ((2, 3, 3, 10), {"kernel_size": (4, 5), "ceil_mode": True, "count_include_pad": False}),
    # one window a plane (the forward's gathered planes): global, inside the plane, overridden
    ((2, 5, 7, 7), {"kernel_size": 7}),
    ((3, 7, 5, 6), {"kernel_size": (3, 4)}),
    ((2, 5, 7, 7), {"kernel_size": 7, "divisor_override": 5}),
    # the backward's gather: rows longer than a vector with up to 3 windows a cell, columns no
    # window covers (stride > kernel), share rows computed in bands (P * Q > 8192), and a row too
    # long for its tables (ref)
    ((2, 3, 9, 40), {"kernel_size": 3, "stride": 1, "padding": 1}),
    (
        (1, 2, 9, 37),
        {
            "kernel_size": 5,
            "stride": 2,
            "padding": 2,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    ((2, 2, 11, 35), {"kernel_size": 2, "stride": 3}),
    ((1, 1, 9, 2000), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((1, 1, 3, 4200), {"kernel_size": 3, "stride": 2, "padding": 1}),
    # stride 1 (the forward's zero-padded rows): batch 1, a row of a part vector, non-square
    # windows, the divisor rules, ceil_mode, and rows too long for the band buffer (ref's loop)
    ((1, 1, 5, 7), {"kernel_size": 3, "stride": 1, "padding": 1}),
    ((2, 3, 17, 37), {"kernel_size": (2, 5), "stride": 1, "padding": (1, 2)}),
    (
        (2, 2, 12, 29),
        {"kernel_size": (5, 3), "stride": 1, "padding": (2, 1), "count_include_pad": False},
    ),
    ((2, 2, 12, 29), {"kernel_size": 3, "stride": 1, "padding": 1, "divisor_override": 7}),
    ((2, 2, 9, 33), {"kernel_size": (4, 3), "stride": 1, "padding": 1, "ceil_mode": True}),
    ((1, 1, 4, 3000), {"kernel_size": 3, "stride": 1, "padding": 1}),
    # column stride 2 from zero-padded rows: planes cut into bands, a row stride above the window
    # height
    ((1, 1, 9, 2000), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((2, 3, 14, 45), {"kernel_size": (2, 3), "stride": (3, 2), "padding": 1}),
]
# Small planes and short rows (the fast variants' kLanes planes at once): column strides 3 to 5,
# the divisor rules, ceil_mode windows that hang past the padding or hold no input cell (0), rows
# shorter than a vector at stride 1 and 2, a last block of fewer planes, a plane too large for
# the padded buffer.
LANE_AVG_CASES = [
    ((8, 32, 9, 9), {"kernel_size": 3, "stride": 3, "padding": 1}),
    ((1, 64, 6, 6), {"kernel_size": 5, "stride": 5, "padding": 2}),
    ((3, 7, 11, 9), {"kernel_size": 3, "stride": 4, "padding": 1, "count_include_pad": False}),
    (
        (2, 9, 13, 12),
        {"kernel_size": (2, 4), "stride": (5, 3), "padding": (1, 2), "ceil_mode": True},
    ),
    ((3, 6, 5, 5), {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True}),
    (
        (2, 5, 10, 7),
        {
            "kernel_size": 3,
            "stride": (2, 4),
            "padding": 1,
            "ceil_mode": True,
            "divisor_override": 7,
        },
    ),
    ((2, 5, 7, 7), {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False}),
    ((3, 6, 15, 17), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 70, 66), {"kernel_size": 3, "stride": 3, "padding": 1}),
]
AVG_CASES += LANE_AVG_CASES

ADAPTIVE_CASES = [
    ((2, 3, 13, 11), 1),
    ((2, 3, 13, 11), (1, 1)),
    ((2, 3, 13, 11), (3, 5)),
    ((2, 3, 13, 11), (7, None)),
    ((2, 3, 13, 11), (None, 4)),
    ((1, 2, 5, 5), (7, 7)),  # larger than the input: windows overlap and repeat
    ((2, 4, 7, 7), 7),
    ((2, 8, 40, 41), 1),  # long global-pooling sums
    ((3, 4, 17, 19), 1),  # partial sums: four-vector steps, one vector, a masked tail
    ((2, 5, 56, 57), 2),  # window rows of 28-29 floats: a vector and a tail each
    ((1, 3, 9, 70), (1, 3)),  # window rows of 23-24 floats, windows sharing a column
    ((1, 16, 14, 14), (7, 7)),  # VGG's adaptive pool
    ((2, 3, 10, 10), 3),  # windows that overlap by one input
    ((2, 2, 28, 28), 7),
    ((1, 2, 20, 20), (30, 28)),  # far more outputs than inputs: the backward's gather takes ref
    ((1, 1, 30, 2000), (20, 1000)),  # the backward's share rows in bands
]


def _ids(cases) -> list[str]:
    return [f"{shape}-{args}" for shape, args in cases]


def _torch():
    return pytest.importorskip("torch")


# --- max pooling ---------------------------------------------------------------------------------


def _max_args(kw: dict) -> tuple:
    return (
        kw["kernel_size"],
        kw.get("stride"),
        kw.get("padding", 0),
        kw.get("dilation", 1),
        kw.get("ceil_mode", False),
    )


@pytest.mark.parametrize("shape,kw", MAX_CASES, ids=_ids(MAX_CASES))
def test_max_pool2d_matches_oracle(core, rng, shape, kw):
    x = rng.standard_normal(shape).astype(np.float32)
    y_ref, i_ref = ref.max_pool2d(x, *_max_args(kw))
    y, indices = core.max_pool2d_forward(x, *_max_args(kw))
    # A max selects an input exactly, and the index rule is deterministic.
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))
    np.testing.assert_array_equal(indices, i_ref)
    assert indices.dtype == np.int64
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref = ref.max_pool2d_backward(dy, x, *_max_args(kw))
    dx = core.max_pool2d_backward(dy, x, *_max_args(kw), indices)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(core.max_pool2d_backward(dy, x, *_max_args(kw)), dx)


@pytest.mark.parametrize("shape,kw", MAX_CASES, ids=_ids(MAX_CASES))
def test_max_pool2d_matches_torch(rng, shape, kw):
    torch = _torch()
    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt, it = torch.nn.functional.max_pool2d(xt, **kw, return_indices=True)
    dy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    y, indices = F.max_pool2d(x, **kw, return_indices=True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(indices, it.numpy())
    np.testing.assert_allclose(
        F.max_pool2d_backward(dy, x, **kw, indices=indices), xt.grad.numpy(), rtol=RTOL, atol=ATOL
    )


BITWISE_MAX_CASES = (
    MAX_CASES[:8] + ONE_WINDOW_MAX_CASES + WIDE_MAX_CASES + SEPARABLE_MAX_CASES + LANE_MAX_CASES
)


@pytest.mark.parametrize("shape,kw", BITWISE_MAX_CASES, ids=_ids(BITWISE_MAX_CASES))
def test_max_pool2d_fast_variants_equal_ref_bitwise(rng, shape, kw):
    """The fast paths keep ref's scan order, so they agree bit for bit, indices included."""
    x = rng.integers(-3, 4, shape).astype(np.float32)  # many ties
    base = fastcnn._core._variants["ref"]
    y0, i0 = base.max_pool2d_forward(x, *_max_args(kw))
    dy = rng.standard_normal(y0.shape).astype(np.float32)
    dx0 = base.max_pool2d_backward(dy, x, *_max_args(kw), i0)
    for name, core in fastcnn._core._variants.items():
        y, i = core.max_pool2d_forward(x, *_max_args(kw))
        np.testing.assert_array_equal(y, y0, err_msg=name)
        np.testing.assert_array_equal(i, i0, err_msg=name)
        np.testing.assert_array_equal(core.max_pool2d_backward(dy, x, *_max_args(kw), i), dx0)


@pytest.mark.parametrize("shape,kw", MAX_CASES, ids=_ids(MAX_CASES))
def test_max_pool2d_values_only_equal_full_forward(core, rng, shape, kw):
    """need_indices=False (inference) gives the same y bits, NaN payloads and -inf included."""
    x = rng.integers(-3, 4, shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 7, replace=False)] = -np.inf
    flat[rng.choice(flat.size, flat.size // 9, replace=False)] = np.nan
    flat[rng.choice(flat.size, flat.size // 9, replace=False)] = -np.nan  # another payload
    y, indices = core.max_pool2d_forward(x, *_max_args(kw))
    y_only, none = core.max_pool2d_forward(x, *_max_args(kw), False)
    assert none is None
    np.testing.assert_array_equal(y_only.view(np.uint32), y.view(np.uint32))
    assert (F.max_pool2d(x, **kw).view(np.uint32) == y.view(np.uint32)).all()


@pytest.mark.parametrize("shape,kw", MAX_CASES, ids=_ids(MAX_CASES))
def test_max_pool2d_relu_equals_relu_of_max_pool2d(core, rng, shape, kw):
    """relu=True (what nn.Sequential runs for MaxPool2d -> ReLU) gives relu_forward's bits of the
    maxima, -0.0 and NaN payloads included, with or without indices, and the same indices."""
    x = rng.integers(-3, 4, shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 7, replace=False)] = -0.0
    flat[rng.choice(flat.size, flat.size // 9, replace=False)] = np.nan
    flat[rng.choice(flat.size, flat.size // 9, replace=False)] = -np.nan
    y, indices = core.max_pool2d_forward(x, *_max_args(kw))
    want = core.relu_forward(y).view(np.uint32)
    for need in (True, False):
        got, got_indices = core.max_pool2d_forward(x, *_max_args(kw), need, True)
        np.testing.assert_array_equal(got.view(np.uint32), want)
        if need:
            np.testing.assert_array_equal(got_indices, indices)


def test_max_pool2d_module_in_eval_mode_skips_then_recomputes_indices(rng):
    """Eval mode keeps no indices; a backward after it (alone or fused with the batch norm
    before it) recomputes them and matches training mode's."""
    x = rng.standard_normal((2, 5, 9, 11)).astype(np.float32)
    dy = rng.standard_normal((2, 5, 4, 5)).astype(np.float32)
    pool = fastcnn.nn.MaxPool2d(2)
    want = pool(x), pool.backward(dy)
    pool.eval()
    y = pool(x)
    assert pool._saved[1] is None
    np.testing.assert_array_equal(y, want[0])
    np.testing.assert_array_equal(pool.backward(dy), want[1])
    net = fastcnn.nn.Sequential(fastcnn.nn.BatchNorm2d(5), fastcnn.nn.MaxPool2d(2))
    net[0].running_var[...] = rng.random(5) + 0.5
    net.eval()
    net(x)
    dx = net.backward(dy)
    net[1].train()
    net(x)
    np.testing.assert_array_equal(net.backward(dy), dx)


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 1, "padding": 1},
        {"kernel_size": (2, 3), "stride": (1, 2)},
        {"kernel_size": (3, 4), "stride": 1, "padding": (1, 2)},
    ],
)
def test_max_pool2d_ties_pick_torchs_index(core, rng, kw):
    torch = _torch()
    x = rng.integers(0, 3, (2, 3, 13, 11)).astype(np.float32)
    _, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), **kw, return_indices=True)
    _, indices = core.max_pool2d_forward(x, *_max_args(kw))
    np.testing.assert_array_equal(indices, it.numpy())
    np.testing.assert_array_equal(indices, ref.max_pool2d(x, *_max_args(kw))[1])


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": 3, "stride": 1},
        {"kernel_size": (3, 5), "stride": 1, "padding": (1, 2)},
        {"kernel_size": (13, 11)},
        {"kernel_size": (5, 4), "stride": 9},
    ],
)
def test_max_pool2d_nan_and_inf_follow_torch(core, rng, kw):
    torch = _torch()
    x = rng.standard_normal((2, 3, 13, 11)).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 40, replace=False)] = np.nan
    flat[rng.choice(flat.size, 40, replace=False)] = -np.inf
    x[1, 2] = -np.inf  # whole plane of -inf: every window reports its first in-bounds tap
    x[0, 1, :4, :4] = np.nan  # windows of several NaNs: the last one wins
    yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), **kw, return_indices=True)
    y, indices = core.max_pool2d_forward(x, *_max_args(kw))
    np.testing.assert_array_equal(y, yt.numpy())  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(indices, it.numpy())


def _special_values(rng, shape) -> np.ndarray:
    """Small integers (ties) with +-0.0, -inf, +inf and NaNs of two payloads among them, and one
    plane of -inf only."""
    x = rng.integers(-3, 4, shape).astype(np.float32)
    flat = x.reshape(-1)
    for value, share in ((-0.0, 7), (0.0, 7), (-np.inf, 9), (np.inf, 23), (np.nan, 23)):
        flat[rng.choice(flat.size, max(1, flat.size // share), replace=False)] = value
    flat[rng.choice(flat.size, max(1, flat.size // 29), replace=False)] = -np.nan
    x[0, -1] = -np.inf
    return x


@pytest.mark.parametrize("shape,kw", LANE_MAX_CASES, ids=_ids(LANE_MAX_CASES))
def test_max_pool2d_special_values_equal_ref_bitwise(core, rng, shape, kw):
    """Ties, signed zeros, infinities and NaN payloads: ref's maxima and indices bit for bit, with
    and without indices and ReLU; a window of only -inf reports its first in-bounds tap."""
    x = _special_values(rng, shape)
    base = fastcnn._core._variants["ref"]
    y0, i0 = base.max_pool2d_forward(x, *_max_args(kw))
    y, indices = core.max_pool2d_forward(x, *_max_args(kw))
    np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32))
    np.testing.assert_array_equal(indices, i0)
    y_only, _ = core.max_pool2d_forward(x, *_max_args(kw), False)
    np.testing.assert_array_equal(y_only.view(np.uint32), y0.view(np.uint32))
    relu0 = base.relu_forward(y0).view(np.uint32)
    for need in (True, False):
        got, _ = core.max_pool2d_forward(x, *_max_args(kw), need, True)
        np.testing.assert_array_equal(got.view(np.uint32), relu0)


@pytest.mark.parametrize("shape,kw", LANE_AVG_CASES, ids=_ids(LANE_AVG_CASES))
def test_avg_pool2d_special_values_equal_ref_bitwise(core, rng, shape, kw):
    """Signed zeros (a window of -0.0 only sums to +0.0, as ref's 0 + x), infinities and NaNs
    give ref's bits."""
    x = _special_values(rng, shape)
    x[-1, 0] = -0.0
    want = fastcnn._core._variants["ref"].avg_pool2d_forward(x, *_avg_args(kw))
    got = core.avg_pool2d_forward(x, *_avg_args(kw))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


# Backward cases for indices the forward did not write, which the kernels check as they scatter
# them: 2x2 windows that tile the plane with an uncovered last row and column, narrow planes with
# an odd P, rows longer than a vector, batch 1; windows that overhang, overlap or pad.
BACKWARD_CASES = [
    ((1, 1, 4, 4), {"kernel_size": 2}),
    ((2, 3, 13, 11), {"kernel_size": 2}),
    ((1, 2, 14, 14), {"kernel_size": 2}),
    ((2, 2, 10, 70), {"kernel_size": 2}),
    ((3, 2, 28, 28), {"kernel_size": 2}),
    ((2, 3, 13, 11), {"kernel_size": 2, "ceil_mode": True}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((2, 3, 13, 11), {"kernel_size": (2, 3), "stride": (1, 2)}),
    ((2, 3, 11, 15), {"kernel_size": 2}),
    ((3, 2, 9, 35), {"kernel_size": 2}),
    ((2, 3, 13, 11), {"kernel_size": 3, "stride": 1, "padding": 1}),
]
TILING_CASES = [case for case in BACKWARD_CASES if len(case[1]) == 1]


def _backward_inputs(rng, shape, kw):
    """x, forward's indices, and dy with -0.0 among its values (ref's 0 + dy gives +0.0)."""
    x = rng.standard_normal(shape).astype(np.float32)
    _, indices = fastcnn._core._variants["ref"].max_pool2d_forward(x, *_max_args(kw))
    dy = rng.standard_normal(indices.shape).astype(np.float32)
    dy.reshape(-1)[::5] = -0.0
    return x, indices, dy


def _backward_bits_equal_ref(core, dy, x, kw, indices):
    want = fastcnn._core._variants["ref"].max_pool2d_backward(dy, x, *_max_args(kw), indices)
    got = core.max_pool2d_backward(dy, x, *_max_args(kw), indices)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    return got


@pytest.mark.parametrize("shape,kw", TILING_CASES, ids=_ids(TILING_CASES))
def test_max_pool2d_backward_any_tap_of_each_window(core, rng, shape, kw):
    """Indices at a random tap of their own window (not the argmax) give ref's bits, -0.0
    gradients turned to +0.0 (ref adds dy to a zeroed dx)."""
    x, indices, dy = _backward_inputs(rng, shape, kw)
    W, (P, Q) = shape[3], indices.shape[2:]
    top_left = 2 * np.arange(P)[:, None] * W + 2 * np.arange(Q)[None, :]
    taps = np.array([0, 1, W, W + 1])[rng.integers(0, 4, indices.shape)]
    dx = _backward_bits_equal_ref(core, dy, x, kw, top_left + taps)
    assert not (np.signbit(dx) & (dx == 0)).any()


@pytest.mark.parametrize("shape,kw", BACKWARD_CASES, ids=_ids(BACKWARD_CASES))
def test_max_pool2d_backward_indices_outside_their_windows(core, rng, shape, kw):
    """Any position in the plane is a valid index: one stray index in a plane, or all of them
    random (repeats add up in output order), gives ref's bits."""
    x, indices, dy = _backward_inputs(rng, shape, kw)
    hw = shape[2] * shape[3]
    stray = indices.copy()
    stray[-1, -1, 0, 0] = (stray[-1, -1, 0, 0] + shape[3] + 2) % hw
    stray[0, 0, -1, -1] = 0  # a plane's last window: its earlier ones are written by then
    _backward_bits_equal_ref(core, dy, x, kw, stray)
    _backward_bits_equal_ref(core, dy, x, kw, rng.integers(0, hw, indices.shape))


@pytest.mark.parametrize("shape,kw", BACKWARD_CASES, ids=_ids(BACKWARD_CASES))
def test_max_pool2d_backward_non_finite_gradients(core, rng, shape, kw):
    """NaN (two payloads), +-inf and -0.0 in dy reach dx with ref's bits, sums of a cell's
    several gradients (overlapping windows) included."""
    x, indices, dy = _backward_inputs(rng, shape, kw)
    flat = dy.reshape(-1)
    for value in (np.nan, -np.nan, np.inf, -np.inf):
        flat[rng.choice(flat.size, max(1, flat.size // 11), replace=False)] = value
    _backward_bits_equal_ref(core, dy, x, kw, indices)


@pytest.mark.parametrize("shape,kw", BACKWARD_CASES, ids=_ids(BACKWARD_CASES))
def test_max_pool2d_backward_out_of_plane_index_raises(core, rng, shape, kw):
    """The kernels check the indices as they scatter them; the error names the first bad one."""
    x, indices, dy = _backward_inputs(rng, shape, kw)
    hw = shape[2] * shape[3]
    for bad in (-1, hw, hw + shape[3] + 1, 2**40, -(2**63)):
        broken = indices.copy()
        at = int(rng.integers(0, broken.size))
        broken.reshape(-1)[at] = bad
        with pytest.raises(ValueError, match=rf"indices: .* got {bad} at flat position {at}$"):
            core.max_pool2d_backward(dy, x, *_max_args(kw), broken)
        broken.reshape(-1)[at + 1 :] = -1  # several bad ones: the first is named
        with pytest.raises(ValueError, match=rf"got {bad} at flat position {at}$"):
            core.max_pool2d_backward(dy, x, *_max_args(kw), broken)


def test_max_pool2d_backward_writes_every_element_of_a_reused_block(core, rng):
    """dx comes from the caching pool (large results): a block that held NaNs must come back
    fully overwritten, uncovered last row and column included."""
    shape, kw = (2, 16, 33, 35), {"kernel_size": 2}
    x, indices, dy = _backward_inputs(rng, shape, kw)
    for _ in range(3):
        stale = core.relu_forward(np.full(shape, np.nan, np.float32))
        del stale
        dx = _backward_bits_equal_ref(core, dy, x, kw, indices)
        assert not np.isnan(dx).any()


# --- average pooling -----------------------------------------------------------------------------


def _avg_args(kw: dict) -> tuple:
    return (
        kw["kernel_size"],
        kw.get("stride"),
        kw.get("padding", 0),
        kw.get("ceil_mode", False),
        kw.get("count_include_pad", True),
        kw.get("divisor_override"),
    )


@pytest.mark.parametrize("shape,kw", AVG_CASES, ids=_ids(AVG_CASES))
def test_avg_pool2d_matches_oracle(core, rng, shape, kw):
    x = rng.standard_normal(shape).astype(np.float32)
    y = core.avg_pool2d_forward(x, *_avg_args(kw))
    np.testing.assert_allclose(y, ref.avg_pool2d(x, *_avg_args(kw)), rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(
        core.avg_pool2d_backward(dy, x, *_avg_args(kw)),
        ref.avg_pool2d_backward(dy, x, *_avg_args(kw)),
        rtol=RTOL,
        atol=ATOL,
    )


@pytest.mark.parametrize("shape,kw", AVG_CASES, ids=_ids(AVG_CASES))
def test_avg_pool2d_matches_torch(rng, shape, kw):
    torch = _torch()
    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.avg_pool2d(xt, **kw)
    dy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    y = F.avg_pool2d(x, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        F.avg_pool2d_backward(dy, x, **kw), xt.grad.numpy(), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("shape,kw", AVG_CASES, ids=_ids(AVG_CASES))
def test_avg_pool2d_fast_variants_equal_ref_bitwise(rng, shape, kw):
    """The fast paths sum each window in ref's order, so they agree bit for bit (-0.0 in dy
    included: ref's 0 + share gives +0.0)."""
    x = rng.standard_normal(shape).astype(np.float32)
    base = fastcnn._core._variants["ref"]
    y0 = base.avg_pool2d_forward(x, *_avg_args(kw))
    dy = rng.standard_normal(y0.shape).astype(np.float32)
    dy.reshape(-1)[::5] = -0.0
    dx0 = base.avg_pool2d_backward(dy, x, *_avg_args(kw))
    for name, core in fastcnn._core._variants.items():
        y = core.avg_pool2d_forward(x, *_avg_args(kw))
        np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32), err_msg=name)
        dx = core.avg_pool2d_backward(dy, x, *_avg_args(kw))
        np.testing.assert_array_equal(dx.view(np.uint32), dx0.view(np.uint32), err_msg=name)


# --- adaptive average pooling --------------------------------------------------------------------


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES, ids=_ids(ADAPTIVE_CASES))
def test_adaptive_avg_pool2d_matches_oracle(core, rng, shape, size):
    x = rng.standard_normal(shape).astype(np.float32)
    y = core.adaptive_avg_pool2d_forward(x, size)
    np.testing.assert_allclose(y, ref.adaptive_avg_pool2d(x, size), rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(
        core.adaptive_avg_pool2d_backward(dy, x, size),
        ref.adaptive_avg_pool2d_backward(dy, x, size),
        rtol=RTOL,
        atol=ATOL,
    )


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES, ids=_ids(ADAPTIVE_CASES))
def test_adaptive_avg_pool2d_fast_variants_equal_ref_bitwise(rng, shape, size):
    """The backward's gather adds each cell's shares in ref's order, and so does the forward's
    for windows of at most 64 cells and at most 4096 per plane (others are summed a window row
    at a time, long ones in partial sums): bit for bit."""
    x = rng.standard_normal(shape).astype(np.float32)
    base = fastcnn._core._variants["ref"]
    y0 = base.adaptive_avg_pool2d_forward(x, size)
    dy = rng.standard_normal(y0.shape).astype(np.float32)
    dy.reshape(-1)[::5] = -0.0
    dx0 = base.adaptive_avg_pool2d_backward(dy, x, size)

    def longest(n_in, n_out):
        return max(-(-(i + 1) * n_in // n_out) - i * n_in // n_out for i in range(n_out))

    small = (
        longest(shape[2], y0.shape[2]) * longest(shape[3], y0.shape[3]) <= 64
        and y0.shape[2] * y0.shape[3] <= 4096
    )
    for name, core in fastcnn._core._variants.items():
        if small:
            y = core.adaptive_avg_pool2d_forward(x, size)
            np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32), err_msg=name)
        dx = core.adaptive_avg_pool2d_backward(dy, x, size)
        np.testing.assert_array_equal(dx.view(np.uint32), dx0.view(np.uint32), err_msg=name)


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES, ids=_ids(ADAPTIVE_CASES))
def test_adaptive_avg_pool2d_matches_torch(rng, shape, size):
    torch = _torch()
    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, size)
    dy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    y = F.adaptive_avg_pool2d(x, size)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        F.adaptive_avg_pool2d_backward(dy, x, size), xt.grad.numpy(), rtol=RTOL, atol=ATOL
    )


# --- input handling ------------------------------------------------------------------------------


def test_zero_size_batch_gives_zero_size_results(core):
    x = np.zeros((0, 3, 13, 11), np.float32)
    y, indices = core.max_pool2d_forward(x, 3, 2, 1)
    assert y.shape == indices.shape == (0, 3, 7, 6)
    assert core.max_pool2d_backward(y, x, 3, 2, 1).shape == x.shape
    assert core.max_pool2d_backward(y, x, 3, 2, 1, indices=indices).shape == x.shape
    y = core.avg_pool2d_forward(x, 3, 2, 1)
    assert y.shape == (0, 3, 7, 6)
    assert core.avg_pool2d_backward(y, x, 3, 2, 1).shape == x.shape
    y = core.adaptive_avg_pool2d_forward(x, (4, 5))
    assert y.shape == (0, 3, 4, 5)
    assert core.adaptive_avg_pool2d_backward(y, x, (4, 5)).shape == x.shape


def test_float64_and_noncontiguous_inputs_are_converted(rng):
    x64 = rng.standard_normal((2, 3, 26, 22))
    x = x64[:, :, ::2, ::2]  # non-contiguous float64 view
    x32 = np.ascontiguousarray(x, np.float32)
    np.testing.assert_array_equal(F.max_pool2d(x, 3, 2, 1), F.max_pool2d(x32, 3, 2, 1))
    np.testing.assert_array_equal(F.avg_pool2d(x, 2), F.avg_pool2d(x32, 2))
    np.testing.assert_array_equal(F.adaptive_avg_pool2d(x, 3), F.adaptive_avg_pool2d(x32, 3))
    dy = rng.standard_normal((2, 3, 7, 6))  # float64
    np.testing.assert_array_equal(
        F.max_pool2d_backward(dy, x, 3, 2, 1),
        F.max_pool2d_backward(dy.astype(np.float32), x32, 3, 2, 1),
    )
    _, indices = F.max_pool2d(x32, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(
        F.max_pool2d_backward(dy, x, 3, 2, 1, indices=indices.astype(np.int32)),
        F.max_pool2d_backward(dy, x, 3, 2, 1, indices=indices),
    )
    assert F.avg_pool2d(np.ones((1, 1, 4, 4), np.int32), 2).dtype == np.float32


def test_caller_arrays_unchanged(rng):
    x = rng.standard_normal((2, 3, 13, 11)).astype(np.float32)
    y, indices = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    saved = [a.copy() for a in (x, dy, indices)]
    F.max_pool2d_backward(dy, x, 3, 2, 1, indices=indices)
    F.avg_pool2d_backward(dy, x, 3, 2, 1)
    F.adaptive_avg_pool2d_backward(dy, x, (7, 6))
    for a, b in zip((x, dy, indices), saved):
        np.testing.assert_array_equal(a, b)


def test_python_threads_at_once(rng):
    """The GIL is released around the kernels: concurrent calls must not interfere."""
    xs = [rng.standard_normal((4, 8, 33, 31)).astype(np.float32) for _ in range(4)]
    expected = [
        (F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 2), F.adaptive_avg_pool2d(x, 5)) for x in xs
    ]
    results: list = [None] * len(xs)

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = (
                F.max_pool2d(xs[i], 3, 2, 1),
                F.avg_pool2d(xs[i], 2),
                F.adaptive_avg_pool2d(xs[i], 5),
            )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


# --- bad input -----------------------------------------------------------------------------------

X = np.ones((2, 3, 8, 8), np.float32)


def _forward(kwargs: dict, match: str) -> tuple[dict, str]:
    """A row's keyword arguments and expected message as the forward ops (functional and kernel)
    take and raise them: x is torch's input there; the backward kernels keep x."""
    return {"input" if k == "x" else k: v for k, v in kwargs.items()}, (
        "input" if match == "x" else match
    )


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"x": np.ones((8, 8), np.float32), "kernel_size": 2}, ValueError, "x"),
        ({"x": X, "kernel_size": 9}, ValueError, "kernel_size"),
        ({"x": X, "kernel_size": 0}, ValueError, "kernel_size"),
        ({"x": X, "kernel_size": (2, 2, 2)}, ValueError, "kernel_size"),
        ({"x": X, "kernel_size": 2.5}, TypeError, "kernel_size"),
        ({"x": X, "kernel_size": 2, "stride": 0}, ValueError, "stride"),
        ({"x": X, "kernel_size": 2, "padding": -1}, ValueError, "padding"),
        ({"x": X, "kernel_size": 3, "padding": 2}, ValueError, "padding"),
        ({"x": X, "kernel_size": 2, "padding": (0, 2)}, ValueError, "padding"),
        ({"x": X, "kernel_size": 2, "dilation": 0}, ValueError, "dilation"),
        ({"x": X, "kernel_size": 2**40}, ValueError, "kernel_size"),
        ({"x": "not an array", "kernel_size": 2}, TypeError, "x"),
        ({"x": np.ones((1, 1, 8, 8), complex), "kernel_size": 2}, TypeError, "x"),
        ({"x": np.ones((1, 1, 0, 8), np.float32), "kernel_size": 1}, ValueError, "x"),
        # dilation 3 steps from the padding row over a 2-row input: no window element is real
        (
            {
                "x": np.ones((1, 1, 2, 2), np.float32),
                "kernel_size": (2, 1),
                "stride": 1,
                "padding": (1, 0),
                "dilation": (3, 1),
            },
            ValueError,
            "dilation",
        ),
    ],
)
def test_max_pool2d_bad_input(core, kwargs, exc, match):
    forward_kwargs, forward_match = _forward(kwargs, match)
    with pytest.raises(exc, match=forward_match):
        F.max_pool2d(**forward_kwargs)
    with pytest.raises(exc, match=forward_match):
        core.max_pool2d_forward(**forward_kwargs)


def test_max_pool2d_backward_bad_input(core, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, indices = core.max_pool2d_forward(x, 2)
    dy = np.ones_like(y)
    with pytest.raises(ValueError, match="dy"):
        core.max_pool2d_backward(dy[:, :, :3], x, 2)
    with pytest.raises(ValueError, match="indices"):
        core.max_pool2d_backward(dy, x, 2, indices=indices[:1])
    with pytest.raises(TypeError, match="indices"):
        core.max_pool2d_backward(dy, x, 2, indices=indices.astype(np.float32))
    with pytest.raises(TypeError, match="indices"):
        core.max_pool2d_backward(dy, x, 2, indices="nope")
    for bad in (-1, 64, 2**40):
        broken = indices.copy()
        broken[1, 2, 3, 0] = bad
        with pytest.raises(ValueError, match="indices"):
            F.max_pool2d_backward(dy, x, 2, indices=broken)
    huge = indices.astype(np.uint64)
    huge[0, 0, 0, 0] = 2**64 - 1
    with pytest.raises(ValueError, match="indices"):
        core.max_pool2d_backward(dy, x, 2, indices=huge)
    with pytest.raises(TypeError, match="dy"):
        core.max_pool2d_backward(None, x, 2)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"x": np.ones((8, 8), np.float32), "kernel_size": 2}, ValueError, "x"),
        ({"x": X, "kernel_size": 9}, ValueError, "kernel_size"),
        ({"x": X, "kernel_size": 2, "stride": 0}, ValueError, "stride"),
        ({"x": X, "kernel_size": 2, "padding": -1}, ValueError, "padding"),
        ({"x": X, "kernel_size": 2, "padding": 2}, ValueError, "padding"),
        ({"x": X, "kernel_size": 2, "divisor_override": 0}, ValueError, "divisor_override"),
        ({"x": X, "kernel_size": 2, "divisor_override": 1.5}, TypeError, "divisor_override"),
        ({"x": [[1.0]], "kernel_size": 2}, ValueError, "x"),
    ],
)
def test_avg_pool2d_bad_input(core, kwargs, exc, match):
    forward_kwargs, forward_match = _forward(kwargs, match)
    with pytest.raises(exc, match=forward_match):
        F.avg_pool2d(**forward_kwargs)
    with pytest.raises(exc, match=forward_match):
        core.avg_pool2d_forward(**forward_kwargs)
    if "x" in kwargs and np.ndim(kwargs["x"]) == 4:
        with pytest.raises(exc, match=match):
            core.avg_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), **kwargs)


@pytest.mark.parametrize(
    "x,size,exc,match",
    [
        (np.ones((8, 8), np.float32), 2, ValueError, "input"),
        (X, 0, ValueError, "output_size"),
        (X, (2, -1), ValueError, "output_size"),
        (X, (2, 2, 2), ValueError, "output_size"),
        (X, 2.0, TypeError, "output_size"),
        (X, "2", TypeError, "output_size"),
        (None, 2, TypeError, "input"),
    ],
)
def test_adaptive_avg_pool2d_bad_input(core, x, size, exc, match):
    with pytest.raises(exc, match=match):
        F.adaptive_avg_pool2d(x, size)
    with pytest.raises(exc, match=match):
        core.adaptive_avg_pool2d_forward(x, size)


def test_pool_backward_checks_dy_shape(core):
    dy = np.ones((2, 3, 5, 4), np.float32)
    with pytest.raises(ValueError, match="dy"):
        core.avg_pool2d_backward(dy, X, 2)
    with pytest.raises(ValueError, match="dy"):
        core.adaptive_avg_pool2d_backward(dy, X, 4)
