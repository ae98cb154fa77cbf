"""Frozen parameters (requires_grad=False): layers skip their gradients, Sequential stops its
backward below the lowest trainable module, optimizers skip them while their gradient is None
(and, as torch's, step on one they still hold), state_dict ignores the flag; fine-tuning a head
on a frozen feature extractor follows torch.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import fastcnn
from fastcnn import nn, optim
from fastcnn.parameter import Parameter

# --- the flag ------------------------------------------------------------------------------------


def test_parameter_requires_grad_defaults_to_true_and_is_settable():
    p = Parameter(np.ones(3))
    assert p.requires_grad is True
    assert Parameter(np.ones(3), requires_grad=False).requires_grad is False
    p.requires_grad = False
    assert p.requires_grad is False and repr(p) == "Parameter(shape=(3,), requires_grad=False)"
    assert p.requires_grad_() is p and p.requires_grad is True
    p.requires_grad = np.bool_(False)
    assert p.requires_grad is False and type(p.requires_grad) is bool


@pytest.mark.parametrize("bad", [1, 0, "yes", None, np.array([True])])
def test_requires_grad_refuses_a_non_bool(bad):
    p = Parameter(np.ones(3))
    with pytest.raises(TypeError, match="requires_grad: expected a bool"):
        p.requires_grad = bad
    with pytest.raises(TypeError, match="requires_grad: expected a bool"):
        p.requires_grad_(bad)
    with pytest.raises(TypeError, match="requires_grad: expected a bool"):
        Parameter(np.ones(3), requires_grad=bad)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(TypeError, match="requires_grad: expected a bool"):
        net.requires_grad_(bad)
    assert p.requires_grad and all(q.requires_grad for q in net.parameters())


def test_module_requires_grad_sets_every_parameter_and_returns_self():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert net[0].requires_grad_(False) is net[0]
    assert [p.requires_grad for p in net.parameters()] == [False, False, True, True, True, True]
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())


def test_state_dict_and_save_ignore_the_flag(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    trainable = net.state_dict()
    net[0].requires_grad_(False)
    frozen = net.state_dict()
    assert list(frozen) == list(trainable)
    for key in frozen:
        np.testing.assert_array_equal(frozen[key], trainable[key])
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    other.load_state_dict(frozen)
    assert all(p.requires_grad for p in other.parameters())  # load copies values only
    net.load_state_dict(trainable)
    assert not net[0].weight.requires_grad  # ... into the parameters as they are
    fastcnn.save(net, tmp_path / "net.npz")
    loaded = fastcnn.load(tmp_path / "net.npz")
    for key, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value, frozen[key])
    assert all(p.requires_grad for p in loaded.parameters())  # as torch.load of a state_dict


def test_copies_and_fusion_keep_the_flag():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1, bias=False))
    net.append(nn.BatchNorm2d(2))
    net[0].requires_grad_(False)
    net[2].requires_grad_(False)
    assert [p.requires_grad for p in copy.deepcopy(net).parameters()] == [
        False, False, True, True, False, True, True
    ]  # fmt: skip
    fused = nn.fuse_conv_bn(net)
    assert [p.requires_grad for p in fused.parameters()] == [False, False, False, False]
    net[2].weight.requires_grad = True
    assert all(p.requires_grad for p in nn.fuse_conv_bn(net)[2].parameters())


# --- layers --------------------------------------------------------------------------------------


def layer_cases():
    return [
        ("Conv2d", lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 5, 5)),
        ("Linear", lambda: nn.Linear(6, 5), (4, 6)),
        ("BatchNorm2d", lambda: nn.BatchNorm2d(3), (4, 3, 2, 2)),
        ("BatchNorm1d", lambda: nn.BatchNorm1d(3), (5, 3)),
    ]


@pytest.mark.parametrize("frozen", [("weight",), ("bias",), ("weight", "bias")])
@pytest.mark.parametrize(("name", "make", "shape"), layer_cases())
def test_a_layer_leaves_frozen_gradients_alone(rng, name, make, shape, frozen):
    layer = make()
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(layer(x).shape).astype(np.float32)
    dx_all = layer.backward(dy)
    grads = {k: p.grad.copy() for k, p in layer.named_parameters()}
    layer.zero_grad()
    for k in frozen:
        getattr(layer, k).requires_grad = False
    layer(x)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dx_all)  # the input gradient is unchanged
    for k, p in layer.named_parameters():
        if k in frozen:
            assert p.grad_is_none and not p.grad.any()  # torch's None
        else:
            np.testing.assert_array_equal(p.grad, grads[k])
            assert not p.grad_is_none
    layer(x)
    assert layer.backward(dy, input_grad=False) is None


@pytest.mark.parametrize(
    ("make", "shape", "kernel"),
    [
        (lambda: nn.Conv2d(3, 4, 3), (2, 3, 5, 5), "conv2d_backward_weight"),
        (lambda: nn.Linear(6, 5), (4, 6), "linear_backward_weight"),
    ],
)
def test_conv_and_linear_ask_only_for_the_gradients_they_need(
    rng, monkeypatch, make, shape, kernel
):
    layer = make()
    calls = []
    real = getattr(fastcnn._core, kernel)

    def spy(*args):
        calls.append(args[-2:])  # (need_weight, need_bias)
        return real(*args)

    monkeypatch.setattr(fastcnn._core, kernel, spy)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = np.ones_like(layer(x))
    layer.backward(dy)
    layer.zero_grad()
    layer.weight.requires_grad = False
    layer.backward(dy)
    layer.bias.requires_grad = False
    dx = layer.backward(dy)
    assert calls == [(True, True), (False, True)]  # nothing at all for a frozen layer
    assert dx is not None and dx.shape == x.shape
    assert layer.weight.grad_is_none and not layer.weight.grad.any()


# --- Sequential ----------------------------------------------------------------------------------


def small_net(seed: int = 0) -> nn.Sequential:
    fastcnn.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 5),
    )


def test_sequential_backward_stops_below_the_lowest_trainable_module(rng, monkeypatch):
    net = small_net()
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    net(x)
    net.backward(dy, input_grad=False)
    want = {k: p.grad.copy() for k, p in net.named_parameters()}
    net.zero_grad()
    net[:4].requires_grad_(False)  # the first block: conv, batch norm, ReLU, pooling
    ran = []
    for i, m in enumerate(net):
        monkeypatch.setattr(m, "backward", _recording(m.backward, i, ran))
    net(x)
    assert net.backward(dy, input_grad=False) is None
    assert ran == [(7, True), (6, True), (5, True), (4, False)]  # nothing below the second conv
    for k, p in net.named_parameters():
        if k.startswith(("0.", "1.")):
            assert p.grad_is_none and not p.grad.any()
        else:
            np.testing.assert_array_equal(p.grad, want[k])
    # asked for the input gradient, it runs every module, as before
    ran.clear()
    net(x)
    assert net.backward(dy).shape == x.shape
    # (1, 2, 3: batch norm, pooling and ReLU run one fused backward, not their own)
    assert ran == [(7, True), (6, True), (5, True), (4, True), (0, True)]
    # nothing trainable: nothing runs
    net.requires_grad_(False)
    ran.clear()
    net(x)
    assert net.backward(dy, input_grad=False) is None and ran == []


def _recording(backward, index, ran):
    def recorded(dy, input_grad=True):
        ran.append((index, input_grad))
        return backward(dy, input_grad=input_grad)

    return recorded


def test_a_frozen_residual_body_is_skipped(rng):
    fastcnn.manual_seed(1)
    body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net = nn.Sequential(nn.Residual(body), nn.Linear(4, 2))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    net(x)
    dx = net.backward(np.ones((3, 2), np.float32))
    body.requires_grad_(False)
    net.zero_grad()
    net(x)
    assert net.backward(np.ones((3, 2), np.float32), input_grad=False) is None
    assert all(p.grad_is_none for p in body.parameters())
    assert not net[1].weight.grad_is_none
    net(x)
    np.testing.assert_array_equal(net.backward(np.ones((3, 2), np.float32)), dx)


# --- optimizers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}), ("Adam", {}), ("RMSprop", {})],
)
def test_optimizers_skip_a_frozen_parameter_without_gradient(name, kwargs):
    p, q = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = getattr(optim, name)([p, q], **kwargs)
    p.requires_grad = False  # backward computes no gradient for it: it stays None
    q.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(p.data, 1.0)
    assert p not in opt.state and (q.data < 1.0).all()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}), ("Adam", {}), ("RMSprop", {})],
)
@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_parameter_frozen_mid_run_steps_as_torch(name, kwargs, set_to_none):
    """torch's step looks at the gradient, not requires_grad: a parameter frozen between
    backward and step steps on that gradient, and one frozen after zero_grad(set_to_none=False)
    keeps its zero gradient, so momentum, weight decay and Adam's moments still move it (after
    zero_grad() with set_to_none=True it has none and stays). fastcnn skipped every frozen one."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4410)
    data = rng.standard_normal(3).astype(np.float32)
    p, tp = Parameter(data), torch.tensor(data, requires_grad=True)
    opt, topt = getattr(optim, name)([p], **kwargs), getattr(torch.optim, name)([tp], **kwargs)
    for step in range(6):
        if step < 2:  # trainable: backward reaches it
            g = rng.standard_normal(3).astype(np.float32)
            p.grad = g.copy()
            tp.grad = torch.from_numpy(g)
        if step == 1:  # frozen between backward and step
            p.requires_grad_(False)
            tp.requires_grad_(False)
        opt.step()
        topt.step()
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
        opt.zero_grad(set_to_none=set_to_none)
        topt.zero_grad(set_to_none=set_to_none)
    moved = not np.array_equal(p.data, data)
    assert moved


