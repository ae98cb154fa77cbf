"""Modules against torch.nn: same constructor defaults, parameter shapes, state_dict keys; weights
copied from a torch model give the same outputs and gradients, and back again."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import models, nn

torch = pytest.importorskip("torch", reason="PyTorch pins down the module conventions")

RTOL, ATOL = 1e-4, 1e-5
# Whole networks chain several float32 reductions (conv, batch norm, linear): errors add up.
NET_RTOL, NET_ATOL = 1e-3, 2e-4


def torch_twin(spec) -> torch.nn.Module:
    """The torch.nn module with the same architecture as a fastcnn module."""
    tnn = torch.nn
    if isinstance(spec, nn.Sequential):
        return tnn.Sequential(*[torch_twin(m) for m in spec])
    if isinstance(spec, nn.Residual):
        return TorchResidual(
            torch_twin(spec.body),
            torch_twin(spec.shortcut) if "shortcut" in spec._modules else None,
        )
    cfg = spec.config()
    table = {
        nn.Conv2d: lambda: tnn.Conv2d(
            cfg["in_channels"],
            cfg["out_channels"],
            tuple(cfg["kernel_size"]),
            tuple(cfg["stride"]),
            cfg["padding"] if isinstance(cfg["padding"], str) else tuple(cfg["padding"]),
            tuple(cfg["dilation"]),
            cfg["groups"],
            cfg["bias"],
        ),
        nn.Linear: lambda: tnn.Linear(cfg["in_features"], cfg["out_features"], cfg["bias"]),
        nn.ReLU: tnn.ReLU,
        nn.LeakyReLU: lambda: tnn.LeakyReLU(cfg["negative_slope"]),
        nn.MaxPool2d: lambda: tnn.MaxPool2d(**_tuples(cfg)),
        nn.AvgPool2d: lambda: tnn.AvgPool2d(**_tuples(cfg)),
        nn.AdaptiveAvgPool2d: lambda: tnn.AdaptiveAvgPool2d(**_tuples(cfg)),
        nn.BatchNorm2d: lambda: tnn.BatchNorm2d(**cfg),
        nn.Flatten: lambda: tnn.Flatten(**cfg),
        nn.Identity: tnn.Identity,
    }
    return table[type(spec)]()


def _tuples(cfg: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


class TorchResidual(torch.nn.Module):
    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (self.shortcut(x) if hasattr(self, "shortcut") else x)


def compare_with_torch(
    net, x: np.ndarray, classes: int, rtol=NET_RTOL, atol=NET_ATOL, train=True, rng=None
) -> None:
    tnet = torch_twin(net).double()
    # torch -> fastcnn: weights as plain arrays
    net.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    net.train(train)
    tnet.train(train)
    labels = rng.integers(0, classes, size=x.shape[0])
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out_t = tnet(xt)
    loss_t = torch.nn.functional.cross_entropy(out_t, torch.tensor(labels))
    loss_t.backward()

    loss_fn = nn.CrossEntropyLoss()
    out = net(x)
    loss = loss_fn(out, labels)
    net.zero_grad()
    dx = net.backward(loss_fn.backward())
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=rtol, atol=atol)
    assert loss == pytest.approx(loss_t.item(), rel=rtol, abs=atol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(tnet.named_parameters())
    names = [n for n, _ in net.named_parameters()]
    assert names == list(tparams)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(
            p.grad, tparams[name].grad.numpy(), rtol=rtol, atol=atol, err_msg=name
        )
    # running statistics after the step, and fastcnn -> torch
    sd = net.state_dict()
    for key, value in tnet.state_dict().items():
        np.testing.assert_allclose(sd[key], value.numpy(), rtol=rtol, atol=atol, err_msg=key)
    tnet2 = torch_twin(net)
    tnet2.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("train", [True, False])
def test_models_match_torch(name, train, rng):
    net = models.build(name)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    compare_with_torch(net, x, 10, train=train, rng=rng)


def test_every_layer_kind_matches_torch(rng):
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(8, 8, 3, padding="same", groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.Residual(nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU()), None),
        nn.MaxPool2d((2, 3), stride=(1, 2), dilation=1),
        nn.Conv2d(8, 5, 2, dilation=2, padding=2),
        nn.AdaptiveAvgPool2d((3, 2)),
        nn.Flatten(),
        nn.Linear(30, 7),
        nn.Identity(),
    )
    x = rng.standard_normal((2, 3, 19, 17)).astype(np.float32)
    compare_with_torch(net, x, 7, rng=rng)


def test_default_shapes_and_keys_match_torch():
    net = models.fmnist_bn()
    tnet = torch_twin(net)
    assert list(net.state_dict()) == list(tnet.state_dict())
    for (k, v), (_, tv) in zip(net.state_dict().items(), tnet.state_dict().items()):
        assert v.shape == tuple(tv.shape), k
        assert v.dtype == (np.int64 if tv.dtype == torch.int64 else np.float32), k


FACTORY_LAYERS = {
    "Conv2d": (nn.Conv2d, (3, 4, 3)),
    "Linear": (nn.Linear, (3, 4)),
    "BatchNorm2d": (nn.BatchNorm2d, (3,)),
    "BatchNorm1d": (nn.BatchNorm1d, (3,)),
}


@pytest.mark.parametrize("name", list(FACTORY_LAYERS))
def test_torch_factory_keywords_are_taken_for_cpu_float32(name):
    """torch's device= and dtype= were refused with a TypeError, so code written for torch
    (`nn.Linear(3, 4, device="cpu")`) did not run. What fastcnn has (CPU, float32) is taken, in
    torch's parameter order; anything else is refused by name."""
    import inspect

    cls, args = FACTORY_LAYERS[name]
    ours = list(inspect.signature(cls.__init__).parameters)
    theirs = list(inspect.signature(getattr(torch.nn, name).__init__).parameters)
    assert ours[: len(theirs)] == theirs
    keys = list(cls(*args).state_dict())
    taken = [
        {"device": "cpu"},
        {"device": torch.device("cpu")},
        {"device": "cpu:0"},
        {"dtype": torch.float32},
        {"dtype": np.float32},
        {"dtype": "float32"},
        {"device": None, "dtype": None},
    ]
    for kw in taken:
        m = cls(*args, **kw)
        assert list(m.state_dict()) == keys
        assert all(v.dtype != np.float64 for v in m.state_dict().values())
    refused = [
        ({"device": "cuda"}, "device"),
        ({"device": torch.device("meta")}, "device"),
        ({"dtype": torch.float64}, "dtype"),
        ({"dtype": np.float16}, "dtype"),
        ({"dtype": "not a dtype"}, "dtype"),
    ]
    for kw, named in refused:
        with pytest.raises(ValueError, match=named):
            cls(*args, **kw)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_without_bias_matches_torch(train, rng, tmp_path):
    """torch 2.13's BatchNorm2d(..., bias=False): a learned scale without a shift (no "bias" in
    the state_dict), here also through Sequential's fused batch norm + pooling + ReLU."""
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6, bias=False),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3),
        nn.BatchNorm2d(4, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 4, 5),
    )
    assert "1.bias" not in net.state_dict() and "1.weight" in net.state_dict()
    x = rng.standard_normal((3, 3, 11, 13)).astype(np.float32)
    compare_with_torch(net, x, 5, train=train, rng=rng)
    fc.save(net, str(tmp_path / "m.npz"))
    again = fc.load(str(tmp_path / "m.npz"))
    assert again[1].bias is None and "bias=False" in repr(again[1])


