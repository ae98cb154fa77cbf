"""conv2d: every compiled CPU variant against the float64 oracle, fastcnn.functional against torch,
argument checking, output_mask, dtype/layout conversion, zero-size batches and thread safety.

Layout key: x (N, C, H, W), w (K, C/groups, R, S), b (K,), y and dy (N, K, P, Q).
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

# (x shape, w shape, conv2d keyword arguments)
CASES = [
    ((1, 3, 13, 11), (5, 3, 3, 3), {"padding": 1}),
    ((2, 5, 17, 19), (7, 5, 3, 3), {"stride": 2}),
    ((1, 7, 13, 11), (33, 7, 3, 3), {"dilation": 2, "padding": 2}),
    ((2, 33, 9, 9), (5, 33, 3, 3), {"padding": 2}),
    ((1, 3, 8, 7), (4, 3, 2, 2), {"padding": "same"}),
    ((1, 2, 9, 10), (3, 2, 4, 4), {"padding": "same"}),
    ((2, 3, 7, 7), (5, 3, 3, 3), {"padding": "same", "dilation": 2}),
    ((2, 3, 10, 9), (4, 3, 3, 2), {"padding": "valid"}),
    ((2, 6, 9, 9), (8, 3, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 5, 11, 9), (5, 1, 3, 3), {"groups": 5, "padding": 1}),
    ((1, 4, 10, 10), (8, 1, 3, 3), {"groups": 4, "stride": 2, "padding": 1}),
    ((3, 1, 12, 12), (4, 1, 3, 3), {"padding": 1}),
    ((2, 33, 7, 5), (17, 33, 1, 1), {}),
    ((2, 6, 9, 9), (5, 6, 1, 1), {"stride": 2}),
    ((1, 3, 23, 23), (8, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((2, 4, 11, 13), (6, 4, 3, 2), {"stride": (2, 1), "padding": (0, 2), "dilation": (1, 2)}),
    ((1, 2, 4, 5), (3, 2, 3, 3), {"padding": 3}),
    ((16, 6, 14, 14), (16, 6, 5, 5), {}),
    # a first layer: C*R*S = 27 is one GEMM panel, so threads also split the batch sum
    ((4, 3, 20, 20), (16, 3, 3, 3), {"padding": 1}),
    # depthwise (one input channel per group; direct kernels): odd sizes, channel multipliers,
    # widths below and above the vector widths (8, 16), strides, dilation, 5x5, 'same' with an
    # even kernel (asymmetric padding), padding wider than the filter span
    ((2, 6, 13, 17), (6, 1, 3, 3), {"groups": 6, "padding": 1}),
    ((3, 4, 57, 31), (8, 1, 3, 3), {"groups": 4, "padding": 1}),
    ((1, 5, 15, 33), (5, 1, 5, 5), {"groups": 5, "padding": 2}),
    ((3, 3, 16, 16), (3, 1, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    ((1, 4, 17, 17), (8, 1, 3, 3), {"groups": 4, "dilation": 2, "padding": 2}),
    ((1, 3, 19, 33), (6, 1, 3, 3), {"groups": 3, "stride": 2, "dilation": 2, "padding": 2}),
    ((2, 2, 12, 17), (2, 1, 3, 3), {"groups": 2, "stride": (1, 2), "padding": 1}),
    ((1, 2, 13, 15), (6, 1, 5, 3), {"groups": 2, "stride": (2, 1), "padding": (2, 0)}),
    ((2, 3, 11, 16), (3, 1, 4, 4), {"groups": 3, "padding": "same"}),
    ((3, 2, 9, 3), (2, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 2, 6, 7), (2, 1, 3, 3), {"groups": 2, "padding": 3}),
    ((2, 3, 10, 9), (3, 1, 3, 2), {"groups": 3}),
    ((1, 4, 5, 17), (12, 1, 5, 5), {"groups": 4, "padding": 2}),
    ((5, 2, 7, 15), (2, 1, 3, 3), {"groups": 2, "padding": 1, "dilation": (1, 2)}),
    # 3x3 with rows as wide as the input's (AVX-512: flat planes, vectors that run across row
    # ends): widths of one vector, one lane more and odd; a single row; no row padding; a
    # channel multiplier of 2
    ((2, 3, 5, 16), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
    ((3, 2, 9, 17), (4, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 2, 1, 23), (2, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 3, 11, 29), (3, 1, 3, 3), {"groups": 3, "padding": (0, 1)}),
    # 3x3 at unit column stride and dilation (the unrolled row-reuse block): a row of two
    # strips with a 6-lane tail, no padding with a channel multiplier of 2
    ((1, 3, 9, 70), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
    ((2, 2, 8, 20), (4, 1, 3, 3), {"groups": 2}),
    # few input channels, ungrouped (direct weight gradient): C = 1, 2, 3, R = S = 3, 5, 7
    ((3, 1, 28, 28), (32, 1, 3, 3), {"padding": 1}),
    ((5, 1, 13, 3), (3, 1, 3, 3), {"padding": 1}),
    ((1, 1, 9, 16), (2, 1, 7, 7), {"padding": 3}),
    ((1, 2, 15, 17), (5, 2, 5, 5), {"padding": 2}),
    ((2, 2, 11, 16), (6, 2, 5, 5), {"stride": 2, "padding": 2}),
    ((1, 3, 16, 15), (9, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 3, 23, 33), (7, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((1, 3, 20, 19), (6, 3, 7, 7), {"padding": 3}),
    ((2, 3, 17, 15), (4, 3, 3, 3), {"dilation": 2, "padding": 2}),
    ((1, 2, 10, 9), (3, 2, 4, 4), {"padding": "same"}),
    # 128 filters x 147 taps: the weight-gradient accumulators are split into filter parts
    ((1, 3, 20, 18), (130, 3, 7, 7), {"stride": 2, "padding": 3}),
    # weight gradient with the filters in the vector lanes (>= 25 taps, whole filter vectors):
    # odd sizes and a row shorter than a vector, stride 3 with pieces of the row sum that cross
    # images, one channel of 5x5 with three filter vectors, rows longer than a dy panel and fewer
    # rows than pieces with a partial register block of filters, dilation with a column stride,
    # padding wider than the filter
    ((1, 3, 23, 29), (32, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((3, 3, 31, 27), (64, 3, 5, 5), {"stride": 3, "padding": 2}),
    ((2, 1, 17, 19), (48, 1, 5, 5), {"padding": 2}),
    ((1, 2, 9, 300), (96, 2, 5, 5), {"stride": 2, "padding": (1, 2)}),
    ((2, 3, 13, 14), (32, 3, 3, 3), {"dilation": 2, "padding": 1, "stride": (1, 2)}),
    ((1, 4, 6, 7), (32, 4, 3, 3), {"padding": 3}),
    # (AVX-512) a Winograd layer with odd output sides, and a lone filter vector of 27 taps
    ((2, 16, 7, 9), (32, 16, 3, 3), {"padding": 1}),
    ((3, 3, 13, 11), (16, 3, 3, 3), {"padding": 1}),
    # the direct forward's register blocks (AVX-512: 8 filters x 3 vectors, fewer filters x 4):
    # filter tails of 7 and 1, stride 3 with batch 3, dilation, a channel multiplier of 8 at
    # stride 2, and the 7x7 first layer on odd sizes whose rows end inside a block
    ((3, 3, 29, 37), (15, 3, 5, 5), {"stride": 3, "padding": 2}),
    ((1, 2, 19, 53), (17, 2, 3, 3), {"dilation": 2, "padding": 1, "stride": (2, 1)}),
    ((2, 2, 21, 41), (16, 1, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    ((3, 3, 45, 71), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
    # column stride 2 with output rows longer than two AVX-512 vectors (col2im's vector adds)
    ((1, 3, 9, 75), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 20, 7, 68), (6, 20, 3, 3), {"stride": (1, 2)}),
    # deep 1x1 weight gradients (batch sums of >= 4096 positions): four fixed depth slices of odd
    # length that cross images, partial row tiles and a partial panel; grouped
    ((3, 37, 39, 39), (45, 37, 1, 1), {}),
    ((2, 8, 48, 48), (6, 4, 1, 1), {"groups": 2}),
    # the input gradient packs w^T, and the GEMM forward w, once for all images (every case above),
    # unless it is larger than 1 MB, as here; a channel range that starts inside an A panel packs
    # its own (the first case: batch 1, 3 channels of 9 taps, in channel ranges [0, 2), [2, 3))
    ((1, 520, 3, 4), (520, 520, 1, 1), {}),
    # the GEMM forward packs w only for outputs of 1024 or more columns (N*P*Q): im2col with a
    # partial filter tile, padded rows, grouped (the 1x1 cases above: 1x1)
    ((2, 20, 45, 47), (13, 20, 3, 3), {"stride": 2, "padding": 1}),
    ((3, 9, 23, 19), (11, 9, 5, 5), {"padding": 2}),
    ((4, 12, 33, 35), (10, 6, 3, 3), {"groups": 2, "stride": 2}),
    # direct kernels on shifted planes (ungrouped, stride 1, short output rows, 16 or more
    # filters; vectors run along the flat output plane across row ends): LeNet's second layer
    # (8-wide rows), batch 1 with a rectangular filter and a filter tail, row dilation with 6-wide
    # rows, column dilation, 180 taps with 12-wide rows
    ((3, 6, 12, 12), (16, 6, 5, 5), {}),
    ((1, 3, 9, 11), (17, 3, 3, 2), {"padding": (1, 0)}),
    ((2, 4, 13, 8), (19, 4, 3, 5), {"dilation": (2, 1), "padding": (2, 1)}),
    ((1, 3, 11, 12), (18, 3, 3, 3), {"dilation": (1, 2), "padding": (1, 2)}),
    ((2, 20, 13, 12), (22, 20, 3, 3), {"padding": 1}),
    # images in the vector lanes (batches of whole vectors, 8 on AVX2, 16 on AVX-512; forward,
    # and the weight gradient of direct and GEMM layers): a rectangular filter with a filter tail,
    # thin Winograd layers, row dilation, a GEMM layer (1000 taps), 7x7 images (AVX-512; forward),
    # padding wider than the filter, two image groups
    ((16, 6, 11, 11), (5, 6, 3, 2), {"padding": (1, 0)}),
    ((16, 8, 7, 9), (8, 8, 3, 3), {"padding": 1}),
    ((16, 3, 12, 10), (9, 3, 3, 3), {"dilation": (2, 1), "padding": (1, 2)}),
    ((16, 40, 6, 5), (12, 40, 5, 5), {"padding": 2}),
    ((16, 24, 7, 7), (48, 24, 3, 3), {"padding": 1}),
    ((16, 2, 5, 5), (3, 2, 3, 3), {"padding": 3}),
    ((32, 5, 6, 6), (7, 5, 3, 3), {"padding": 1}),
]
VGG = ((2, 64, 28, 28), (64, 64, 3, 3), {"padding": 1})


def _case_params(cases):
    """pytest params of (x shape, w shape, kwargs, ...) cases, each named by its first three,
    with torch's warn-once note about 'same' with even kernels filtered."""
    out = []
    for case in cases:
        i = f"{case[0]}-{case[1]}-{case[2]}"
        even = case[1][2] % 2 == 0 or case[1][3] % 2 == 0
        marks = []
        if case[2].get("padding") == "same" and even:
            marks = [pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")]
        out.append(pytest.param(*case, id=i, marks=marks))
    return out


PARAMS = _case_params(CASES)


def _core_args(ws, kw):
    """The normalized (stride, padding, dilation, groups) that _core takes."""
    st = fastcnn._args.positive_pair(kw.get("stride", 1), "stride")
    dil = fastcnn._args.positive_pair(kw.get("dilation", 1), "dilation")
    pad = F._conv2d_padding(kw.get("padding", 0), np.empty(ws), st, dil)
    return st, pad, dil, kw.get("groups", 1)


def _inputs(rng, xs, ws):
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    return x, w, b


def _close(got, want, length):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * max(length, 1) ** 0.5)


