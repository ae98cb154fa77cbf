"""BatchNorm1d: the module on (N, C) and (N, C, L) inputs against the float64 oracle (train and
eval, running statistics with every momentum, affine and track_running_stats off), its state,
and that nothing built for BatchNorm2d (fused pooling paths, conv folding) takes it. Its kernels are
BatchNorm2d's, which tests/test_batchnorm.py runs on ranks 2 and 3 in every compiled variant.
"""

from __future__ import annotations

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as oracle
from gradcheck import check_backward

import fastcnn
from fastcnn import nn

RTOL = 1e-4
ATOL = 1e-5
SHAPES = [(5, 7), (2, 3), (3, 33, 10), (17, 5, 1), (2, 1, 9)]


def _momentum_series(momentum, steps):
    """The momentum each training step uses (None: the cumulative average, 1 / step)."""
    return [1.0 / (k + 1) if momentum is None else momentum for k in range(steps)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize("affine", [True, False])
def test_train_then_eval_matches_oracle(rng, shape, momentum, affine):
    C = shape[1]
    bn = nn.BatchNorm1d(C, eps=1e-3, momentum=momentum, affine=affine)
    if affine:
        bn.weight.data[:] = rng.uniform(0.5, 1.5, C)
        bn.bias.data[:] = rng.standard_normal(C)
    w = bn.weight.data.copy() if affine else None
    b = bn.bias.data.copy() if affine else None
    rm, rv = np.zeros(C), np.ones(C)
    for step, m in enumerate(_momentum_series(momentum, 3)):
        x = (rng.standard_normal(shape) * 2 + step).astype(np.float32)
        y = bn(x)
        want, rm, rv, _, _ = oracle.batch_norm(x, rm, rv, w, b, True, m, 1e-3)
        np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(bn.running_mean, rm, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(bn.running_var, rv, rtol=RTOL, atol=ATOL)
        assert int(bn.num_batches_tracked) == step + 1
        dy = rng.standard_normal(shape).astype(np.float32)
        if affine:
            bn.zero_grad()
        dx = bn.backward(dy)
        want_dx, want_dw, want_db = oracle.batch_norm_backward(dy, x, w, 1e-3)
        np.testing.assert_allclose(dx, want_dx, rtol=RTOL, atol=ATOL)
        if affine:
            np.testing.assert_allclose(bn.weight.grad, want_dw, rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(bn.bias.grad, want_db, rtol=RTOL, atol=ATOL)
    bn.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(
        bn(x), oracle.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-3)[0], rtol=RTOL, atol=ATOL
    )
    dy = rng.standard_normal(shape).astype(np.float32)
    want_dx = oracle.batch_norm_eval_backward(dy, x, rm, rv, w, 1e-3)[0]
    np.testing.assert_allclose(bn.backward(dy), want_dx, rtol=RTOL, atol=ATOL)
    assert int(bn.num_batches_tracked) == 3  # eval leaves the statistics alone


def test_oracle_backward_by_finite_differences(rng):
    for shape in ((5, 3), (3, 2, 4)):
        x = rng.standard_normal(shape)
        w = rng.uniform(0.5, 1.5, shape[1])

        def forward(x, w=w):
            return oracle.batch_norm(x, None, None, w, None, True, 0.1, 1e-5)[0]

        check_backward(forward, lambda g, x, w=w: oracle.batch_norm_backward(g, x, w, 1e-5)[0], [x])


def test_without_running_stats_uses_batch_stats_in_eval(rng):
    bn = nn.BatchNorm1d(4, track_running_stats=False).eval()
    assert bn.running_mean is None and bn.num_batches_tracked is None
    x = rng.standard_normal((6, 4)).astype(np.float32)
    want = oracle.batch_norm(x, None, None, np.ones(4), np.zeros(4), True, 0.1, 1e-5)[0]
    np.testing.assert_allclose(bn(x), want, rtol=RTOL, atol=ATOL)
    assert list(bn.state_dict()) == ["weight", "bias"]


def test_state_dict_and_checkpoint(rng, tmp_path):
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh())
    net(rng.standard_normal((4, 3)))
    keys = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"]
    assert list(net.state_dict()) == keys + ["1.num_batches_tracked"]
    fastcnn.save(net, tmp_path / "bn1d.npz")
    back = fastcnn.load(tmp_path / "bn1d.npz")
    assert type(back[1]) is nn.BatchNorm1d and back[1].config() == net[1].config()
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(back.eval()(x), net.eval()(x))
    rows = net.summary((2, 3), print_fn=lambda *_: None)
    assert [r[1:] for r in rows] == [
        ("Linear", (2, 5), 20),
        ("BatchNorm1d", (2, 5), 10),
        ("Tanh", (2, 5), 0),
    ]


def test_not_taken_for_batch_norm_2d(rng):
    # Conv folding and the Sequential fusions are BatchNorm2d's: a BatchNorm1d is none of them.
    assert not isinstance(nn.BatchNorm1d(3), nn.BatchNorm2d)
    conv = nn.Conv2d(2, 3, 1)
    model = nn.Sequential(conv, nn.Flatten(2), nn.BatchNorm1d(3))
    fused = nn.fuse_conv_bn(model)
    assert [type(m) for m in fused] == [nn.Conv2d, nn.Flatten, nn.BatchNorm1d]
    seq = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten())
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    y = seq(x)
    want = np.maximum(oracle.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)[0], 0)
    np.testing.assert_allclose(y, want.reshape(4, 18), rtol=RTOL, atol=ATOL)
    assert seq.backward(np.ones_like(y)).shape == x.shape


def test_bad_input(rng):
    bn = nn.BatchNorm1d(3)
    with pytest.raises(
        ValueError,
        match=r"input: expected a 2-D or 3-D array \(N, C\) or \(N, C, L\), "
        r"got shape \(2, 3, 4, 4\)",
    ):
        bn(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(
        ValueError,
        match=r"input: expected a 2-D or 3-D array \(N, C\) or \(N, C, L\), got shape \(3,\)",
    ):
        bn(np.zeros(3, np.float32))
    with pytest.raises(
        ValueError, match=r"input: expected 3 channels \(N, 3\) or \(N, 3, L\), got shape \(2, 4\)"
    ):
        bn(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.zeros((1, 3), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.BatchNorm1d(3).backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm1d(0)
    with pytest.raises(
        ValueError, match=r"input: expected a 4-D array \(N, C, H, W\), got shape \(2, 3, 4\)"
    ):
        nn.BatchNorm2d(3)(np.zeros((2, 3, 4), np.float32))