def test_initialization_follows_torch_bounds_and_seed():
    fc.manual_seed(3)
    a = nn.Conv2d(4, 6, 3)
    fc.manual_seed(3)
    b = nn.Conv2d(4, 6, 3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    bound = 1 / np.sqrt(4 * 9)
    assert np.abs(a.weight.data).max() <= bound and np.abs(a.weight.data).max() > 0.8 * bound
    assert np.abs(a.bias.data).max() <= bound
    c = nn.Linear(50, 3, rng=np.random.default_rng(1))
    d = nn.Linear(50, 3, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(c.weight.data, d.weight.data)
    # uniform: the sample std is close to bound / sqrt(3)
    big = nn.Linear(400, 300)
    assert big.weight.data.std() == pytest.approx(1 / np.sqrt(400) / np.sqrt(3), rel=0.02)


def test_batchnorm_cumulative_momentum_and_eval(rng):
    bn = nn.BatchNorm2d(3, momentum=None)
    tbn = torch.nn.BatchNorm2d(3, momentum=None)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1
        bn(x)
        tbn(torch.from_numpy(x))
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=RTOL, atol=ATOL)
    assert int(bn.num_batches_tracked) == 3
    bn.eval()
    tbn.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(
        bn(x), tbn(torch.from_numpy(x)).detach().numpy(), rtol=RTOL, atol=ATOL
    )


def test_dropout_train_and_eval(rng):
    fc.manual_seed(0)
    d = nn.Dropout(0.25)
    x = rng.standard_normal((64, 50)).astype(np.float32) + 3
    y = d(x)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(d.backward(dy), np.where(kept, dy / 0.75, 0), rtol=1e-6)
    d.eval()
    np.testing.assert_array_equal(d(x), x)


def test_state_dict_round_trip_and_errors(rng):
    a = models.lenet5()
    b = models.lenet5()
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    bad = a.state_dict()
    bad["0.weight"] = bad["0.weight"][:3]
    with pytest.raises(ValueError, match="0.weight"):
        b.load_state_dict(bad)
    missing = a.state_dict()
    del missing["0.bias"]
    with pytest.raises(KeyError, match="0.bias"):
        b.load_state_dict(missing)


def test_summary_lists_layers(rng):
    lines = []
    rows = models.fmnist_bn().summary((1, 1, 28, 28), print_fn=lines.append)
    assert rows[0][2] == (1, 32, 28, 28)
    assert rows[-1][2] == (1, 10)
    assert sum(r[3] for r in rows) == sum(p.data.size for p in models.fmnist_bn().parameters())
    assert "total parameters" in lines[-1] and "frozen" not in lines[-1]
    net = models.fmnist_bn()
    net[-1].requires_grad_(False)
    net.summary((1, 1, 28, 28), print_fn=lines.append)
    head = net[-1].weight.size + net[-1].bias.size
    total = sum(p.data.size for p in net.parameters())
    assert lines[-1] == f"total parameters: {total:,} ({total - head:,} trainable, {head:,} frozen)"


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Conv2d(1, 2, 3).backward(np.ones((1, 2, 3, 3), np.float32))


def test_repr_names_layers():
    text = repr(models.lenet5())
    assert "Conv2d(in_channels=1, out_channels=6" in text and "(11): Linear" in text


@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_softmax_module_matches_torch(dim, rng):
    x = rng.standard_normal((4, 7)).astype(np.float32) * 3
    dy = rng.standard_normal((4, 7)).astype(np.float32)
    layer = nn.Softmax(dim)
    xt = torch.tensor(x, requires_grad=True)
    tdim = 1 if dim is None else dim  # torch's legacy rule for 2-D input
    yt = torch.softmax(xt, tdim)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer(x), yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 2, 3)])