def _oracle_case(rng, xs, ws, kw):
    """Fresh x, w, b, the core's positional arguments, a random dy, and the oracle's y, dx, dw
    and db."""
    x, w, b = _inputs(rng, xs, ws)
    want_y = ref.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    return x, w, b, _core_args(ws, kw), dy, (want_y, *ref.conv2d_backward(dy, x, w, **kw))


def _check_variant(core, rng, xs, ws, kw):
    x, w, b, args, dy, (want_y, want_dx, want_dw, want_db) = _oracle_case(rng, xs, ws, kw)
    N, K, P, Q = want_y.shape
    crs = ws[1] * ws[2] * ws[3]
    _close(core.conv2d_forward(x, w, b, *args), want_y, crs)
    _close(core.conv2d_forward(x, w, None, *args), want_y - b.reshape(1, -1, 1, 1), crs)
    _close(core.conv2d_backward_input(dy, w, x.shape, *args), want_dx, K // args[3] * ws[2] * ws[3])
    dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args)
    _close(dw, want_dw, N * P * Q)
    _close(db, want_db, N * P * Q)
    # Without the bias gradient some layers take another kernel (see lanes_wgrad).
    _close(core.conv2d_backward_weight(dy, x, w.shape, *args, True, False)[0], want_dw, N * P * Q)


@pytest.mark.parametrize(("xs", "ws", "kw"), PARAMS)
def test_variants_match_oracle(core, rng, xs, ws, kw) -> None:
    _check_variant(core, rng, xs, ws, kw)


def test_vgg_layer_matches_oracle(core, rng) -> None:
    _check_variant(core, rng, *VGG)


# 3x3 stride-1 layers with at least 8 channels and filters run on the Winograd F(2x2, 3x3)
# kernels in the fast variants. Odd output sizes leave half-empty tiles; paddings 0 and 2 move
# the patches against the image edges (and the input gradient's patches with them); small images
# put several images in one block of tiles and large batches many blocks; "thin" images have a
# single tile row or column.
WINOGRAD_CASES = [
    ((2, 8, 9, 11), (8, 8, 3, 3), {"padding": 1}),
    ((3, 9, 7, 7), (17, 9, 3, 3), {"padding": 1}),
    ((1, 33, 13, 5), (9, 33, 3, 3), {}),
    ((2, 12, 6, 10), (20, 12, 3, 3), {"padding": 2}),
    ((1, 16, 1, 19), (8, 16, 3, 3), {"padding": 1}),
    ((2, 10, 23, 2), (11, 10, 3, 3), {"padding": (2, 1)}),
    ((1, 8, 3, 3), (8, 8, 3, 3), {}),
    ((37, 16, 5, 6), (24, 16, 3, 3), {"padding": 1}),
    ((5, 32, 14, 14), (64, 32, 3, 3), {"padding": 1}),
    ((2, 65, 11, 29), (40, 65, 3, 3), {"padding": "same"}),
    ((1, 20, 40, 37), (12, 20, 3, 3), {"padding": (0, 2)}),
    # filters past two whole B panels of the weight gradient's point GEMMs, and a partial one
    ((3, 9, 12, 9), (70, 9, 3, 3), {"padding": 1}),
    # input gradients of at most 16 channels with 8 or more filters to each take the GEMM and
    # col2im instead (winograd_input_gradient_applies): at the boundary and one filter short of it
    ((3, 9, 7, 7), (72, 9, 3, 3), {"padding": 1}),
    ((2, 16, 9, 11), (127, 16, 3, 3), {"padding": 1}),
    ((2, 16, 9, 11), (128, 16, 3, 3), {"padding": 1}),
]


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    _case_params(WINOGRAD_CASES),
)
def test_winograd_shapes_match_oracle(core, rng, xs, ws, kw) -> None:
    _check_variant(core, rng, xs, ws, kw)


def test_winograd_asymmetric_padding_matches_oracle(core, rng) -> None:
    """(top, left, bottom, right) padding: the bottom/right edges follow from the output size."""
    x, w, b = _inputs(rng, (2, 12, 10, 9), (10, 12, 3, 3))
    pads = (0, 2, 1, 0)
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    want_y = ref.conv2d(padded, w, b)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    want_dxp, want_dw, want_db = ref.conv2d_backward(dy, padded, w)
    want_dx = want_dxp[:, :, pads[0] : pads[0] + 10, pads[1] : pads[1] + 9]
    args = ((1, 1), pads, (1, 1), 1)
    _close(core.conv2d_forward(x, w, b, *args), want_y, 12 * 9)
    _close(core.conv2d_backward_input(dy, w, x.shape, *args), want_dx, 10 * 9)
    dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args)
    _close(dw, want_dw, dy.size // 10)
    _close(db, want_db, dy.size // 10)


# Winograd's transforms add and subtract across a patch: an Inf made Inf - Inf = NaN there, and
# values near the float32 maximum overflowed where the direct sum does not. Such calls are redone
# on the GEMM path. Cases: padded and unpadded, a ragged last block, several blocks, odd sizes.
NONFINITE_CASES = [
    ((2, 8, 9, 11), (8, 8, 3, 3), {"padding": 1}),
    ((1, 33, 13, 5), (9, 33, 3, 3), {}),
    ((37, 16, 5, 6), (24, 16, 3, 3), {"padding": 1}),
    ((2, 65, 11, 29), (40, 65, 3, 3), {"padding": "same"}),
    ((16, 8, 7, 9), (8, 8, 3, 3), {"padding": 1}),  # forward: images in the lanes
]
NONFINITE_PARAMS = _case_params(NONFINITE_CASES)


PASSES = ("forward", "input gradient", "weight gradient")


def _passes(core, x, w, dy, args) -> dict:
    """y, dx and dw of one variant, by pass name."""
    y = core.conv2d_forward(x, w, None, *args)
    dx = core.conv2d_backward_input(dy, w, x.shape, *args)
    return dict(zip(PASSES, (y, dx, core.conv2d_backward_weight(dy, x, w.shape, *args)[0])))


def _same_nonfinite(got, want, what) -> None:
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want), err_msg=f"{what}: {test.__name__}")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's Inf - Inf
@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize(("xs", "ws", "kw"), NONFINITE_PARAMS)
def test_winograd_inf_reaches_what_the_direct_sum_reaches(core, rng, xs, ws, kw, where) -> None:
    """+Inf and -Inf in one operand give exactly the oracle's NaN, +Inf and -Inf, and the ref
    variant's except where ref skips a padded tap that the zero-padded sums add as 0 * Inf
    (w in forward, dy in the weight gradient; the GEMM path adds it too)."""
    x, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(x, w, **kw).shape).astype(np.float32)
    a = {"x": x, "w": w, "dy": dy}[where]
    a.flat[rng.choice(a.size, 4, replace=False)] = [np.inf, -np.inf, np.inf, -np.inf]
    want_dx, want_dw, _ = ref.conv2d_backward(dy, x, w, **kw)
    want = dict(zip(PASSES, (ref.conv2d(x, w, **kw), want_dx, want_dw)))
    rv = fastcnn._core._variants["ref"]
    got, by_ref = _passes(core, x, w, dy, args), _passes(rv, x, w, dy, args)
    cache = fastcnn._core.WeightCache()  # the forward's filter points packed ahead of the call
    for _ in range(2):
        cached = core.conv2d_forward(x, w, None, *args, weight_cache=cache)
        np.testing.assert_array_equal(cached, got["forward"])
    unread = {"x": "input gradient", "w": "weight gradient", "dy": "forward"}[where]
    padded = args[1] != (0, 0, 0, 0)
    for op, y in got.items():
        assert np.isfinite(y).all() == (op == unread), op
        if core is not rv:
            _same_nonfinite(y, want[op], op)
        if not padded or (where, op) not in {("w", "forward"), ("dy", "weight gradient")}:
            _same_nonfinite(y, by_ref[op], op)


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize(("xs", "ws", "kw"), NONFINITE_PARAMS)
def test_winograd_near_float_max_stays_finite(core, rng, xs, ws, kw, where) -> None:
    """Entries of +-3e38 in one operand (the others ~1e-3) keep every direct sum finite, where
    the transforms' sums of two of them overflowed."""
    x, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(x, w, **kw).shape).astype(np.float32)
    x, w, dy = (a * np.float32(1e-3) for a in (x, w, dy))
    big = {"x": x, "w": w, "dy": dy}[where]
    big[...] = np.where(big < 0, np.float32(-3e38), np.float32(3e38))
    scale = 3e38 * 1e-3
    N, K, P, Q = dy.shape
    want_dx, want_dw, _ = ref.conv2d_backward(dy, x, w, **kw)
    wants = (ref.conv2d(x, w, **kw), want_dx, want_dw)
    for (op, got), want, length in zip(
        _passes(core, x, w, dy, args).items(), wants, (ws[1] * 9, K * 9, N * P * Q)
    ):
        assert np.isfinite(got).all(), op
        np.testing.assert_allclose(got / scale, want / scale, rtol=RTOL, atol=ATOL * length**0.5)


