"""Gradient clipping (fastcnn.nn.utils): the total norm and the scaled gradients against
torch.nn.utils, in place, with torch's edge cases (no gradients, non-finite norms), and bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn
from fastcnn import nn
from fastcnn.nn import utils
from fastcnn.parameter import Parameter

SHAPES = [(4, 3, 3, 3), (4,), (), (7, 5)]


def make_params(rng, scale: float = 1.0) -> list[Parameter]:
    params = [Parameter(rng.standard_normal(s)) for s in SHAPES]
    for p in params:
        p.grad = np.asarray(scale * rng.standard_normal(p.shape), np.float32)
    return params


def torch_twins(torch, params: list[Parameter]) -> list:
    twins = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    for t, p in zip(twins, params):
        t.grad = torch.from_numpy(p.grad.copy())
    return twins


def assert_grads_match(params: list[Parameter], twins: list) -> None:
    for p, t in zip(params, twins):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_reachable_as_in_torch():
    assert fastcnn.nn.utils.clip_grad_norm_ is utils.clip_grad_norm_
    assert {"clip_grad_norm_", "clip_grad_value_"} <= set(utils.__all__)


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone
def test_clip_grad_norm_matches_torch(rng, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params = make_params(rng)
    twins = torch_twins(torch, params)
    before = [p.grad.copy() for p in params]
    buffers = [p.grad for p in params]
    total = utils.clip_grad_norm_(params, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(twins, max_norm, norm_type)
    assert type(total) is float
    assert total == pytest.approx(want.item(), rel=1e-6)
    assert_grads_match(params, twins)
    assert all(p.grad is b for p, b in zip(params, buffers))  # in place
    if max_norm > total:  # unclipped: not a bit changes
        for p, b in zip(params, before):
            np.testing.assert_array_equal(p.grad, b)
    else:
        clipped = utils.get_total_norm([p.grad for p in params], norm_type)
        assert clipped == pytest.approx(max_norm, rel=1e-5)


def test_halves_match_torch(rng):
    torch = pytest.importorskip("torch")
    params = make_params(rng, scale=3.0)
    twins = torch_twins(torch, params)
    total = utils.get_total_norm([p.grad for p in params], 3.0)
    want = torch.nn.utils.get_total_norm([t.grad for t in twins], 3.0)
    assert total == pytest.approx(want.item(), rel=1e-6)
    assert utils.get_total_norm(params[0].grad) == pytest.approx(
        torch.nn.utils.get_total_norm(twins[0].grad).item(), rel=1e-6
    )
    utils.clip_grads_with_norm_(params, 2.0, total)
    torch.nn.utils.clip_grads_with_norm_(twins, 2.0, want)
    assert_grads_match(params, twins)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_takes_torchs_foreach_argument(rng, foreach):
    """Each function takes torch's foreach keyword (which of torch's loops runs) and gives the
    same result with any value; it raised TypeError, so torch code passing it did not run."""
    torch = pytest.importorskip("torch")
    params = make_params(rng, scale=3.0)
    twins = torch_twins(torch, params)
    total = utils.clip_grad_norm_(params, 1.0, 2.0, False, foreach)
    want = torch.nn.utils.clip_grad_norm_(twins, 1.0, 2.0, False, foreach=False)
    assert total == pytest.approx(want.item(), rel=1e-6)
    assert utils.get_total_norm([p.grad for p in params], foreach=foreach) == pytest.approx(
        torch.nn.utils.get_total_norm([t.grad for t in twins], foreach=False).item(), rel=1e-6
    )
    utils.clip_grads_with_norm_(params, 0.5, 1.0, foreach=foreach)
    torch.nn.utils.clip_grads_with_norm_(twins, 0.5, torch.tensor(1.0), foreach=False)
    utils.clip_grad_value_(params, 0.1, foreach=foreach)
    torch.nn.utils.clip_grad_value_(twins, 0.1, foreach=False)
    assert_grads_match(params, twins)
    with pytest.raises(TypeError, match="foreach"):
        utils.clip_grad_value_(params, 0.1, foreach="yes")


def test_takes_what_parameters_gives_and_a_single_parameter(rng):
    fastcnn.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    net(x)
    net.backward(np.full((5, 2), 10.0, np.float32), input_grad=False)
    total = utils.clip_grad_norm_(net.parameters(), 1.0)  # a generator, as in torch
    assert total > 1.0
    assert utils.get_total_norm([p.grad for p in net.parameters()]) == pytest.approx(1.0, rel=1e-5)
    p = net[0].weight
    utils.clip_grad_norm_(p, 0.01)
    assert utils.get_total_norm(p.grad) == pytest.approx(0.01, rel=1e-4)  # (the 1e-6 guard)


def test_no_gradients():
    assert utils.clip_grad_norm_([], 1.0) == 0.0
    assert utils.get_total_norm([]) == 0.0
    p = Parameter(np.ones(3))  # torch's None gradient: zeros, which change nothing
    assert utils.clip_grad_norm_([p], 1.0) == 0.0 and not p.grad.any()


@pytest.mark.parametrize("nan_norm", [False, True])
def test_a_gradient_torch_holds_as_none_is_left_alone_as_in_torch(nan_norm):
    """torch's clipping skips a parameter whose gradient is None: no scaling (not even by a NaN
    norm), and the optimizer then skips it too, with no weight decay or momentum. Scaling the
    zeros that stand for it here used to mark it as a gradient, so SGD decayed it."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    params = make_params(rng, scale=10.0)
    if nan_norm:
        params[0].grad[0, 0, 0, 0] = np.nan
    params[1].grad = None  # as after zero_grad(), with no backward reaching it
    twins = torch_twins(torch, params)
    twins[1].grad = None
    opt = fastcnn.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    topt = torch.optim.SGD(twins, lr=0.1, momentum=0.9, weight_decay=0.1)
    total = utils.clip_grad_norm_(params, 1.0)
    want = torch.nn.utils.clip_grad_norm_(twins, 1.0).item()
    assert total == pytest.approx(want, rel=1e-6, nan_ok=True)
    assert params[1].grad_is_none and not params[1].grad.any()
    opt.step()
    topt.step()
    np.testing.assert_array_equal(params[1].data, twins[1].detach().numpy())
    assert 1 not in opt.state_dict()["state"]


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, math.inf])
def test_the_norm_of_one_element_is_its_magnitude_as_in_torch(p):
    """torch's norm of a one-element tensor is |x|, exactly: its 2-norm of a 0-d gradient of 1e20
    is 1e20, where squaring it in float32 would overflow to inf (and error_if_nonfinite raise)."""
    torch = pytest.importorskip("torch")
    params = [Parameter(np.zeros(())), Parameter(np.zeros(1))]
    params[0].grad = np.array(-1e20, np.float32)
    params[1].grad = None
    twins = torch_twins(torch, params)
    twins[1].grad = None
    total = utils.clip_grad_norm_(params, 1.0, norm_type=p, error_if_nonfinite=True)
    want = torch.nn.utils.clip_grad_norm_(twins, 1.0, norm_type=p, error_if_nonfinite=True)
    assert total == want.item() == np.float32(1e20)
    assert_grads_match(params[:1], twins[:1])
    x = np.array([0.3], np.float32)
    assert utils.get_total_norm([x], p) == torch.nn.utils.get_total_norm([torch.from_numpy(x)], p)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_norm(bad):
    torch = pytest.importorskip("torch")
    params = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    for p in params:
        p.grad = np.array([1.0, bad, 2.0][: p.size], np.float32)
    twins = torch_twins(torch, params)
    with pytest.raises(RuntimeError, match="non-finite.*error_if_nonfinite"):
        utils.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(params[0].grad, twins[0].grad.numpy())  # nothing changed
    total = utils.clip_grad_norm_(params, 1.0)
    want = torch.nn.utils.clip_grad_norm_(twins, 1.0)
    np.testing.assert_array_equal(total, want.item())
    for p, t in zip(params, twins):  # NaN and zeros where torch has them
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