def test_cross_entropy_loss_matches_torch(reduction, shape, rng):
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    labels = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    loss_fn = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)
    lt = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(
        lt, torch.from_numpy(labels), reduction=reduction, label_smoothing=0.1
    )
    loss_t.backward()
    assert loss_fn(logits, labels) == pytest.approx(loss_t.item(), rel=RTOL, abs=ATOL)
    np.testing.assert_allclose(loss_fn.backward(), lt.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "pool",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=2, stride=1),
        dict(kernel_size=(3, 2), stride=(2, 1), dilation=(1, 2)),
    ],
)
def test_relu_before_max_pool_runs_after_it_with_identical_results(pool, rng):
    """Sequential runs ReLU -> MaxPool2d as MaxPool2d -> ReLU (they commute exactly): outputs and
    every gradient equal running the children one by one in the written order."""
    x = rng.standard_normal((3, 4, 11, 9)).astype(np.float32)
    x[0, 0, :4, :4] = -np.abs(x[0, 0, :4, :4])  # windows with no positive value
    net = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(**pool), nn.ReLU())
    y = net(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = net.backward(dy)
    grads = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()

    h = x
    for m in net:
        h = m(h)
    g = dy
    for m in reversed(list(net)):
        g = m.backward(g)
    np.testing.assert_array_equal(y, h)
    np.testing.assert_array_equal(dx, g)
    for want, p in zip(grads, net.parameters()):
        np.testing.assert_array_equal(want, p.grad)


def test_sequential_backward_follows_the_order_forward_ran(rng):
    """A child replaced between forward and backward does not change which backward runs."""
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    y = net(x)
    pool = net._modules["1"]
    net._modules["1"] = nn.Flatten()
    dx = net.backward(np.ones_like(y))
    want = fc.functional.max_pool2d_backward(
        (y > 0).astype(np.float32), x, 2, indices=pool._saved[1]
    )
    np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize(
    "tail",
    [
        lambda: [nn.ReLU(), nn.MaxPool2d(2)],
        lambda: [nn.MaxPool2d(2), nn.ReLU()],
        lambda: [nn.MaxPool2d(2, stride=2)],
        lambda: [nn.MaxPool2d(2), nn.Flatten()],
        lambda: [nn.MaxPool2d(2, ceil_mode=True), nn.ReLU()],  # not fused: partial windows
    ],
)
@pytest.mark.parametrize(
    "bn_args", [dict(), dict(momentum=None), dict(track_running_stats=False), dict(affine=False)]
)
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_then_max_pool_fused_forward_equals_unfused(tail, bn_args, train, rng):
    """Sequential runs BatchNorm2d -> 2x2/2 MaxPool2d (-> ReLU) forward as one kernel: outputs,
    running stats, batch counts and every gradient equal running the modules one by one."""
    x = (rng.standard_normal((4, 3, 11, 10)) * 2 + 1).astype(np.float32)

    def build():
        fc.manual_seed(1)
        bn = nn.BatchNorm2d(3, **bn_args)
        if bn.weight is not None:
            bn.weight.data[:] = np.linspace(-1.5, 2, 3)  # a negative scale flips the maxima
        if bn.running_mean is not None:
            bn.running_mean[:], bn.running_var[:] = [0.5, -1, 2], [0.5, 2, 1]
        net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), bn, *tail())
        return net.train(train)

    fused, alone = build(), build()
    y = fused(x)
    h = x
    for m in alone:
        h = m(h)
    np.testing.assert_array_equal(y, h)
    for (name, a), b in zip(fused.state_dict().items(), alone.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = fused.backward(dy)
    g = dy
    for m in reversed(list(alone)):
        g = m.backward(g)
    np.testing.assert_allclose(dx, g, rtol=1e-4, atol=1e-5 * np.max(np.abs(g)))
    for a, b in zip(fused.parameters(), alone.parameters()):
        scale = max(np.max(np.abs(b.grad)), 1)
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5 * scale)