# The forward of 7-wide stride-2 first layers as Winograd F(4,4) and F(4,3) along the output rows
# (AVX-512 and AVX2: ungrouped, C*R*7 <= 160, output rows a multiple of 4 wide, filters in whole
# register blocks of 8 (AVX-512) or 4 (AVX2); cpu/fast/row_winograd.inc): 4-wide rows (one tile),
# odd and even input sizes, padding 0 to 3 and asymmetric, filter heights 1, 2, 3 and 7, one to
# three channels, batches, rows in several bands (28 tiles a row), 12 filters (whole AVX2 blocks,
# not AVX-512's), and neighbours it does not take (grouped, rows of 15, stride 1).
ROW_WINOGRAD_CASES = [
    ((1, 3, 64, 63), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((2, 3, 37, 37), (16, 3, 7, 7), {"stride": 2}),
    ((3, 1, 13, 14), (8, 1, 7, 7), {"stride": 2, "padding": (2, 0)}),
    ((1, 2, 40, 19), (24, 2, 3, 7), {"stride": 2, "padding": 1}),
    ((2, 3, 9, 32), (16, 3, 1, 7), {"stride": 2, "padding": (0, 3)}),
    ((1, 3, 11, 22), (8, 3, 2, 7), {"stride": 2, "padding": (1, 0)}),
    ((1, 3, 80, 224), (16, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((2, 3, 23, 33), (12, 3, 7, 7), {"stride": 2, "padding": 2}),
    ((1, 3, 23, 33), (10, 3, 7, 7), {"stride": 2, "padding": 1}),
    ((1, 4, 37, 37), (8, 2, 7, 7), {"stride": 2, "groups": 2}),
    ((1, 3, 30, 31), (8, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((1, 3, 20, 22), (8, 3, 7, 7), {"padding": 3}),
]
ROW_WINOGRAD_PARAMS = _case_params(ROW_WINOGRAD_CASES)


@pytest.mark.parametrize(("xs", "ws", "kw"), ROW_WINOGRAD_PARAMS)
def test_row_winograd_forward_matches_oracle(core, rng, xs, ws, kw) -> None:
    x, w, b = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    want = ref.conv2d(x, w, b, **kw)
    crs = ws[1] * ws[2] * ws[3]
    _close(core.conv2d_forward(x, w, b, *args), want, crs)
    _close(core.conv2d_forward(x, w, None, *args), want - b.reshape(1, -1, 1, 1), crs)


@pytest.mark.parametrize(
    ("xs", "pad"), [((2, 3, 29, 32), (3, 2, 0, 3)), ((1, 2, 16, 19), (0, 3, 2, 0))]
)
def test_row_winograd_asymmetric_padding_matches_oracle(core, rng, xs, pad) -> None:
    """(top, left, bottom, right) padding through _core: 16 and 8 outputs a row."""
    top, left, bottom, right = pad
    ws = (8, xs[1], 7, 7)
    x, w, b = _inputs(rng, xs, ws)
    want = ref.conv2d(np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))), w, b, stride=2)
    assert want.shape[3] % 4 == 0
    _close(core.conv2d_forward(x, w, b, (2, 2), pad, (1, 1), 1), want, xs[1] * 49)


def test_row_winograd_error_within_a_few_eps_of_each_sum(core, rng) -> None:
    """Each output stays within 32 float32 epsilons of its own sum of |terms| (the transforms
    spread a tile's rounding over its 4 outputs; 3-4 eps at worst on random draws)."""
    x, w, b = _inputs(rng, (2, 3, 45, 63), (16, 3, 7, 7))
    got = core.conv2d_forward(x, w, None, (2, 2), (3, 3, 3, 3), (1, 1), 1)
    want = ref.conv2d(x, w, stride=2, padding=3)
    scale = ref.conv2d(np.abs(x), np.abs(w), stride=2, padding=3)
    eps = np.finfo(np.float32).eps
    assert np.all(np.abs(got - want) <= 32 * eps * scale), np.max(np.abs(got - want) / scale) / eps


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's Inf - Inf
@pytest.mark.parametrize("kind", ["inf", "big"])
def test_row_winograd_redone_where_an_output_is_not_finite(core, rng, kind) -> None:
    """An Inf in x (the transforms would make NaN of Inf - Inf beside it) gives the oracle's NaN
    and +-Inf, and entries of +-3e38 (the others ~1e-3), whose transforms overflow, finite
    outputs: such calls are redone on the direct kernel."""
    x, w, b = _inputs(rng, (1, 3, 29, 31), (16, 3, 7, 7))  # 15 x 16 outputs
    if kind == "inf":
        x.flat[rng.choice(x.size, 4, replace=False)] = [np.inf, -np.inf, np.inf, -np.inf]
    else:
        x, w, b = (a * np.float32(1e-3) for a in (x, w, b))
        x[0, 1, 10:14, 7:20] = np.where(x[0, 1, 10:14, 7:20] < 0, -3e38, 3e38).astype(np.float32)
    got = core.conv2d_forward(x, w, b, (2, 2), (3, 3, 3, 3), (1, 1), 1)
    want = ref.conv2d(x, w, b, stride=2, padding=3)
    _same_nonfinite(got, want, "forward")
    if kind == "big":
        assert np.isfinite(got).all()
        _close(got / 3e35, want / 3e35, 147)


def test_row_winograd_same_bits_on_any_thread_count(rng) -> None:
    """Every output is one task's fixed-order sums: 1, 2 and 3 threads and a repeated call give
    the same bits."""
    x, w, b = _inputs(rng, (2, 3, 64, 96), (32, 3, 7, 7))
    before = fastcnn.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3, 2):
            fastcnn.set_num_threads(n)
            results.append(F.conv2d(x, w, b, stride=2, padding=3))
    finally:
        fastcnn.set_num_threads(before)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize(("xs", "ws", "kw"), PARAMS)
def test_functional_matches_torch(rng, xs, ws, kw) -> None:
    torch = pytest.importorskip("torch")
    x, w, b = _inputs(rng, xs, ws)
    tx, tw, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    y = F.conv2d(x, w, b, **kw)
    dx, dw, db = F.conv2d_backward(dy, x, w, **kw)
    N, K, P, Q = y.shape
    _close(y, ty.detach().numpy(), ws[1] * ws[2] * ws[3])
    _close(dx, tx.grad.numpy(), K * ws[2] * ws[3])
    _close(dw, tw.grad.numpy(), N * P * Q)
    _close(db, tb.grad.numpy(), N * P * Q)


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((3, 16, 15, 15), (24, 16, 3, 3), {"padding": 1}),
        ((4, 3, 20, 20), (16, 3, 3, 3), {"padding": 1}),
        ((3, 8, 40, 40), (16, 1, 3, 3), {"groups": 8, "padding": 1}),
        ((4, 8, 101, 91), (8, 1, 3, 3), {"groups": 8, "padding": 1, "stride": 2}),
        # two groups, one filter block each: threads split the batch sum
        ((5, 2, 96, 96), (2, 1, 3, 3), {"groups": 2, "padding": 1}),
        ((12, 1, 28, 28), (8, 1, 3, 3), {"padding": 1}),
        ((13, 2, 24, 24), (4, 2, 3, 3), {"padding": 1}),
        ((2, 3, 45, 45), (16, 3, 7, 7), {"stride": 2, "padding": 3}),
        # fewer planes than tasks: rows are split
        ((1, 3, 180, 180), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
        ((1, 3, 360, 360), (3, 1, 3, 3), {"groups": 3, "padding": 1, "stride": 2}),
        ((1, 3, 224, 224), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
        ((3, 3, 31, 27), (64, 3, 5, 5), {"stride": 3, "padding": 2}),
        # shifted planes: filter parts, and one filter block whose batch sum threads split
        ((3, 6, 12, 12), (16, 6, 5, 5), {}),
        ((5, 2, 9, 10), (3, 2, 3, 3), {"padding": 1}),
        # images in the lanes: filter parts of one image group, and two groups
        ((16, 24, 7, 7), (48, 24, 3, 3), {"padding": 1}),
        ((32, 5, 6, 6), (7, 5, 3, 3), {"padding": 1}),
    ],
)
def test_thread_count_does_not_change_results(rng, xs, ws, kw) -> None:
    """Winograd, the direct kernels (depthwise, few-channel layers) and the GEMM path: 1 vs 2
    threads within rounding (threads may split a weight gradient's batch sum), and two runs at
    2 threads bit-identical."""
    x, w, b = _inputs(rng, xs, ws)
    y = F.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    before = fastcnn.get_num_threads()

    def run():
        return F.conv2d(x, w, b, **kw), *F.conv2d_backward(dy, x, w, **kw)

    try:
        fastcnn.set_num_threads(1)
        serial = run()
        fastcnn.set_num_threads(2)
        parallel, again = run(), run()
    finally:
        fastcnn.set_num_threads(before)
    N, K, P, Q = y.shape
    for s, p, a in zip(serial, parallel, again):
        _close(p, s, N * P * Q)
        np.testing.assert_array_equal(p, a)


@pytest.mark.parametrize(("channels", "filters"), [(37, 45), (75, 90)])
def test_deep_pointwise_weight_gradient_is_the_same_at_any_thread_count(
    rng, channels, filters
) -> None:
    # The depth slices of a deep 1x1 weight gradient depend on the shape only: each element is
    # summed in the same order at any thread count, so the results are bitwise equal. 90 x 75
    # filter weights: the slices are added in two ranges of elements, the second a partial one.
    # db is summed by slice too, in the GEMM's tasks (on 3 threads, two filter ranges a slice).
    x, w, _ = _inputs(rng, (3, channels, 39, 39), (filters, channels, 1, 1))
    dy = rng.standard_normal((3, filters, 39, 39)).astype(np.float32)
    before = fastcnn.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            fastcnn.set_num_threads(n)
            outs.append(F.conv2d_backward(dy, x, w)[1:])
    finally:
        fastcnn.set_num_threads(before)
    for dw, db in outs[1:]:
        np.testing.assert_array_equal(dw, outs[0][0])
        np.testing.assert_array_equal(db, outs[0][1])


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((1, 3, 64, 64), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
        ((3, 3, 31, 27), (64, 3, 5, 5), {"stride": 3, "padding": 2}),
        ((1, 2, 9, 300), (96, 2, 5, 5), {"stride": 2, "padding": (1, 2)}),
    ],
)
def test_lanes_weight_gradient_repeats_at_each_thread_count(rng, xs, ws, kw) -> None:
    # The weight gradient with the filters in the vector lanes cuts its row sum into a fixed number
    # of pieces per thread, added in order: bitwise equal run to run at 1, 2 and 3 threads, and
    # within rounding across them.
    x, w, _ = _inputs(rng, xs, ws)
    dy = rng.standard_normal(F.conv2d(x, w, **kw).shape).astype(np.float32)
    before = fastcnn.get_num_threads()
    try:
        outs = {}
        for n in (1, 2, 3):
            fastcnn.set_num_threads(n)
            outs[n] = [
                F.conv2d_backward(dy, x, w, **kw, output_mask=(False, True, False))[1]
                for _ in range(2)
            ]
    finally:
        fastcnn.set_num_threads(before)
    _, _, P, Q = dy.shape
    for first, second in outs.values():
        np.testing.assert_array_equal(second, first)
        _close(first, outs[1][0], dy.shape[0] * P * Q)


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        # 3 channels of one image: 2 or more threads also split dx into row ranges; 51 x 50
        # output positions span two column tiles of the 7x7 layer
        ((1, 3, 101, 99), (16, 3, 7, 7), {"stride": 2, "padding": 3}),
        ((1, 3, 45, 47), (24, 3, 5, 5), {"stride": 3, "padding": 2, "dilation": (2, 1)}),
        ((1, 2, 61, 33), (32, 2, 3, 3), {"stride": (2, 1), "padding": (0, 1)}),
        ((2, 1, 40, 31), (16, 1, 3, 3), {"stride": 2}),
    ],
)
def test_gemm_input_gradient_row_ranges(core, rng, xs, ws, kw) -> None:
    """The GEMM input gradient of layers with few channels and images (first layers), which more
    threads also split by dx rows: the oracle's dx at 1 to 4 threads, with the same bits at every
    thread count (the column tiles stay on one grid)."""
    x, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(x, w, None, **kw).shape).astype(np.float32)
    want, _, _ = ref.conv2d_backward(dy, x, w, **kw)
    before = fastcnn.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3, 4):
            fastcnn.set_num_threads(threads)
            runs.append(core.conv2d_backward_input(dy, w, xs, *args))
    finally:
        fastcnn.set_num_threads(before)
    _close(runs[0], want, ws[0] * ws[2] * ws[3])
    for got in runs[1:]:
        np.testing.assert_array_equal(got, runs[0])