def test_clip_grad_value_matches_torch(rng):
    torch = pytest.importorskip("torch")
    params = make_params(rng, scale=2.0)
    params[1].grad[0] = np.nan
    twins = torch_twins(torch, params)
    assert utils.clip_grad_value_(params, 0.7) is None
    torch.nn.utils.clip_grad_value_(twins, 0.7)
    for p, t in zip(params, twins):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert np.nanmax(np.abs(params[0].grad)) == np.float32(0.7)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda ps: utils.clip_grad_norm_(ps, -1.0), ValueError, "max_norm"),
        (lambda ps: utils.clip_grad_norm_(ps, float("nan")), ValueError, "max_norm"),
        (lambda ps: utils.clip_grad_norm_(ps, "1.0"), TypeError, "max_norm"),
        (lambda ps: utils.clip_grad_norm_(ps, 1.0, 0), ValueError, "norm_type"),
        (lambda ps: utils.clip_grad_norm_(ps, 1.0, -2.0), ValueError, "norm_type"),
        (lambda ps: utils.clip_grad_norm_(ps, 1.0, "-inf"), ValueError, "norm_type"),
        (lambda ps: utils.clip_grad_norm_(ps, 1.0, "euclid"), ValueError, "norm_type"),
        (lambda ps: utils.clip_grad_norm_(ps, 1.0, float("nan")), ValueError, "norm_type"),
        (lambda ps: utils.clip_grad_norm_(ps, 1.0, True), TypeError, "norm_type"),
        (lambda ps: utils.clip_grad_norm_(ps[0].data, 1.0), TypeError, "parameters"),
        (lambda ps: utils.clip_grad_norm_([p.grad for p in ps], 1.0), TypeError, "parameters"),
        (lambda ps: utils.clip_grad_norm_(None, 1.0), TypeError, "parameters"),
        (lambda ps: utils.clip_grad_value_(ps, -0.5), ValueError, "clip_value"),
        (lambda ps: utils.clip_grad_value_(ps, None), TypeError, "clip_value"),
        (lambda ps: utils.clip_grad_value_(ps[0].data, 0.5), TypeError, "parameters"),
        (lambda ps: utils.get_total_norm([[1.0, 2.0]]), TypeError, r"tensors\[0\]"),
        (lambda ps: utils.get_total_norm([np.ones(2, np.int64)]), TypeError, "int64"),
        (lambda ps: utils.clip_grads_with_norm_(ps, 1.0, "big"), TypeError, "total_norm"),
    ],
)
def test_bad_arguments_raise_and_change_nothing(call, error, match):
    params = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    for p in params:
        p.grad[...] = 5.0
    with pytest.raises(error, match=match):
        call(params)
    for p in params:
        np.testing.assert_array_equal(p.grad, 5.0)