def test_batchnorm_then_max_pool_fused_forward_across_batch_sizes(rng):
    """The pooling's saved stand-in input follows the batch size from call to call."""
    fused = nn.Sequential(nn.BatchNorm2d(3), nn.MaxPool2d(2), nn.ReLU())
    alone = nn.Sequential(nn.BatchNorm2d(3), nn.MaxPool2d(2), nn.ReLU())
    for n in (1, 3, 1):
        x = rng.standard_normal((n, 3, 6, 8)).astype(np.float32)
        y = fused(x)
        h = x
        for m in alone:
            h = m(h)
        np.testing.assert_array_equal(y, h)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        g = dy
        for m in reversed(list(alone)):
            g = m.backward(g)
        np.testing.assert_allclose(fused.backward(dy), g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 1, 12), (2, 3, 6, 1), (3, 3, 1, 1)])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_then_max_pool_fused_refuses_planes_the_window_does_not_fit(
    shape, relu, train, rng
):
    """Planes less than 2 high or wide: MaxPool2d(2) alone (and torch) refuse them; the fused
    forward returned an empty output instead."""
    x = rng.standard_normal(shape).astype(np.float32)
    pool = nn.MaxPool2d(2)
    with pytest.raises(ValueError, match="kernel_size"):
        pool(x)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.MaxPool2d(2), *([nn.ReLU()] if relu else []))
    with pytest.raises(ValueError, match=r"x: the 2x2 windows .* do not fit"):
        net.train(train)(x)
    with pytest.raises(ValueError, match=r"x: the 2x2 windows .* do not fit"):
        fc.functional.batch_norm_max_pool2d(x, np.zeros(3, np.float32), np.ones(3, np.float32))