# Stride-1 layers whose input gradient runs as the transposed forward (cpu/fast/dx_forward.inc):
# on its direct kernel (ungrouped, or one filter per group), its padded-rows GEMM (grouped) or the
# image lanes (a thin Winograd layer), with rectangular filters, dilation 2 and 3, and padding
# from 0 to dil * (R - 1). Thin Winograd layers padded past R - 1 stay off the lanes: their
# transposed forward would need a negative padding, which the lanes read as zero.
TRANSPOSED_FORWARD_CASES = [
    ((1, 5, 13, 11), (7, 5, 3, 5), {"padding": (0, 4), "dilation": (1, 2)}),
    ((2, 16, 11, 9), (16, 8, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 20, 7, 9), (24, 10, 3, 3), {"groups": 2, "padding": (1, 0)}),  # AVX2: col2im
    ((1, 12, 10, 13), (12, 4, 5, 3), {"groups": 3, "padding": (2, 0), "dilation": (1, 3)}),
    ((2, 16, 9, 9), (8, 4, 3, 3), {"groups": 4, "padding": 2, "dilation": 2}),
    ((1, 6, 13, 14), (16, 6, 5, 5), {"padding": (1, 2)}),
    ((2, 12, 9, 10), (3, 4, 3, 3), {"groups": 3, "padding": 1}),
    ((1, 9, 11, 12), (10, 9, 3, 3), {"padding": (2, 3), "dilation": 3}),
    ((1, 24, 8, 7), (18, 8, 2, 3), {"groups": 3, "padding": 1}),
    ((16, 8, 7, 9), (12, 8, 3, 3), {"padding": 1}),  # a thin Winograd layer: onto the image lanes
    ((16, 8, 7, 9), (12, 8, 3, 3), {"padding": (0, 3)}),  # ... padded past R - 1: not the lanes
    ((16, 8, 8, 8), (8, 8, 3, 3), {"padding": 3}),
    # tap columns (AVX-512): a transposed forward with 6-wide rows whose phase grid, 18 wide, the
    # col2im model rejects; and one of 7 channels, fewer than a tile's filter block (col2im)
    ((3, 9, 6, 6), (19, 9, 7, 7), {"dilation": 2, "padding": 6}),
    ((3, 7, 6, 6), (19, 7, 7, 7), {"dilation": 2, "padding": 6}),
]

# Strided layers whose input gradient folds its columns on a phase grid (AVX-512; cpu/fast/
# dx_grid.inc): strides per axis, groups, dilation, even and rectangular filters, rows of one to
# three vectors, 4 or more images (or images x groups), as the fold wants.
GRID_FOLD_CASES = [
    ((2, 8, 16, 16), (8, 2, 3, 3), {"groups": 4, "stride": 2, "padding": 1}),
    ((4, 6, 17, 13), (9, 6, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 6, 19, 21), (9, 2, 5, 3), {"groups": 3, "stride": 2, "padding": (2, 1)}),
    ((4, 4, 15, 16), (7, 4, 3, 3), {"stride": (2, 1), "padding": (0, 2)}),
    ((2, 4, 13, 13), (6, 2, 3, 3), {"groups": 2, "stride": (3, 2), "padding": 1}),
    ((4, 4, 12, 12), (4, 4, 3, 3), {"stride": 2, "padding": 1, "dilation": 2}),
    ((4, 4, 33, 35), (8, 4, 3, 3), {"stride": 2, "padding": 1}),
    ((5, 5, 11, 9), (4, 5, 4, 2), {"stride": 2, "padding": (1, 0)}),
    ((2, 12, 18, 18), (12, 4, 4, 4), {"groups": 3, "stride": 2, "padding": 1}),
    ((4, 3, 16, 40), (4, 3, 3, 3), {"stride": (1, 2), "padding": (1, 0)}),
]

# Strided layers whose input gradient runs as one stride-1 forward over dx's phases (cpu/fast/
# dx_phases.inc): few filters to a group's many channels, strides 2 and 3 and unequal, filters
# whose taps split into phases evenly (4x4, 6x6) or not (7x7, 5x5, rectangular), padding from 0 to
# R - 1, groups, and a batch whose phases are computed in chunks (with a smaller last one).
PHASE_CASES = [
    ((2, 24, 11, 13), (4, 12, 7, 7), {"groups": 2, "stride": 2, "padding": 3}),
    ((3, 16, 9, 14), (6, 16, 7, 5), {"stride": 2, "padding": (2, 1)}),
    ((2, 12, 13, 12), (3, 12, 6, 6), {"stride": 3, "padding": 2}),
    ((2, 16, 10, 9), (4, 16, 4, 4), {"stride": 2}),
    ((1, 20, 15, 8), (8, 10, 4, 6), {"groups": 2, "stride": (2, 3), "padding": (3, 5)}),
    ((5, 8, 7, 7), (2, 8, 5, 5), {"stride": 2, "padding": 2}),
    ((2, 16, 9, 11), (4, 16, 5, 5), {"stride": (1, 2), "padding": 2}),
    ((5, 64, 46, 40), (4, 64, 5, 5), {"stride": 2, "padding": 1}),
    ((2, 16, 9, 9), (4, 16, 4, 4), {"stride": 2, "padding": 4}),  # padded past R - 1: the GEMM
]


@pytest.mark.parametrize(
    ("xs", "ws", "kw"), TRANSPOSED_FORWARD_CASES + GRID_FOLD_CASES + PHASE_CASES
)
def test_input_gradient_as_transposed_forward_or_grid_fold(core, rng, xs, ws, kw) -> None:
    """The oracle's dx at 1 and 2 threads, the same bits on a second call at each, and a NaN or
    Inf in dy reaching the cells it reaches in the oracle (the forward's padding zeros and the
    grid's extra columns only meet finite filters; the zero taps of a phase's filter would meet
    it, so such a dy goes to the GEMM)."""
    _, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(np.zeros(xs, np.float32), w, **kw).shape)
    dy = dy.astype(np.float32)
    want, _, _ = ref.conv2d_backward(dy, np.zeros(xs, np.float32), w, **kw)
    dy_bad = dy.copy()
    dy_bad[0, 0, 0, -1], dy_bad[-1, -1, -1, 0] = np.nan, np.inf
    want_bad, _, _ = ref.conv2d_backward(dy_bad, np.zeros(xs, np.float32), w, **kw)
    before = fastcnn.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            dx = core.conv2d_backward_input(dy, w, xs, *args)
            np.testing.assert_array_equal(core.conv2d_backward_input(dy, w, xs, *args), dx)
            _close(dx, want, ws[0] // args[3] * ws[2] * ws[3])
            runs.append(dx)
            bad = core.conv2d_backward_input(dy_bad, w, xs, *args)
            np.testing.assert_array_equal(np.isnan(bad), np.isnan(want_bad))
            np.testing.assert_array_equal(np.isinf(bad), np.isinf(want_bad))
    finally:
        fastcnn.set_num_threads(before)
    _close(runs[1], runs[0], ws[0] // args[3] * ws[2] * ws[3])


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((2, 3, 9, 13), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
        ((2, 3, 9, 21), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
        ((2, 3, 9, 21), (6, 1, 3, 3), {"groups": 3, "padding": (0, 1)}),
        ((1, 2, 9, 21), (4, 1, 5, 5), {"groups": 2, "padding": 2}),
        ((1, 2, 11, 13), (2, 1, 7, 7), {"groups": 2, "padding": 3, "stride": 2}),
        ((2, 3, 9, 18), (5, 3, 3, 3), {"padding": 1}),
        ((1, 3, 11, 21), (32, 3, 5, 5), {"stride": 2, "padding": 2}),  # filters in the lanes
        ((2, 3, 9, 10), (5, 3, 3, 3), {"padding": 1}),  # shifted planes
        ((16, 3, 9, 10), (5, 3, 3, 3), {"padding": 1}),  # forward: images in the lanes
    ],
)
def test_direct_kernels_nan_pattern(core, rng, xs, ws, kw) -> None:
    """A NaN in x or dy reaches exactly the outputs and gradients the oracle's (and torch's)
    zero-padded sums reach: the lanes past a row's end must not pick up a NaN further on. (ref
    skips the padding instead of adding 0 * dy, so a NaN in dy reaches fewer weights there.)"""
    if core is fastcnn._core._variants["ref"]:
        pytest.skip("ref skips padded taps: no 0 * NaN terms")
    x, w, _ = _inputs(rng, xs, ws)
    x[0, 0, 1, -1] = np.nan  # the last column: read by the vector lanes past the output row
    x[-1, -1, -1, 0] = np.nan
    args = _core_args(ws, kw)
    want_y = ref.conv2d(x, w, **kw)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    _, want_dw, _ = ref.conv2d_backward(dy, x, w, **kw)
    np.testing.assert_array_equal(
        np.isnan(core.conv2d_forward(x, w, None, *args)), np.isnan(want_y)
    )
    np.testing.assert_array_equal(
        np.isnan(core.conv2d_backward_weight(dy, x, w.shape, *args)[0]), np.isnan(want_dw)
    )
    xc = rng.standard_normal(xs).astype(np.float32)
    dy[0, 0, -1, -1] = np.nan
    want_dx, want_dw, _ = ref.conv2d_backward(dy, xc, w, **kw)
    np.testing.assert_array_equal(
        np.isnan(core.conv2d_backward_input(dy, w, xs, *args)), np.isnan(want_dx)
    )
    for need_bias in (True, False):
        got_dw = core.conv2d_backward_weight(dy, xc, w.shape, *args, True, need_bias)[0]
        np.testing.assert_array_equal(np.isnan(got_dw), np.isnan(want_dw))


@pytest.mark.parametrize(
    ("xs", "mult"),
    [
        ((2, 3, 1, 5), 1),
        ((1, 2, 2, 16), 2),
        ((2, 2, 7, 17), 1),
        ((1, 3, 5, 64), 1),
        ((1, 2, 9, 65), 2),
        ((1, 2, 6, 100), 1),
        ((1, 2, 11, 150), 1),
        ((1, 2, 70, 56), 1),  # rows split on threads
    ],
)
def test_depthwise_3x3_same_size(core, rng, xs, mult) -> None:
    """3x3 depthwise layers with padding 1 at stride 1 (on AVX-512 read where the planes lie, the
    row ends through lane masks): forward and input gradient against the oracle, widths below,
    at and across the vector and row-strip widths, few rows, channel multipliers, 1 and 2
    threads."""
    C = xs[1]
    ws = (C * mult, 1, 3, 3)
    kw = {"groups": C, "padding": 1}
    x, w, b = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    want_y = ref.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    want_dx, _, _ = ref.conv2d_backward(dy, x, w, **kw)
    before = fastcnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            _close(core.conv2d_forward(x, w, b, *args), want_y, 9)
            _close(core.conv2d_backward_input(dy, w, xs, *args), want_dx, 9 * mult)
    finally:
        fastcnn.set_num_threads(before)


# (H, W) of the planes of test_depthwise_3x3_weight_gradient_plane_sizes
PLANE_SIZES = [
    (1, 1),
    (2, 3),
    (3, 7),
    (2, 8),
    (4, 9),
    (3, 15),
    (2, 16),
    (5, 17),
    (2, 31),
    (3, 32),
    (2, 33),
]


@pytest.mark.parametrize(
    ("hw", "pad"),
    # padding 0 only where the 3x3 filter fits the plane
    [(hw, pad) for hw in PLANE_SIZES for pad in (0, 1, 2) if pad > 0 or min(hw) >= 3],
)
def test_depthwise_3x3_weight_gradient_plane_sizes(core, rng, hw, pad) -> None:
    """The 3x3 depthwise weight gradient (AVX-512: flat planes from one vector wide at padding 1,
    row-reuse sweeps otherwise) on planes from 1x1 to widths around the vector widths 8 and 16,
    padding 0, 1 and 2: dw and db against the oracle on 1 and 2 threads, and the same bits on a
    second call."""
    H, W = hw
    xs, ws, kw = (3, 5, H, W), (5, 1, 3, 3), {"groups": 5, "padding": pad}
    x, _, _, args, dy, (want_y, _, want_dw, want_db) = _oracle_case(rng, xs, ws, kw)
    N, K, P, Q = want_y.shape
    before = fastcnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            dw, db = core.conv2d_backward_weight(dy, x, ws, *args)
            _close(dw, want_dw, N * P * Q)
            _close(db, want_db, N * P * Q)
            again_dw, again_db = core.conv2d_backward_weight(dy, x, ws, *args)
            np.testing.assert_array_equal(again_dw, dw)
            np.testing.assert_array_equal(again_db, db)
    finally:
        fastcnn.set_num_threads(before)


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((2, 3, 17, 21), (3, 1, 3, 3), {"groups": 3, "padding": 1}),  # in place (AVX-512), 3x3
        ((1, 2, 40, 19), (4, 1, 5, 5), {"groups": 2, "padding": 2}),  # row reuse, 5x5
        ((2, 2, 23, 29), (2, 1, 7, 7), {"groups": 2, "padding": 3, "stride": 2}),
        ((1, 3, 19, 33), (6, 1, 3, 3), {"groups": 3, "stride": 2, "dilation": 2, "padding": 2}),
        ((1, 2, 13, 15), (6, 1, 5, 2), {"groups": 2, "padding": "same"}),  # uneven padding
        ((1, 2, 200, 37), (2, 1, 3, 3), {"groups": 2, "padding": 1}),  # rows split on threads
    ],
)
def test_depthwise_forward_of_non_finite_filters(core, rng, xs, ws, kw) -> None:
    """An Inf or NaN tap of a depthwise filter reaches the outputs it reaches in ref, which skips
    the taps that fall on the padding (the fast kernels multiplied the padded zeros by it: NaN
    along the borders); the other outputs match the oracle on the finite filter, and an Inf in x
    meets the taps as in ref."""
    x, w, b = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    w[0, 0, 0, 0], w[-1, 0, -1, 1], w[1, 0, 1, -1] = np.inf, np.nan, -np.inf
    by_ref = fastcnn._core._variants["ref"]
    want = by_ref.conv2d_forward(x, w, b, *args)
    want_finite = ref.conv2d(x, np.where(np.isfinite(w), w, 0).astype(np.float32), b, **kw)
    finite = np.isfinite(want)
    assert not finite.all() and finite.any()
    x_inf = x.copy()
    x_inf[0, 0, 1, 2], x_inf[-1, -1, -2, -1] = np.inf, -np.inf
    want_inf = by_ref.conv2d_forward(x_inf, w, b, *args)
    before = fastcnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            y = core.conv2d_forward(x, w, b, *args)
            _same_nonfinite(y, want, "y")
            _close(y[finite], want_finite[finite], ws[2] * ws[3])
            _same_nonfinite(core.conv2d_forward(x_inf, w, b, *args), want_inf, "y, x with Inf")
    finally:
        fastcnn.set_num_threads(before)


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((2, 3, 57, 31), (3, 1, 3, 3), {"groups": 3, "padding": 1}),  # row reuse, 3x3
        ((1, 2, 40, 19), (4, 1, 5, 5), {"groups": 2, "padding": 2}),  # row reuse, 5x5
        ((2, 2, 23, 29), (2, 1, 7, 7), {"groups": 2, "padding": 3, "stride": 2}),
        ((1, 3, 19, 33), (6, 1, 3, 3), {"groups": 3, "stride": 2, "dilation": 2, "padding": 2}),
        ((1, 2, 13, 15), (6, 1, 5, 3), {"groups": 2, "stride": (2, 1), "padding": (2, 0)}),
        ((1, 2, 200, 37), (2, 1, 3, 3), {"groups": 2, "padding": 1}),  # rows split on threads
        *TRANSPOSED_FORWARD_CASES[:5],
        *GRID_FOLD_CASES[:3],
        *PHASE_CASES[:5],
    ],
)
def test_input_gradient_of_non_finite_filters(core, rng, xs, ws, kw) -> None:
    """An Inf or NaN tap on the depthwise kernels (row reuse, the general kernel, strides,
    dilation, channel multipliers, row ranges at 1 and 2 threads), on the layers whose input
    gradient runs as the transposed forward (which would multiply dy's padding by it) and on those
    whose fold runs on a phase grid (whose extra columns of dy would meet it) reaches
    the dx cells it reaches in ref, which skips the taps that fall on dy's padding or between its
    cells at a stride; the other cells match the oracle on the finite filter."""
    _, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(np.zeros(xs, np.float32), w, **kw).shape)
    dy = dy.astype(np.float32)
    w[0, 0, 0, 0], w[-1, 0, -1, 1], w[1, 0, 1, -1] = np.inf, np.nan, -np.inf
    want = fastcnn._core._variants["ref"].conv2d_backward_input(dy, w, xs, *args)
    w_finite = np.where(np.isfinite(w), w, 0).astype(np.float32)
    want_finite, _, _ = ref.conv2d_backward(dy, np.zeros(xs, np.float32), w_finite, **kw)
    finite = np.isfinite(want)
    assert not finite.all() and finite.any()
    before = fastcnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            dx = core.conv2d_backward_input(dy, w, xs, *args)
            np.testing.assert_array_equal(np.isnan(dx), np.isnan(want))
            np.testing.assert_array_equal(
                dx[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]
            )
            _close(dx[finite], want_finite[finite], ws[0] * ws[2] * ws[3])
    finally:
        fastcnn.set_num_threads(before)


