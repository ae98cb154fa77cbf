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
    assert "total parameters" in lines[-1]


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