# --- fine-tuning against torch -------------------------------------------------------------------


def test_fine_tuning_a_head_matches_torch(rng):
    torch = pytest.importorskip("torch")
    net = small_net(3)
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 3 * 3, 5),
    )
    tnet.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    pretrained = net.state_dict()
    for model in (net, tnet):
        # the first block and the second conv's weight freeze; that conv's bias still trains
        model[:5].requires_grad_(False)
        model[4].bias.requires_grad_(True)
    # all parameters go to the optimizer: the frozen ones get no gradient, so neither steps them
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    losses = []
    for _ in range(6):
        x = rng.standard_normal((8, 2, 6, 6)).astype(np.float32)
        labels = rng.integers(0, 5, 8)
        loss = loss_fn(net(x), labels)
        tloss = tloss_fn(tnet(torch.from_numpy(x)), torch.from_numpy(labels))
        assert loss == pytest.approx(tloss.item(), rel=1e-5, abs=1e-6)
        losses.append(loss)
        opt.zero_grad()
        topt.zero_grad()
        net.backward(loss_fn.backward(), input_grad=False)
        tloss.backward()
        for p, tp in zip(net.parameters(), tnet.parameters()):
            assert p.grad_is_none == (tp.grad is None)
            if tp.grad is not None:
                np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6)
        opt.step()
        topt.step()
    state, tstate = net.state_dict(), tnet.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "4.weight"):
        np.testing.assert_array_equal(state[key], pretrained[key])  # frozen: untouched
    for key, value in tstate.items():  # the head, and the batch norm's running statistics
        np.testing.assert_allclose(state[key], value.numpy(), rtol=1e-4, atol=1e-6)
    assert losses[-1] < losses[0]