@pytest.mark.parametrize("relu", [True, False])
def test_eval_fused_forward_leaves_the_pooling_its_indices(relu, rng):
    """An eval-mode BatchNorm2d -> MaxPool2d(2) (-> ReLU) forward skips the argmax indices; the
    pooling's backward, run alone afterwards, makes them and equals the unfused modules'."""
    x = (rng.standard_normal((2, 3, 8, 7)) * 2 + 1).astype(np.float32)

    def build():
        bn = nn.BatchNorm2d(3)
        bn.weight.data[:] = [-1.5, 0.5, 2]  # a negative scale flips the maxima
        bn.running_mean[:], bn.running_var[:] = [0.5, -1, 2], [0.5, 2, 1]
        return nn.Sequential(bn, nn.MaxPool2d(2), *([nn.ReLU()] if relu else [])).eval()

    fused, alone = build(), build()
    y = fused(x)
    h = x
    for m in alone:
        h = m(h)
    np.testing.assert_array_equal(y, h)
    assert not isinstance(fused[1]._saved[1], np.ndarray)  # not made in the forward
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(fused[1].backward(dy), alone[1].backward(dy))
    np.testing.assert_array_equal(fused[1].saved_indices(), alone[1].saved_indices())


def test_summary_sees_each_layer_of_a_fused_pair():
    """summary() records each layer's forward, so the fused batch norm + pooling runs unfused."""
    rows = models.fmnist_bn().summary((2, 1, 28, 28), print_fn=lambda *a: None)
    shapes = {(name, kind): shape for name, kind, shape, _ in rows}
    assert len(rows) == 12
    assert shapes[("1", "BatchNorm2d")] == (2, 32, 28, 28)
    assert shapes[("3", "MaxPool2d")] == shapes[("2", "ReLU")] == (2, 32, 14, 14)