@pytest.mark.parametrize(
    ("xs", "ws", "groups", "pad"),
    [
        ((2, 3, 13, 17), (3, 1, 3, 3), 3, (0, 1, 2, 1)),
        ((1, 4, 9, 20), (8, 1, 5, 5), 4, (3, 0, 1, 4)),
        ((2, 3, 15, 16), (5, 3, 3, 3), 1, (2, 0, 0, 1)),
        ((3, 8, 7, 15), (8, 8, 4, 2), 1, (1, 0, 2, 1)),  # dx as the transposed forward
        ((1, 16, 9, 11), (16, 8, 3, 3), 2, (0, 2, 1, 0)),
        ((1, 8, 7, 9), (8, 8, 2, 3), 1, (0, 1, 2, 1)),  # bottom padding past the filter span
        # 3x3 depthwise, top and left padding 1 but not bottom and right: the AVX-512 plane
        # kernels took P = H and Q = W, wrote rows of W into y's rows of Q (past the last plane:
        # 'double free or corruption'), and the flat weight gradient read dy as rows of W.
        ((2, 21, 24, 31), (21, 1, 3, 3), 21, (1, 1, 2, 0)),
        ((1, 3, 9, 17), (6, 1, 3, 3), 3, (1, 1, 0, 2)),
        ((2, 4, 16, 16), (4, 1, 3, 3), 4, (1, 1, 1, 0)),
        ((1, 2, 5, 20), (2, 1, 3, 3), 2, (1, 1, 0, 1)),
        ((2, 3, 9, 22), (6, 1, 3, 3), 3, (0, 1, 3, 2)),  # dw was 1e34 (read past dy's rows)
        # ... and with dy rows below x's last row and the top padding: read past x's plane
        ((2, 3, 20, 33), (6, 1, 3, 3), 3, (1, 1, 4, 1)),
        ((3, 2, 12, 17), (2, 1, 3, 3), 2, (0, 1, 3, 1)),
    ],
)
def test_asymmetric_padding_matches_oracle(core, rng, xs, ws, groups, pad) -> None:
    """(top, left, bottom, right) padding through _core, against the oracle on a zero-padded x."""
    top, left, bottom, right = pad
    x, w, b = _inputs(rng, xs, ws)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    want_y = ref.conv2d(xp, w, b, groups=groups)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    want_dxp, want_dw, _ = ref.conv2d_backward(dy, xp, w, groups=groups)
    want_dx = want_dxp[:, :, top : top + xs[2], left : left + xs[3]]
    N, K, P, Q = want_y.shape
    args = (1, pad, 1, groups)
    _close(core.conv2d_forward(x, w, b, *args), want_y, ws[1] * ws[2] * ws[3])
    _close(core.conv2d_backward_input(dy, w, x.shape, *args), want_dx, K * ws[2] * ws[3])
    dw, _ = core.conv2d_backward_weight(dy, x, w.shape, *args)
    _close(dw, want_dw, N * P * Q)


