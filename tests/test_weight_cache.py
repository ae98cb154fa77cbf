"""_core.WeightCache: a layer's packed weights kept between conv2d_forward calls. A cached call
must give the same bits as an uncached one, for every variant and shape, and a weight changed in
any way (in place, by an optimizer step, by load_state_dict, by a new Parameter) must be repacked.

Layout key: x (N, C, H, W), w (K, C/groups, R, S), b (K,), y (N, K, P, Q).
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
import reference as ref

import fastcnn
from fastcnn import _core, nn, optim

# Winograd layers (3x3, stride 1, >= 8 channels and filters: the fast variants pack their filter
# points) at odd sizes and batch 1, and layers the cache holds nothing for (stride 2, 1x1, few
# channels, groups).
CASES = [
    ((1, 32, 14, 14), (64, 32, 3, 3), 1, 1, 1),
    ((1, 9, 7, 5), (17, 9, 3, 3), 1, 1, 1),
    ((2, 33, 13, 11), (9, 33, 3, 3), 1, 0, 1),
    ((1, 12, 6, 10), (20, 12, 3, 3), 1, 2, 1),
    ((3, 8, 3, 3), (8, 8, 3, 3), 1, 0, 1),
    ((1, 9, 11, 7), (12, 9, 3, 3), 2, 1, 1),
    ((1, 17, 5, 7), (13, 17, 1, 1), 1, 0, 1),
    ((1, 3, 9, 9), (5, 3, 3, 3), 1, 1, 1),
    ((1, 16, 9, 7), (16, 8, 3, 3), 1, 1, 2),
]
IDS = [f"{x}-{w}-s{s}-p{p}-g{g}" for x, w, s, p, g in CASES]


def _forward(core, x, w, b, stride, pad, groups, cache=None):
    return core.conv2d_forward(x, w, b, stride, pad, 1, groups, cache)


@pytest.mark.parametrize(("xs", "ws", "stride", "pad", "groups"), CASES, ids=IDS)
def test_cached_calls_match_uncached_and_oracle(core, rng, xs, ws, stride, pad, groups) -> None:
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    cache = _core.WeightCache()
    want = _forward(core, x, w, b, stride, pad, groups)
    length = ws[1] * ws[2] * ws[3]
    np.testing.assert_allclose(
        want,
        ref.conv2d(x, w, b, stride=stride, padding=pad, groups=groups),
        rtol=1e-4,
        atol=1e-5 * length**0.5,
    )
    for _ in range(3):  # the first call packs, the others reuse
        np.testing.assert_array_equal(_forward(core, x, w, b, stride, pad, groups, cache), want)
    # One element changed in place: the next call must see it.
    w[-1, -1, -1, -1] += 0.5
    want = _forward(core, x, w, b, stride, pad, groups)
    np.testing.assert_array_equal(_forward(core, x, w, b, stride, pad, groups, cache), want)


def test_one_cache_across_shapes_and_variants(rng) -> None:
    """A cache handed different weight shapes, strides or variants repacks for each."""
    cache = _core.WeightCache()
    x = rng.standard_normal((1, 16, 9, 9)).astype(np.float32)
    for core in (*_core._variants.values(), *_core._variants.values()):
        for ws, stride in (((8, 16, 3, 3), 1), ((24, 16, 3, 3), 1), ((24, 16, 3, 3), 2)):
            w = rng.standard_normal(ws).astype(np.float32)
            want = _forward(core, x, w, None, stride, 1, 1)
            np.testing.assert_array_equal(_forward(core, x, w, None, stride, 1, 1, cache), want)


def test_bitwise_compare_sees_sign_of_zero_and_nan(rng) -> None:
    """-0.0 == 0.0 and NaN payloads: equal as floats or not, a changed bit pattern is repacked
    (the packed form is then made from exactly the bits the call was given)."""
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    cache = _core.WeightCache()
    for value in (0.0, -0.0, np.inf, np.nan, 1.0):
        w[0, 0, 1, 1] = value
        want = _core.conv2d_forward(x, w, None, 1, 1, 1, 1)
        got = _core.conv2d_forward(x, w, None, 1, 1, 1, 1, cache)
        np.testing.assert_array_equal(got, want)


def _net(rng):
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1, rng=rng), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1, rng=rng)
    )


def _uncached(net, x):
    """The net's eval forward computed without any cache."""
    for m in net:
        if isinstance(m, nn.Conv2d):
            x = fastcnn.functional.conv2d(x, m.weight.data, m.bias.data, padding=1)
        else:
            x = m(x)
    return x


def test_eval_layers_follow_every_kind_of_weight_change(rng) -> None:
    net = _net(rng).eval()
    x = rng.standard_normal((1, 8, 11, 9)).astype(np.float32)

    def check():
        np.testing.assert_array_equal(net(x), _uncached(net, x))

    check()
    check()
    net[0].weight.data[3] *= -1.0  # a user writing into the weight array
    check()
    net[2].weight.data[...] = rng.standard_normal(net[2].weight.data.shape)
    check()
    other = _net(rng)
    net.load_state_dict(other.state_dict())  # copies into the same arrays
    check()
    np.testing.assert_array_equal(net(x), _uncached(other.eval(), x))
    net[0].weight = fastcnn.Parameter(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))
    check()
    # Optimizer steps update the weights in place between eval-mode calls.
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        net.train()
        y = net(x)
        net.backward(np.ones_like(y))
        opt.step()
        opt.zero_grad()
        net.eval()
        check()


def test_copies_and_fused_models_keep_their_own_caches(rng) -> None:
    net = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1, rng=rng), nn.BatchNorm2d(16), nn.ReLU()
    ).eval()
    net[1].running_mean[...] = rng.standard_normal(16)
    x = rng.standard_normal((1, 8, 7, 7)).astype(np.float32)
    y = net(x)
    fused = nn.fuse_conv_bn(net)
    twin = copy.deepcopy(net)
    assert fused[0]._weight_cache is not net[0]._weight_cache
    assert twin[0]._weight_cache is not net[0]._weight_cache
    np.testing.assert_allclose(fused(x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(twin(x), y)
    twin[0].weight.data += 1.0  # the copy's own weights and cache; the original is unchanged
    np.testing.assert_array_equal(net(x), y)
    assert isinstance(pickle.loads(pickle.dumps(net[0]._weight_cache)), _core.WeightCache)


def test_threads_sharing_one_layer(rng) -> None:
    """Calls on one layer from several Python threads (one uses the cache, the others pack their
    own while it is held) all give the serial result."""
    conv = nn.Conv2d(16, 24, 3, padding=1, rng=rng).eval()
    xs = [rng.standard_normal((1, 16, 10, 12)).astype(np.float32) for _ in range(4)]
    want = [_core.conv2d_forward(x, conv.weight.data, conv.bias.data, 1, 1, 1, 1) for x in xs]
    results = [[] for _ in xs]

    def worker(i):
        for _ in range(20):
            results[i].append(conv(xs[i]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, expected in zip(results, want):
        for y in got:
            np.testing.assert_array_equal(y, expected)


def test_bad_cache_argument(rng) -> None:
    x = rng.standard_normal((1, 8, 5, 5)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="weight_cache: expected a WeightCache or None, got str"):
        _core.conv2d_forward(x, w, None, 1, 1, 1, 1, "cache")