@pytest.mark.parametrize("train", [True, False])
def test_sequential_max_pool_then_relu_in_one_pass(train, rng):
    """MaxPool2d -> ReLU (placed so, or moved so) runs as one kernel: outputs and gradients equal
    the modules run one by one, bit for bit, with zeros, -0.0 and NaNs in the input."""
    x = rng.integers(-2, 3, (2, 3, 8, 10)).astype(np.float32)
    x[0, 0, :2, :4] = np.nan
    x[1, 2, 2:4] = -0.0
    for mods in ((nn.MaxPool2d(2), nn.ReLU()), (nn.ReLU(), nn.MaxPool2d(2)), (nn.MaxPool2d(2),)):
        net = nn.Sequential(*mods, nn.Flatten()).train(train)
        y = net(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = net.backward(dy)
        h = x
        for m in net._steps.order:  # the same modules, called one at a time
            h = m(h)
        g = dy
        for m in reversed(net._steps.order):
            g = m.backward(g)
        np.testing.assert_array_equal(y.view(np.uint32), h.view(np.uint32))
        np.testing.assert_array_equal(dx, g)


def test_sequential_run_order_follows_replaced_children(rng):
    """The run order (ReLU after a MaxPool2d that follows it) follows children replaced,
    appended or removed between calls."""
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    want = fc.functional.max_pool2d(fc.functional.relu(x), 2)
    np.testing.assert_array_equal(net(x), want)
    assert [type(m) for m in net._steps.order] == [nn.MaxPool2d, nn.ReLU]
    net._modules["1"] = nn.AvgPool2d(2)
    np.testing.assert_array_equal(net(x), fc.functional.avg_pool2d(fc.functional.relu(x), 2))
    assert [type(m) for m in net._steps.order] == [nn.ReLU, nn.AvgPool2d]
    setattr(net, "1", nn.MaxPool2d(2))
    net.append(nn.Flatten())
    np.testing.assert_array_equal(net(x), want.reshape(1, -1))
    assert [type(m) for m in net._steps.order] == [nn.MaxPool2d, nn.ReLU, nn.Flatten]
    del net._modules["2"]
    np.testing.assert_array_equal(net(x), want)


def test_sequential_steps_follow_layout_changes_after_a_call(rng):
    """Sequential keeps the steps it worked out between calls: pooling arguments, return_indices,
    a replaced forward, a child swapped in place or a folded copy all take effect at the next
    call, with the results of running the children one by one."""
    f = fc.functional
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    bn = nn.BatchNorm2d(3)
    bn.running_mean[:] = rng.standard_normal(3).astype(np.float32)
    bn.running_var[:] = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), bn, nn.ReLU(), nn.MaxPool2d(2)).eval()

    def one_by_one(h):
        for m in net:
            h = m(h)
        return h

    np.testing.assert_array_equal(net(x), one_by_one(x))
    assert len(net._steps.steps) == 2  # the conv, then batch norm + ReLU + pooling in one kernel
    net[3].kernel_size = 3  # 3x3 windows: no longer the fused batch norm + pooling
    y = net(x)
    assert y.shape == (2, 3, 4, 5) and len(net._steps.steps) == 3  # the stride stays 2
    np.testing.assert_array_equal(y, one_by_one(x))
    net[3].return_indices = True  # the pooling now returns its indices, and runs before no ReLU
    y, idx = net(x)
    want, want_idx = f.max_pool2d(f.relu(bn(net[0](x))), 3, 2, return_indices=True)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    net[3] = nn.AvgPool2d(2)
    np.testing.assert_array_equal(net(x), f.avg_pool2d(f.relu(bn(net[0](x))), 2))
    calls = []
    relu_forward = net[2].forward
    object.__setattr__(net[2], "forward", lambda h: calls.append(1) or relu_forward(h))
    nn.module.layout_changed()  # what summary() does after replacing forwards so
    net(x)
    assert calls == [1]
    del net[2].__dict__["forward"]
    nn.module.layout_changed()
    net[3] = nn.MaxPool2d(2)
    want = one_by_one(x)
    np.testing.assert_array_equal(net(x), want)
    folded = nn.fuse_conv_bn(net)  # a copy whose batch norm became an Identity
    assert type(folded[1]) is nn.Identity
    np.testing.assert_allclose(folded(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(net(x), want)
    net.train()
    np.testing.assert_array_equal(net(x), one_by_one(x))


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_then_max_pool_fused_backward_matches_unfused(train, rng):
    """Sequential runs BatchNorm2d -> (ReLU ->) MaxPool2d backward as one fused kernel: gradients
    equal the modules' own backward passes run one by one, up to float rounding."""
    x = (rng.standard_normal((4, 3, 10, 9)) * 2 + 1).astype(np.float32)
    bn = nn.BatchNorm2d(3)
    bn.weight.data[:] = rng.standard_normal(3)
    bn.running_mean[:] = rng.standard_normal(3)
    bn.running_var[:] = rng.uniform(0.5, 2, 3)
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), bn, nn.ReLU(), nn.MaxPool2d(2))
    net.train(train)
    y = net(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = net.backward(dy)
    grads = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()

    mods = list(net)
    if train:
        bn.running_mean[:], bn.running_var[:] = 0, 1  # forward updates them again below
    h = x
    for m in mods:
        h = m(h)
    g = dy
    for m in reversed(mods):
        g = m.backward(g)
    np.testing.assert_allclose(y, h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, g, rtol=1e-4, atol=1e-5 * np.max(np.abs(g)))
    # (the conv bias gradient is rounding noise around 0: a training-mode batch norm follows it)
    for want, p in zip(grads, net.parameters()):
        np.testing.assert_allclose(
            p.grad, want, rtol=1e-4, atol=1e-5 * max(np.max(np.abs(want)), 1)
        )


# --- attributes and the arguments a layer normalizes once ----------------------------------------


def test_changing_layer_arguments_after_construction_takes_effect(rng):
    """Layers normalize stride, padding, ... once and cache them; assigning one drops the cache."""
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    w, b = conv.weight.data, conv.bias.data
    assert conv(x).shape == (2, 4, 9, 9)
    conv.stride = 2
    conv.padding = (0, 2)
    np.testing.assert_array_equal(conv(x), fc.functional.conv2d(x, w, b, stride=2, padding=(0, 2)))
    conv.padding = "same"
    conv.stride = 1
    conv.dilation = 2
    np.testing.assert_array_equal(
        conv(x), fc.functional.conv2d(x, w, b, padding="same", dilation=2)
    )
    pool = nn.MaxPool2d(2)
    assert pool(x).shape == (2, 3, 4, 4)
    pool.kernel_size = 3  # the stride stays the 2 the constructor defaulted to, as in torch
    assert pool(x).shape == (2, 3, 4, 4)
    pool.stride = 1
    np.testing.assert_array_equal(pool(x), fc.functional.max_pool2d(x, 3, 1))
    avg = nn.AvgPool2d(2)
    avg.padding = 1
    np.testing.assert_array_equal(avg(x), fc.functional.avg_pool2d(x, 2, padding=1))


@pytest.mark.parametrize("cls", ["MaxPool2d", "AvgPool2d"])
def test_pool_default_stride_is_the_kernel_size_given_to_the_constructor(cls, rng):
    # torch sets stride = kernel_size in the constructor; a kernel size assigned later keeps it.
    # fastcnn kept None and took the new kernel size (stride 3 where torch strides by 2).
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    pool, tpool = getattr(nn, cls)(2), getattr(torch.nn, cls)(2)
    assert pool.stride == tpool.stride == 2
    pool.kernel_size = tpool.kernel_size = 3
    expected = tpool(torch.from_numpy(x)).numpy()
    assert expected.shape == (1, 2, 4, 4)
    np.testing.assert_allclose(pool(x), expected, rtol=1e-6)
    assert getattr(nn, cls)(3, stride=None).config()["stride"] == 3


def test_bad_layer_arguments_assigned_later_raise_naming_the_argument(rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    conv = nn.Conv2d(2, 2, 3)
    conv.stride = 0
    with pytest.raises(ValueError, match="stride"):
        conv(x)
    conv.stride = 1
    conv.padding = (1, "a")
    with pytest.raises(TypeError, match="padding"):
        conv(x)
    pool = nn.MaxPool2d(2)
    pool.kernel_size = (2, 2, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        pool(x)
    with pytest.raises(ValueError, match="input: expected a 4-D"):
        nn.BatchNorm2d(2)(x[0])
    with pytest.raises(ValueError, match="channels"):
        nn.BatchNorm2d(3).eval()(x)


def test_parameter_assigned_over_a_plain_attribute_is_the_one_used(rng):
    """Conv2d(bias=False) stores bias = None as a plain attribute; a Parameter assigned later must
    replace it (it used to stay shadowed by the None)."""
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    conv = nn.Conv2d(2, 3, 3, bias=False)
    assert conv.bias is None
    bias = rng.standard_normal(3).astype(np.float32)
    conv.bias = nn.Parameter(bias)
    assert conv.bias is conv._parameters["bias"]
    assert "bias" in dict(conv.named_parameters())
    np.testing.assert_array_equal(conv(x), fc.functional.conv2d(x, conv.weight.data, bias))
    conv.bias = None
    assert conv.bias is None and "bias" not in dict(conv.named_parameters())
    np.testing.assert_array_equal(conv(x), fc.functional.conv2d(x, conv.weight.data))
    lin = nn.Linear(4, 2)
    new_weight = nn.Parameter(rng.standard_normal((2, 4)))
    lin.weight = new_weight
    xl = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(
        lin(xl), xl @ new_weight.data.T + lin.bias.data, rtol=RTOL, atol=ATOL
    )
    del lin.bias
    assert "bias" not in dict(lin.named_parameters())


def test_saved_state_reassignment_keeps_registration():
    """The hot path of attribute assignment (arrays, tuples, None onto a plain attribute) never
    turns a registered parameter, buffer or module into a plain attribute, nor the reverse."""
    bn = nn.BatchNorm2d(2)
    bn.running_mean = np.full(2, 3.0, np.float32)  # a buffer stays a buffer
    assert "running_mean" in dict(bn.named_buffers())
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], [3.0, 3.0])
    seq = nn.Sequential(nn.ReLU())
    seq.extra = nn.ReLU()
    assert "extra" in seq._modules
    seq.extra = (1, 2)  # a plain value replaces the module
    assert "extra" not in seq._modules and seq.extra == (1, 2)
    seq.extra = (3, 4)
    assert seq.extra == (3, 4)


# --- fuse_conv_bn: batch norm folded into the convolution before it, for inference ---------------


def _randomize_batch_norms(net: nn.Module, rng) -> None:
    """Running statistics and affine parameters far from their 0/1 defaults (folding is tested)."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            if m.track_running_stats:
                m.running_mean[...] = rng.standard_normal(c)
                m.running_var[...] = rng.uniform(0.2, 3.0, c)
            if m.affine:
                m.weight.data[...] = rng.uniform(-2.0, 2.0, c)
                m.bias.data[...] = rng.standard_normal(c)


def _fused_close(got, want) -> None:
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1.0))


@pytest.mark.parametrize("name", ["fmnist-bn", "resnet-mini"])
def test_fuse_conv_bn_matches_the_unfused_model_and_torch_eval(name, rng):
    net = models.build(name)
    _randomize_batch_norms(net, rng)
    net.train()  # fuse_conv_bn works from any mode and leaves the model's own mode alone
    fused = nn.fuse_conv_bn(net)
    assert net.training and not fused.training
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert n_bn > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    want = net.eval()(x)
    _fused_close(fused(x), want)
    tnet = torch_twin(net).double().eval()
    tnet.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()})
    with torch.no_grad():
        want_t = tnet(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(fused(x), want_t, rtol=NET_RTOL, atol=NET_ATOL)


@pytest.mark.parametrize(
    "conv_args",
    [
        dict(in_channels=3, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=1, bias=False),
        dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, groups=2),
        dict(in_channels=5, out_channels=5, kernel_size=3, padding="same", groups=5, dilation=2),
    ],
)
@pytest.mark.parametrize("affine", [True, False])
def test_fold_conv_bn_layer_shapes(conv_args, affine, rng):
    conv = nn.Conv2d(**conv_args)
    bn = nn.BatchNorm2d(conv.out_channels, eps=1e-3, affine=affine)
    net = nn.Sequential(conv, bn)
    _randomize_batch_norms(net, rng)
    fused = nn.fuse_conv_bn(net)
    assert [type(m).__name__ for m in fused] == ["Conv2d", "Identity"]
    assert fused[0].bias is not None  # a conv without bias gains one
    x = rng.standard_normal((2, conv.in_channels, 9, 9)).astype(np.float32)
    _fused_close(fused(x), net.eval()(x))
    w, b = nn.fold_conv_bn(conv, bn)
    np.testing.assert_array_equal(w, fused[0].weight.data)
    np.testing.assert_array_equal(b, fused[0].bias.data)


def test_fuse_conv_bn_is_a_snapshot(rng):
    """Training, load_state_dict or edits of the original never reach the fused copy (it copied
    the weights); fusing again picks them up. The original is left as it was."""
    fc.manual_seed(0)
    net = models.fmnist_bn()
    _randomize_batch_norms(net, rng)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    before = net.state_dict()
    fused = nn.fuse_conv_bn(net)
    out = fused(x)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    # train the original a few steps: weights and running statistics move
    opt = fc.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    for _ in range(3):
        opt.zero_grad()
        loss_fn(net(x), rng.integers(0, 10, 4))
        net.backward(loss_fn.backward())
        opt.step()
    np.testing.assert_array_equal(fused(x), out)
    assert not np.allclose(net.eval()(x), out, atol=1e-3)
    _fused_close(nn.fuse_conv_bn(net)(x), net.eval()(x))
    # load_state_dict and direct edits of the original
    net.load_state_dict(before)
    net[1].running_var[...] = 7.0
    net[0].weight.data *= 2.0
    np.testing.assert_array_equal(fused(x), out)
    _fused_close(nn.fuse_conv_bn(net)(x), net.eval()(x))


def test_fuse_conv_bn_skips_what_it_cannot_fold(rng, tmp_path):
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.BatchNorm2d(3, track_running_stats=False),  # batch statistics even in eval mode
        nn.ReLU(),
        nn.BatchNorm2d(3),  # not right after a conv
        nn.Conv2d(3, 3, 1),
        nn.ReLU(),
        nn.BatchNorm2d(3),  # a ReLU in between
    )
    _randomize_batch_norms(net, rng)
    fused = nn.fuse_conv_bn(net)
    kinds = [type(m).__name__ for m in fused]
    assert kinds == [type(m).__name__ for m in net]
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(fused(x), net.eval()(x))
    # a fused model is an ordinary module tree: it saves and loads
    fused2 = nn.fuse_conv_bn(models.fmnist_bn())
    path = tmp_path / "fused.npz"
    fc.save(fused2, path)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(fc.load(path).eval()(x), fused2(x))
    with pytest.raises(TypeError, match="model"):
        nn.fuse_conv_bn([nn.Conv2d(1, 1, 1)])
    with pytest.raises(ValueError, match="running statistics"):
        nn.fold_conv_bn(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))
    with pytest.raises(ValueError, match="bn: expected running statistics of shape"):
        nn.fold_conv_bn(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(4))


@pytest.mark.parametrize("fused", [False, True])
def test_eval_batchnorm_without_running_stats_raises(fused):
    """Eval mode normalizes with the running stats: with them set to None the forward raises,
    alone or fused with the pooling after it."""
    bn = nn.BatchNorm2d(3)
    bn.eval()
    bn.running_var = None
    net = nn.Sequential(bn, nn.MaxPool2d(2)) if fused else bn
    with pytest.raises(ValueError, match="running_mean, running_var"):
        net(np.ones((2, 3, 4, 4), np.float32))