def test_concurrent_python_threads_match_serial(rng) -> None:
    jobs = []
    for i in range(6):
        x, w, b = _inputs(rng, (2, 8 + i, 12, 10), (9, 8 + i, 3, 3))
        dy = rng.standard_normal((2, 9, 6, 5)).astype(np.float32)
        jobs.append((x, w, b, dy))

    def run(job):
        x, w, b, dy = job
        return F.conv2d(x, w, b, stride=2, padding=1), *F.conv2d_backward(
            dy, x, w, stride=2, padding=1
        )

    serial = [run(j) for j in jobs]
    results = [None] * len(jobs)

    def worker(i):
        for _ in range(3):
            results[i] = run(jobs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, r in zip(serial, results):
        for a, b in zip(s, r):
            np.testing.assert_array_equal(a, b)


# --- output_mask, conversion, zero sizes, caller arrays ------------------------------------------


@pytest.mark.parametrize(
    "mask",
    [
        (True, False, False),
        (False, True, False),
        (False, False, True),
        (False, True, True),
        (True, True, False),
        (False, False, False),
    ],
)
def test_output_mask(rng, mask) -> None:
    x, w, _ = _inputs(rng, (2, 4, 9, 8), (6, 4, 3, 3))
    dy = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    full = F.conv2d_backward(dy, x, w, stride=2, padding=1)
    got = F.conv2d_backward(dy, x, w, stride=2, padding=1, output_mask=mask)
    for want_it, g, f in zip(mask, got, full):
        if want_it:
            np.testing.assert_array_equal(g, f)
        else:
            assert g is None


# Layers on the direct weight-gradient kernels, which sum db in the pass that reads dy for dw:
# depthwise 3x3 (flat planes where the rows are as wide as the input's and at least a vector, on
# AVX-512; row-reuse sweeps otherwise) and 5x5 with odd sizes, paddings 0, 1, (0, 1) and 2,
# batch 1, a channel multiplier of 2, two rows, stride 2 and dilation (band sweeps), two groups
# (threads split the batch sum into row ranges), ungrouped few-channel layers (two on shifted
# planes, one with a batch sum that threads split), and two with the images in the lanes (batches
# of 16; the second a GEMM layer of 1000 taps).
DIRECT_WGRAD_CASES = [
    ((3, 5, 13, 17), (5, 1, 3, 3), {"groups": 5, "padding": 1}),
    ((1, 4, 11, 21), (8, 1, 3, 3), {"groups": 4}),
    ((1, 4, 11, 21), (8, 1, 3, 3), {"groups": 4, "padding": 1}),
    ((2, 3, 12, 33), (3, 1, 3, 3), {"groups": 3, "padding": (0, 1)}),
    ((3, 2, 2, 19), (2, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 3, 7, 9), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
    ((2, 3, 9, 35), (3, 1, 5, 5), {"groups": 3, "padding": 2}),
    ((2, 3, 15, 19), (3, 1, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    ((1, 2, 12, 13), (4, 1, 3, 3), {"groups": 2, "dilation": 2, "padding": 2}),
    ((8, 2, 56, 45), (2, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((3, 2, 14, 11), (6, 2, 3, 3), {"padding": 1}),
    ((5, 2, 9, 10), (3, 2, 3, 3), {"padding": 1}),
    ((1, 3, 9, 11), (5, 3, 3, 2), {"padding": (1, 0)}),
    ((16, 6, 11, 11), (5, 6, 3, 2), {"padding": (1, 0)}),
    ((16, 40, 6, 5), (12, 40, 5, 5), {"padding": 2}),
]
# First layers whose filters fill whole vectors: with db they take the filters-in-lanes kernel
# (cpu/fast/wgrad_lanes.inc), without it possibly the direct one, so the masks agree to rounding.
LANES_WGRAD_CASES = [
    ((1, 3, 37, 41), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((2, 16, 7, 9), (32, 16, 3, 3), {"padding": 1}),
    ((3, 3, 13, 11), (16, 3, 3, 3), {"padding": 1}),
    ((3, 1, 19, 23), (32, 1, 3, 3), {"padding": 1}),
    ((2, 2, 17, 15), (48, 2, 5, 5), {"stride": (1, 2), "padding": 2}),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("xs", "ws", "kw", "same_bits"),
    _case_params(
        [(*case, True) for case in DIRECT_WGRAD_CASES]
        + [(*case, False) for case in LANES_WGRAD_CASES]
    ),
)
def test_weight_gradient_masks(core, rng, xs, ws, kw, same_bits, threads) -> None:
    """dw alone, db alone and both: each matches the oracle, and on the direct kernels has the
    same bits either way."""
    x, w, _, args, dy, (want_y, _, want_dw, want_db) = _oracle_case(rng, xs, ws, kw)
    N, K, P, Q = want_y.shape
    before = fastcnn.get_num_threads()
    try:
        fastcnn.set_num_threads(threads)
        dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args, True, True)
        dw_only, none_db = core.conv2d_backward_weight(dy, x, w.shape, *args, True, False)
        none_dw, db_only = core.conv2d_backward_weight(dy, x, w.shape, *args, False, True)
    finally:
        fastcnn.set_num_threads(before)
    assert none_db is None and none_dw is None
    for got_dw in (dw, dw_only):
        _close(got_dw, want_dw, N * P * Q)
    for got_db in (db, db_only):
        _close(got_db, want_db, N * P * Q)
    if same_bits:
        np.testing.assert_array_equal(dw_only, dw)
        np.testing.assert_array_equal(db_only, db)


# GEMM layers on a phase grid (cpu/fast/phase_grid.inc, wgrad_grid.inc) and the direct kernels
# up to 800 taps. Grouped at stride 2 with rows of at most 32 floats (the AVX-512 row permutes)
# and wider (the row loop), stride 3 (element by element), dilation, mixed strides, 900 taps
# (GEMM forward and weight gradient on the grid, 5-wide output rows), 216 taps with 9-wide rows
# (grid forward, direct weight gradient) and 180 taps with 29-wide ones (direct both ways), and
# a batch whose planes fill two chunks of the weight gradient's grid.
PHASE_GRID_CASES = [
    ((3, 16, 15, 13), (12, 4, 3, 3), {"stride": 2, "padding": 1, "groups": 4}),
    ((2, 8, 37, 41), (8, 2, 3, 3), {"stride": 2, "padding": 1, "groups": 4}),
    ((2, 6, 20, 23), (4, 3, 3, 3), {"stride": 3, "padding": 1, "groups": 2}),
    ((2, 8, 17, 19), (8, 4, 3, 3), {"dilation": 2, "padding": 2, "groups": 2}),
    ((2, 6, 19, 21), (6, 3, 3, 5), {"stride": (2, 1), "dilation": (1, 2), "groups": 2}),
    ((2, 100, 9, 9), (5, 100, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 24, 14, 17), (16, 24, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 20, 30, 29), (32, 20, 3, 3), {"dilation": 2, "padding": 2}),
    ((9, 96, 40, 40), (4, 48, 3, 3), {"stride": 2, "padding": 1, "groups": 2}),
    ((6, 16, 30, 31), (8, 8, 3, 3), {"stride": 2, "groups": 2}),
    # weight gradients on the grid (over 800 taps) whose plane rows are three 16-column chunks
    # (AVX-512 row permutes): padding that starts the first chunk's window before the row, column
    # strides 2 and 1
    ((2, 96, 5, 70), (12, 96, 3, 3), {"stride": 2, "padding": (1, 3)}),
    ((1, 60, 9, 40), (6, 60, 3, 5), {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)}),
]


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    _case_params(PHASE_GRID_CASES),
)
def test_phase_grid_and_wide_direct_layers(core, rng, xs, ws, kw) -> None:
    _check_variant(core, rng, xs, ws, kw)


# Grouped layers (not depthwise) and ungrouped strided ones whose forward reads the phase grid's
# taps in place, and the grouped weight gradient that does: groups 2-8 with odd channel and
# filter counts per group, a filter block that ends inside a tile and several blocks, strides
# 1-3, dilation, rectangular filters and strides, batch 1, grid runs of one tile and several.
GRID_DIRECT_CASES = [
    ((3, 6, 11, 13), (10, 3, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 15, 9, 10), (9, 5, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    ((2, 24, 17, 15), (40, 3, 3, 3), {"groups": 8, "stride": 3, "padding": 2}),
    ((2, 8, 19, 21), (12, 2, 3, 3), {"groups": 4, "dilation": 2, "padding": 2}),
    ((2, 14, 13, 12), (14, 7, 5, 3), {"groups": 2, "stride": (2, 1), "padding": (2, 1)}),
    ((4, 12, 16, 16), (36, 6, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    ((1, 4, 9, 70), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 32, 8, 8), (32, 8, 3, 3), {"groups": 4, "padding": 1}),
    ((3, 21, 17, 19), (13, 21, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 20, 15, 15), (24, 20, 3, 3), {"stride": 3, "dilation": 2, "padding": 2}),
    # grid runs of 12 positions: shorter than an AVX-512 vector (masked loads), and on AVX2 one
    # whole vector and a step back over the last 8
    ((3, 8, 5, 6), (6, 4, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    # Tap-column planes (AVX-512, cpu/fast/tap_columns.inc: rows of at most 32 floats in, 16 out):
    # strides 1-3 per axis, dilation, filters 1-7 wide, batch 1, a filter block ending in a tile.
    ((2, 10, 15, 15), (12, 5, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    ((1, 24, 13, 11), (9, 24, 3, 5), {"stride": (2, 3), "padding": (1, 2)}),
    ((2, 24, 20, 20), (16, 24, 3, 3), {"stride": 2, "dilation": 2, "padding": 2}),
    ((2, 12, 16, 16), (18, 4, 3, 3), {"groups": 3, "padding": 1}),
    ((3, 8, 31, 32), (8, 4, 5, 5), {"groups": 2, "stride": 3, "padding": 2}),
    ((2, 6, 12, 30), (8, 3, 1, 7), {"groups": 2, "stride": 2, "padding": (0, 3)}),
    # Grids of one vector, three images to a tile (AVX-512): batches ending in 1 and 2 images,
    # on tap columns and on phase grids whose extra columns are dropped from the vector.
    ((10, 24, 8, 8), (20, 24, 3, 3), {"stride": 2, "padding": 1}),
    ((7, 12, 7, 7), (18, 4, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    ((10, 8, 6, 6), (10, 4, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    ((11, 32, 6, 12), (16, 32, 3, 2), {"stride": (2, 3), "padding": 1}),
    # Few taps and rows of at most half a vector: the tiles before the direct kernel.
    ((5, 3, 16, 15), (10, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((9, 4, 8, 8), (8, 4, 3, 3), {"stride": 2, "padding": 1}),
    # ... but not depthwise ones (channel multipliers 2 and 3): those keep their own kernel, and
    # the workspace sized for it (taking the tiles, they wrote past it)
    ((16, 3, 16, 10), (6, 1, 4, 5), {"groups": 3, "stride": 3, "padding": (0, 4), "dilation": 2}),
    ((9, 4, 8, 8), (12, 1, 3, 3), {"groups": 4, "stride": 2, "padding": 1}),
    # Strided planes past the GEMM's grid limit (padded_rows: 97 channels of 4 phase planes of
    # 10 x 19 are 73,720 floats), ungrouped dilated layers (tap columns on AVX-512, a grid of
    # 5 x 12 on AVX2), a dilated layer whose grid does not pay but tap columns do (AVX-512), and
    # groups of up to 4096 taps and just past them (65 and 90 channels of 7x7).
    ((3, 97, 17, 35), (11, 97, 3, 3), {"stride": 2, "padding": 1}),
    ((3, 37, 5, 8), (13, 37, 3, 3), {"dilation": 2, "padding": 2}),
    ((3, 11, 6, 6), (9, 11, 7, 7), {"dilation": 2, "padding": 6}),
    ((2, 130, 6, 23), (10, 65, 7, 7), {"groups": 2, "stride": 2, "padding": 3}),
    ((1, 90, 8, 9), (5, 90, 7, 7), {"stride": 2, "padding": 3}),
    # Ungrouped weight gradients of more than 800 taps and at most 16 filters on the tiles (a
    # Winograd layer's too), and of 17 filters, which stay on the grid GEMM on AVX2; on AVX-512
    # up to 24 filters take the tiles, and 25 stay on the grid GEMM
    ((3, 97, 9, 11), (16, 97, 3, 3), {"dilation": 2, "padding": 2}),
    ((2, 97, 9, 11), (17, 97, 3, 3), {"dilation": 2, "padding": 2}),
    ((2, 93, 9, 11), (24, 93, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 93, 9, 11), (25, 93, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 96, 15, 13), (8, 96, 3, 3), {"padding": 1}),
    # Ungrouped forwards of at most 64 filters (grid_direct_fwd's few filters): stride 1, 65
    # filters (the GEMM), a dilated grid 2.7 times the output (tap columns past their plane limit
    # on AVX-512), and 4097-8192 taps
    ((3, 19, 21, 17), (64, 19, 5, 5), {"padding": 2}),
    ((2, 19, 21, 17), (65, 19, 5, 5), {"padding": 2}),
    ((3, 97, 7, 7), (13, 97, 7, 7), {"dilation": 2, "padding": 6}),
    ((2, 167, 9, 10), (11, 167, 7, 7), {"padding": 3}),
    # Grids of one tile skip the taps reading only padding at all their positions (live_taps):
    # padding past the filter span (dilation 2, 7x7 on 6x6, tap columns on AVX-512; three images
    # to a tile), strided with padding 3 and 2 per axis, a 5 x 8 plane; grids of several tiles
    # with such taps at their borders do not (padding 4 with 5x5).
    ((3, 11, 6, 6), (10, 11, 7, 7), {"dilation": 2, "padding": 6}),
    ((7, 9, 4, 4), (10, 9, 3, 3), {"dilation": 2, "padding": 3, "stride": 2}),
    ((2, 41, 20, 21), (9, 41, 5, 5), {"padding": 4}),
    ((2, 37, 13, 11), (6, 37, 3, 3), {"stride": 2, "padding": (3, 2)}),
    ((3, 45, 5, 8), (17, 45, 3, 3), {"dilation": 2, "padding": 2}),
]


GRID_DIRECT_PARAMS = _case_params(GRID_DIRECT_CASES)


@pytest.mark.parametrize(("xs", "ws", "kw"), GRID_DIRECT_PARAMS)
def test_grid_direct_layers(core, rng, xs, ws, kw) -> None:
    _check_variant(core, rng, xs, ws, kw)


@pytest.mark.parametrize(("xs", "ws", "kw"), GRID_DIRECT_PARAMS)
def test_grid_direct_layers_same_bits_on_any_thread_count(rng, xs, ws, kw) -> None:
    """Their forward splits only images and output columns, and their grouped (or few-filter)
    weight gradient only (filter, tap) blocks, so y and dw have the same bits on 1, 2 and 3
    threads."""
    x, w, b = _inputs(rng, xs, ws)
    y = F.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    before = fastcnn.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 2, 3):
            fastcnn.set_num_threads(threads)
            dw = F.conv2d_backward(dy, x, w, **kw, output_mask=(False, True, False))[1]
            runs.append((F.conv2d(x, w, b, **kw), dw))
    finally:
        fastcnn.set_num_threads(before)
    grouped = kw.get("groups", 1) > 1
    few_filters = ws[0] <= 16 and ws[1] * ws[2] * ws[3] > 800  # grid_direct_wgrad, ungrouped
    # (AVX-512: up to 24 filters; 16 holds for every variant)
    for got in runs[1:]:
        np.testing.assert_array_equal(got[0], runs[0][0])
        if grouped or few_filters:
            np.testing.assert_array_equal(got[1], runs[0][1])


# Strided unpadded 1x1 layers, whose weight gradient runs on x taken at the stride (the pointwise
# GEMM on the subsample, cpu/fast/subsampled.inc): strides 2 and 3, per axis, odd sizes, grouped,
# a batch sum deep enough to be cut into depth slices (5 x 30 x 29 positions); then 1x1 layers
# that keep their kernels: padded (the phase grid), depthwise (the direct kernel).
SUBSAMPLED_CASES = [
    ((3, 7, 13, 11), (5, 7, 1, 1), {"stride": 2}),
    ((2, 9, 17, 10), (6, 9, 1, 1), {"stride": (3, 1)}),
    ((2, 6, 9, 20), (4, 3, 1, 1), {"stride": (1, 3), "groups": 2}),
    ((5, 19, 60, 58), (21, 19, 1, 1), {"stride": 2}),
    ((2, 8, 11, 13), (6, 8, 1, 1), {"stride": 2, "padding": 1}),
    ((2, 6, 11, 9), (12, 1, 1, 1), {"stride": 2, "groups": 6}),
]


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    _case_params(SUBSAMPLED_CASES),
)
def test_strided_pointwise_layers(core, rng, xs, ws, kw) -> None:
    _check_variant(core, rng, xs, ws, kw)


@pytest.mark.parametrize(
    ("xs", "ws", "stride", "pads"),
    [
        ((3, 21, 2, 24), (14, 21, 1, 1), (1, 2), (0, 0, 2, 2)),
        ((2, 7, 9, 10), (5, 7, 1, 1), (2, 2), (0, 0, 3, 1)),
        ((2, 6, 8, 7), (4, 3, 1, 1), (3, 1), (0, 0, 4, 0)),
    ],
)
def test_strided_pointwise_layers_padded_only_below_and_right(core, rng, xs, ws, stride, pads):
    """(top, left, bottom, right) padding through _core: zero top and left, but bottom or right
    padding that adds outputs past the last input row or column. The weight gradient on x taken
    at the stride read rows and columns past its planes there (garbage, other bits each call)."""
    x, w, b = _inputs(rng, xs, ws)
    groups = xs[1] // ws[1]
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    want_y = ref.conv2d(padded, w, b, stride=stride, groups=groups)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    want_dxp, want_dw, want_db = ref.conv2d_backward(dy, padded, w, stride=stride, groups=groups)
    want_dx = want_dxp[:, :, pads[0] : pads[0] + xs[2], pads[1] : pads[1] + xs[3]]
    args = (stride, pads, (1, 1), groups)
    N, K, P, Q = want_y.shape
    _close(core.conv2d_forward(x, w, b, *args), want_y, ws[1])
    _close(core.conv2d_backward_input(dy, w, x.shape, *args), want_dx, K // groups)
    for with_db in (True, False):
        dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args, True, with_db)
        _close(dw, want_dw, N * P * Q)
        if with_db:
            _close(db, want_db, N * P * Q)


def test_strided_pointwise_weight_gradient_skips_unread_inputs(core, rng) -> None:
    """At stride 2 the odd rows and columns of x are read by no output: an Inf there reaches
    neither dw nor db, and dw has the same bits on every call."""
    x, w, _, args, dy, (want_y, _, want_dw, want_db) = _oracle_case(
        rng, (3, 10, 15, 14), (7, 10, 1, 1), {"stride": 2}
    )
    x[:, :, 1::2, :] = np.inf
    x[:, :, :, 1::2] = -np.inf
    N, K, P, Q = want_y.shape
    dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args)
    _close(dw, want_dw, N * P * Q)
    _close(db, want_db, N * P * Q)
    np.testing.assert_array_equal(core.conv2d_backward_weight(dy, x, w.shape, *args)[0], dw)


def test_phase_grid_weight_gradient_redone_when_an_unread_column_is_inf(core, rng) -> None:
    """Column 13 of a 14-wide input is read by no tap (3x3, stride 2, no padding), but on the
    grid an extra column multiplies it by a zero dy: the Inf there must not reach dw."""
    x, w, b, args, dy, (want_y, want_dx, want_dw, want_db) = _oracle_case(
        rng, (2, 4, 11, 14), (6, 2, 3, 3), {"stride": 2, "groups": 2}
    )
    x[:, :, :, 13] = np.inf
    dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args)
    _close(dw, want_dw, dy.shape[0] * dy.shape[2] * dy.shape[3])
    _close(db, want_db, dy.shape[0] * dy.shape[2] * dy.shape[3])
    _close(core.conv2d_forward(x, w, b, *args), want_y, 18)


# Winograd weight gradients, whose dy transform also sums db (one partial sum per run of blocks):
# odd sizes, batch 1, 8-17 and 33+ channels, filters that end inside a vector and past two B
# panels, one block and several (37 images of 3x3 tiles: three runs), padding 0 and 2. Then GEMM
# weight gradients whose db pass (at least 2^16 floats of dy) runs on the GEMM's threads.
THREADED_DB_CASES = [
    ((1, 8, 9, 11), (8, 8, 3, 3), {"padding": 1}),
    ((3, 17, 7, 7), (9, 17, 3, 3), {"padding": 1}),
    ((1, 33, 13, 5), (17, 33, 3, 3), {}),
    ((37, 16, 5, 6), (24, 16, 3, 3), {"padding": 1}),
    ((3, 9, 12, 9), (70, 9, 3, 3), {"padding": 2}),
    ((2, 16, 32, 33), (40, 16, 1, 1), {}),
    ((4, 9, 24, 23), (33, 9, 5, 5), {"padding": 2}),
]


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    _case_params(THREADED_DB_CASES),
)
def test_weight_gradient_masks_on_threads(core, rng, xs, ws, kw) -> None:
    """dw alone, db alone and both match the oracle on 1, 2 and 3 threads; dw has the same bits
    with and without db; db the same bits on every thread count, and so has dw on Winograd (the
    GEMM path may cut its batch sum by the thread count: to rounding there)."""
    x, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(x, w, None, **kw).shape).astype(np.float32)
    _, want_dw, want_db = ref.conv2d_backward(dy, x, w, **kw)
    N, K, P, Q = dy.shape
    before = fastcnn.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            fastcnn.set_num_threads(threads)
            runs.append(
                (
                    *core.conv2d_backward_weight(dy, x, w.shape, *args, True, True),
                    core.conv2d_backward_weight(dy, x, w.shape, *args, True, False)[0],
                    core.conv2d_backward_weight(dy, x, w.shape, *args, False, True)[1],
                )
            )
    finally:
        fastcnn.set_num_threads(before)
    dw, db, dw_only, db_only = runs[0]
    for got, want in ((dw, want_dw), (dw_only, want_dw), (db, want_db), (db_only, want_db)):
        _close(got, want, N * P * Q)
    np.testing.assert_array_equal(dw_only, dw)
    winograd = ws[2:] == (3, 3)
    for other in runs[1:]:
        for i, (got, first) in enumerate(zip(other, runs[0])):
            if winograd or i % 2:  # dw, db, dw_only, db_only
                np.testing.assert_array_equal(got, first)
            else:
                _close(got, first, N * P * Q)


@pytest.mark.parametrize(("xs", "ws", "kw"), NONFINITE_PARAMS)
def test_winograd_weight_gradient_redo_keeps_db(core, rng, xs, ws, kw) -> None:
    """An Inf in x sends dw to the direct sum after the Winograd pass: db, summed by that pass,
    still matches the oracle."""
    x, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(x, w, None, **kw).shape).astype(np.float32)
    x.flat[rng.choice(x.size, 2, replace=False)] = [np.inf, -np.inf]
    with np.errstate(invalid="ignore"):
        _, want_dw, want_db = ref.conv2d_backward(dy, x, w, **kw)
    dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args, True, True)
    _same_nonfinite(dw, want_dw, "dw")
    N, K, P, Q = dy.shape
    _close(db, want_db, N * P * Q)


def test_converts_dtype_and_layout(rng) -> None:
    x64 = rng.standard_normal((2, 9, 7, 3))  # float64, transposed below to (2, 3, 9, 7)
    xt = x64.transpose(0, 3, 1, 2)
    w = rng.integers(-3, 4, (4, 3, 3, 3))  # integer weights
    b = rng.standard_normal(4)
    want = F.conv2d(
        np.ascontiguousarray(xt, np.float32), w.astype(np.float32), b.astype(np.float32), padding=1
    )
    got = F.conv2d(xt, w, b, padding=1)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    dy = rng.standard_normal(got.shape)[..., ::-1]  # float64, negative strides
    want_g = F.conv2d_backward(
        np.ascontiguousarray(dy, np.float32),
        np.ascontiguousarray(xt, np.float32),
        w.astype(np.float32),
        padding=1,
    )
    for g, wg in zip(F.conv2d_backward(dy, xt, w, padding=1), want_g):
        np.testing.assert_array_equal(g, wg)


def test_zero_size_batch(core) -> None:
    x = np.ones((0, 3, 8, 8), np.float32)
    w = np.ones((5, 3, 3, 3), np.float32)
    y = core.conv2d_forward(x, w, np.ones(5, np.float32), 2, (1, 1, 1, 1), 1, 1)
    assert y.shape == (0, 5, 4, 4)
    dx = core.conv2d_backward_input(y, w, x.shape, 2, (1, 1, 1, 1), 1, 1)
    assert dx.shape == x.shape
    dw, db = core.conv2d_backward_weight(y, x, w.shape, 2, (1, 1, 1, 1), 1, 1)
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros(5, np.float32))


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((4, 4, 0, 4), (0, 1, 1, 2), {"stride": 2, "padding": 2, "dilation": (4, 2), "groups": 4}),
        ((2, 4, 5, 5), (0, 1, 3, 3), {"padding": 1, "groups": 4}),  # depthwise, no filters
        ((2, 1, 6, 6), (0, 1, 3, 3), {"padding": 1}),  # first layer, no filters
        ((2, 16, 6, 6), (0, 16, 3, 3), {"padding": 1}),  # Winograd shape, no filters
        ((2, 16, 0, 6), (8, 16, 3, 3), {"padding": 2}),  # empty planes, padded output rows
        ((0, 17, 6, 8), (9, 17, 3, 3), {}),  # Winograd shape, empty batch: no tiles
    ],
)
def test_empty_filters_or_planes(core, xs, ws, kw) -> None:
    """Found by the fuzz runs: no filters (K = 0) divided by zero while sizing the direct kernels'
    workspace, an empty batch while sizing Winograd blocks. Every pass returns its shape: zeros
    where a sum has no terms."""
    x, w = np.ones(xs, np.float32), np.ones(ws, np.float32)
    args = _core_args(ws, kw)
    y = core.conv2d_forward(x, w, None, *args)
    want = ref.conv2d(x, w, None, **kw)
    np.testing.assert_array_equal(y, want)
    dy = np.ones(y.shape, np.float32)
    np.testing.assert_array_equal(core.conv2d_backward_input(dy, w, x.shape, *args), np.zeros(xs))
    dw, db = core.conv2d_backward_weight(dy, x, w.shape, *args)
    want_dx, want_dw, want_db = ref.conv2d_backward(dy, x, w, **kw)
    np.testing.assert_array_equal(dw, want_dw)
    np.testing.assert_array_equal(db, want_db)


@pytest.mark.parametrize(
    ("xs", "ws", "kw"),
    [
        ((1, 1, 6, 4), (5, 1, 2, 1), {"stride": 2**31}),
        ((2, 3, 7, 9), (3, 1, 3, 3), {"stride": (2, 7), "groups": 3}),
        ((2, 3, 7, 9), (6, 3, 2, 2), {"stride": (3, 8), "padding": 1}),
        ((2, 4, 9, 5), (8, 1, 3, 3), {"stride": 2**31, "padding": 2, "groups": 4}),
    ],
)
def test_strides_wider_than_the_plane(core, rng, xs, ws, kw) -> None:
    """The direct kernels store one padded-plane phase per stride step that holds a column: a
    stride of 2**31 (found by the fuzz run) took 25 s padding 2**31 empty phases."""
    _check_variant(core, rng, xs, ws, kw)


def test_caller_arrays_unchanged(rng) -> None:
    x, w, b = _inputs(rng, (2, 3, 7, 7), (4, 3, 3, 3))
    dy = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, dy)]
    F.conv2d(x, w, b, padding="same")
    F.conv2d_backward(dy, x, w, padding="same")
    for a, c in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, c)


# --- bad input -----------------------------------------------------------------------------------

X = np.ones((2, 4, 8, 8), np.float32)
W = np.ones((6, 4, 3, 3), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": np.ones((4, 8), np.float32)}, ValueError, "x"),
        ({"weight": np.ones((6, 4, 3), np.float32)}, ValueError, "weight"),
        ({"weight": np.ones((6, 3, 3, 3), np.float32)}, ValueError, "weight"),
        ({"weight": np.ones((6, 2, 3, 3), np.float32), "groups": 3}, ValueError, "x"),
        ({"weight": np.ones((5, 2, 3, 3), np.float32), "groups": 2}, ValueError, "weight"),
        ({"bias": np.ones(5, np.float32)}, ValueError, "bias"),
        ({"bias": np.ones((6, 1), np.float32)}, ValueError, "bias"),
        ({"stride": 0}, ValueError, "stride"),
        ({"stride": (1, 2, 3)}, ValueError, "stride"),
        ({"stride": 1.5}, TypeError, "stride"),
        ({"dilation": 0}, ValueError, "dilation"),
        ({"padding": -1}, ValueError, "padding"),
        ({"padding": "full"}, ValueError, "padding"),
        ({"padding": "same", "stride": 2}, ValueError, "padding"),
        ({"groups": 0}, ValueError, "groups"),
        ({"groups": True}, TypeError, "groups"),
        ({"weight": np.ones((6, 4, 11, 3), np.float32)}, ValueError, "weight"),
        ({"weight": np.ones((6, 4, 5, 5), np.float32), "dilation": 3}, ValueError, "weight"),
        ({"input": "abc"}, TypeError, "x"),
        ({"input": None}, TypeError, "x"),
        ({"weight": np.ones((6, 4, 3, 3), np.complex64)}, TypeError, "weight"),
        (
            {"weight": np.ones((6, 0, 3, 3), np.float32), "input": np.ones((2, 0, 8, 8))},
            ValueError,
            "x",
        ),
    ],
)
def test_bad_input_functional(kwargs, error, match) -> None:
    args = {"input": X, "weight": W}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv2d(**args)


@pytest.mark.parametrize(
    ("forms", "canonical"),
    [
        (
            {"stride": (2,), "padding": [1], "dilation": (2,)},
            {"stride": 2, "padding": 1, "dilation": 2},
        ),
        (
            {"stride": np.array([1, 2]), "padding": np.array([2, 1])},
            {"stride": (1, 2), "padding": (2, 1)},
        ),
        (
            {"stride": (np.int64(2), np.int32(1)), "groups": np.int16(2)},
            {"stride": (2, 1), "groups": 2},
        ),
    ],
)
def test_argument_forms_torch_accepts(forms, canonical) -> None:
    # PyTorch expands a one-element sequence to both dims and takes any integer sequence
    x = np.arange(2 * 4 * 9 * 9, dtype=np.float32).reshape(2, 4, 9, 9) % 7
    w = np.ones((6, 4 // canonical.get("groups", 1), 3, 3), np.float32)
    dy = np.ones(F.conv2d(x, w, **canonical).shape, np.float32)
    np.testing.assert_array_equal(F.conv2d(x, w, **forms), F.conv2d(x, w, **canonical))
    for got, want in zip(
        F.conv2d_backward(dy, x, w, **forms), F.conv2d_backward(dy, x, w, **canonical)
    ):
        np.testing.assert_array_equal(got, want)
    layer = fastcnn.nn.Conv2d(4, 6, 3, **forms)
    layer.weight.data[...] = 1.0
    np.testing.assert_array_equal(
        layer(x)[:, :, :2], F.conv2d(x, w, layer.bias.data, **canonical)[:, :, :2]
    )


def test_conv2d_module_same_padding_with_stride_raises_at_construction() -> None:
    with pytest.raises(ValueError, match="padding"):
        fastcnn.nn.Conv2d(4, 6, 3, stride=2, padding="same")


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((X, W, None, 1, 2**40, 1, 1), ValueError, "padding"),
        ((X, W, None, 2**70, 0, 1, 1), ValueError, "stride"),
        ((X, W, None, 1, (1, 2, 3), 1, 1), ValueError, "padding"),
        ((X, W, None, 1, "same", 1, 1), TypeError, "padding"),
        ((X, W, None, 1, 0, (1, -1), 1), ValueError, "dilation"),
        ((X, np.ones((6, 4, 1, 1), np.float32), None, 1, 0, 2**31, 1), None, None),
    ],
)
def test_bad_input_core_forward(args, error, match) -> None:
    if error is None:  # a valid call with an extreme dilation on a 1-tall kernel
        assert fastcnn._core.conv2d_forward(*args).shape == (2, 6, 8, 8)
        return
    with pytest.raises(error, match=match):
        fastcnn._core.conv2d_forward(*args)


def test_bad_input_core_backward(core) -> None:
    dy = np.ones((2, 6, 6, 6), np.float32)
    with pytest.raises(ValueError, match="dy"):
        core.conv2d_backward_input(dy[:, :5], W, X.shape, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="x_shape"):
        core.conv2d_backward_input(dy, W, (2, 4, 8), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="x_shape"):
        core.conv2d_backward_input(dy, W, (2, 4, -8, 8), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="weight_shape"):
        core.conv2d_backward_weight(dy, X, (6, 3, 3, 3), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="dy"):
        core.conv2d_backward_weight(dy[:1], X, W.shape, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="weight_shape"):
        core.conv2d_backward_weight(dy, X, "weight", 1, 0, 1, 1)
    with pytest.raises(ValueError, match="output_mask"):
        F.conv2d_backward(dy, X, W, output_mask=(True, True))


@pytest.mark.parametrize(
    "shape", [(9, 16, 21, 19), (1, 32, 14, 14), (1, 16, 22, 22), (5, 13, 11, 9)]
)
def test_winograd_results_do_not_depend_on_the_thread_count(rng, shape) -> None:
    """Each Winograd output is computed by one task, and the weight gradient sums the batch in
    runs fixed by the shape: 1, 2 and 3 threads give the same bits. One image fits one block of
    tiles, cut into at least two blocks, one per thread, where it has the panels for them (14x14
    at 1 and 2 threads, 22x22 at 1, 2 and 3); otherwise the threads share its point products.
    13 channels: the input gradient's filter points (transformed by the threads) end in a
    partial panel."""
    x, w, b = _inputs(rng, shape, (24, shape[1], 3, 3))
    dy = rng.standard_normal((shape[0], 24) + shape[2:]).astype(np.float32)
    before = fastcnn.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastcnn.set_num_threads(n)
            results.append((F.conv2d(x, w, b, padding=1), *F.conv2d_backward(dy, x, w, padding=1)))
    finally:
        fastcnn.set_num_threads(before)
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("xs", "kw"),
    [
        ((1, 16, 4, 1), {"padding": (0, 2)}),  # one input column: each tap meets it once
        ((1, 147, 4, 1), {"padding": (0, 2)}),
        ((1, 17, 1, 1), {"padding": 2}),  # one pixel: each weight's gradient is one product
    ],
)
def test_weight_gradient_of_narrow_images_within_rounding(core, rng, xs, kw) -> None:
    """The weight gradient of a 3x3 stride-1 layer wide enough for Winograd (C*K >= 7 (C+K)) on an
    image narrower than a tile stays within 16 float32 epsilons of each weight's sum |terms|, as
    ref and torch's float32 do (under 3 there). Winograd's transforms spread a tap's rounding over
    the whole tile, so a small weight gradient beside large ones took their error: with these
    draws AVX-512 was 31, 260 and 179 eps off, AVX2 494 and 680 on the last two (on the one-pixel
    shape 1853 eps with other draws, 45648 with values of mixed magnitudes). Images lower or
    narrower than 5 now take the direct sums (winograd_wgrad_applies)."""
    ws = (xs[1], xs[1], 3, 3)
    x, w, _ = _inputs(rng, xs, ws)
    args = _core_args(ws, kw)
    dy = rng.standard_normal(ref.conv2d(x, w, **kw).shape).astype(np.float32)
    _, want, _ = ref.conv2d_backward(dy, x, w, **kw)
    _, scale, _ = ref.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **kw)
    got = core.conv2d_backward_weight(dy, x, ws, *args, True, False)[0]
    eps = np.finfo(np.float32).eps
    assert np.all(np.abs(got - want) <= 16 * eps * scale), np.max(np.abs(got - want) / scale) / eps
