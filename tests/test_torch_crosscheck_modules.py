"""The modules PyTorch users reach for beyond the CNN layers - Sigmoid, Tanh, LogSoftmax + NLLLoss,
BatchNorm1d, ModuleList and MSELoss's broadcast targets - against PyTorch: module outputs and
gradients on fresh random shapes and options (seeded, so a failure reproduces), non-finite and
large inputs, running statistics, and a small network trained a few SGD and Adam steps next to
torch.nn / torch.optim from the same weights."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F
from fastcnn import nn

torch = pytest.importorskip("torch", reason="the cross-check needs PyTorch")
tF = torch.nn.functional

CASES = range(20)


def _close(ours, theirs, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def _t(a, grad: bool = True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _shape(rng, rank_low: int = 1, rank_high: int = 4) -> tuple[int, ...]:
    rank = int(rng.integers(rank_low, rank_high + 1))
    return tuple(int(v) for v in rng.integers(1, 12, rank))


# ---- Sigmoid, Tanh --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("case", CASES)
def test_sigmoid_tanh_modules_random(name, case):
    rng = np.random.default_rng(11000 + case)
    x = (rng.standard_normal(_shape(rng)) * rng.choice([0.1, 1, 5, 50])).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    module, tmodule = getattr(nn, name)(), getattr(torch.nn, name)()
    xt = _t(x)
    yt = tmodule(xt)
    yt.backward(_t(dy, grad=False))
    _close(module(x), yt, rtol=3e-6, atol=1e-7)
    # float32 y carries its rounding into 1 - y; torch's float64 gradient does not
    _close(module.backward(dy), xt.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_sigmoid_tanh_non_finite_and_large_as_torch(name):
    x = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            1e-30,
            -1e-30,
            0.4,
            -0.4,
            10,
            -10,
            44,
            -44,
            87,
            -87,
            88,
            -88,
            100,
            -100,
            1e4,
            -1e4,
            3e38,
            -3e38,
        ],
        np.float32,
    )
    dy = np.linspace(-2, 2, x.size).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = getattr(torch, name)(xt)
    yt.backward(torch.from_numpy(dy))
    y = getattr(F, name)(x)
    # NaN where torch has NaN, and the same values to float32 rounding (sigmoid's outputs below
    # 1e-38 are subnormal: torch rounds some of them to 0 and so does the fast exp)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt.detach().numpy()))
    _close(y, yt, rtol=3e-6, atol=1e-37)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(yt.detach().numpy()))
    dx = getattr(F, f"{name}_backward")(dy, x)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(xt.grad.numpy()))
    _close(dx, xt.grad, rtol=1e-5, atol=1e-7)


# ---- LogSoftmax + NLLLoss -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_log_softmax_nll_loss_random(case):
    rng = np.random.default_rng(12000 + case)
    n, c = int(rng.integers(1, 9)), int(rng.integers(1, 13))
    extra = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(0, 3))))
    x = (rng.standard_normal((n, c) + extra) * 3).astype(np.float32)
    labels = rng.integers(0, c, (n,) + extra)
    ignore_index = int(rng.choice([-100, 0, c - 1]))
    if rng.random() < 0.5:
        labels.flat[rng.integers(0, labels.size)] = ignore_index
    weight = rng.uniform(0.1, 2.0, c).astype(np.float32) if rng.random() < 0.5 else None
    reduction = str(rng.choice(["mean", "sum", "none"]))
    args = dict(ignore_index=ignore_index, reduction=reduction)

    log_softmax, loss_fn = nn.LogSoftmax(dim=1), nn.NLLLoss(weight, **args)
    xt = _t(x)
    tw = None if weight is None else _t(weight, grad=False)
    tloss = torch.nn.NLLLoss(tw, **args)(torch.nn.LogSoftmax(dim=1)(xt), torch.from_numpy(labels))
    loss = loss_fn(log_softmax(x), labels)
    if reduction == "mean" and np.isnan(tloss.item()):  # every label ignored
        assert np.isnan(loss)
        return
    _close(loss, tloss, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(labels.shape) if reduction == "none" else 1.0
    (tloss * torch.as_tensor(g)).sum().backward()
    dx = log_softmax.backward(loss_fn.backward(g))
    _close(dx, xt.grad, rtol=1e-4, atol=1e-6)
    # the functional forms agree with the modules
    _close(F.nll_loss(F.log_softmax(x, 1), labels, weight, **args), tloss, rtol=1e-5, atol=1e-6)


def test_nll_loss_unbatched_and_non_finite_as_torch():
    logp = np.array([0.0, -np.inf, -1.5, np.nan], np.float32)
    for label in (0, 1, 2, 3):
        for reduction in ("mean", "sum", "none"):
            want = tF.nll_loss(torch.from_numpy(logp), torch.tensor(label), reduction=reduction)
            got = F.nll_loss(logp, np.array(label), reduction=reduction)
            np.testing.assert_array_equal(np.asarray(got), want.numpy())
    # log_softmax of a -inf logit is -inf, as torch's
    z = np.array([[1.0, -np.inf, 2.0], [-np.inf, -np.inf, 0.0]], np.float32)
    y, want = nn.LogSoftmax(1)(z), torch.log_softmax(torch.from_numpy(z), 1).numpy()
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(want))
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("variant", sorted(fastcnn._core._variants))
def test_log_softmax_non_finite_rows_as_torch(variant):
    core = fastcnn._core._variants[variant]
    z = np.array(
        [[1, -np.inf, 2], [-np.inf] * 3, [np.inf, 0, 1], [np.nan, 0, 1], [1e30, -1e30, 0]],
        np.float32,
    )
    dy = np.linspace(-1, 1, z.size).reshape(z.shape).astype(np.float32)
    zt = torch.from_numpy(z).requires_grad_()
    yt = torch.log_softmax(zt, 1)
    yt.backward(torch.from_numpy(dy))
    y = core.log_softmax_forward(z, 1)
    dx = core.log_softmax_backward(dy, y, 1)
    for ours, theirs in ((y, yt.detach().numpy()), (dx, zt.grad.numpy())):
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(theirs))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# ---- BatchNorm1d ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_batch_norm_1d_random(case):
    rng = np.random.default_rng(13000 + case)
    c = int(rng.integers(1, 10))
    shape = (int(rng.integers(2, 9)), c) + ((int(rng.integers(1, 8)),) if case % 2 else ())
    kw = dict(
        eps=float(rng.choice([1e-5, 1e-3])),
        momentum=None if rng.random() < 0.3 else float(rng.choice([0.1, 0.5])),
        affine=bool(rng.random() < 0.7),
        track_running_stats=bool(rng.random() < 0.8),
    )
    bn, tbn = nn.BatchNorm1d(c, **kw), torch.nn.BatchNorm1d(c, **kw).double()
    if kw["affine"]:
        with torch.no_grad():
            tbn.weight.uniform_(0.5, 1.5)
            tbn.bias.normal_()
    bn.load_state_dict({k: v.numpy() for k, v in tbn.state_dict().items()})
    for step in range(3):
        x = (rng.standard_normal(shape) * 2 + step).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        xt = _t(x)
        yt = tbn(xt)
        yt.backward(_t(dy, grad=False))
        _close(bn(x), yt, rtol=1e-4, atol=1e-5)
        bn.zero_grad()
        _close(bn.backward(dy), xt.grad, rtol=1e-4, atol=1e-4)
        if kw["affine"]:
            _close(bn.weight.grad, tbn.weight.grad, rtol=1e-4, atol=1e-4)
            _close(bn.bias.grad, tbn.bias.grad, rtol=1e-4, atol=1e-4)
            tbn.zero_grad()
        for key, value in tbn.state_dict().items():  # running stats, num_batches_tracked
            _close(bn.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    bn.eval()
    tbn.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    xt = _t(x)
    yt = tbn(xt)
    dy = rng.standard_normal(shape).astype(np.float32)
    yt.backward(_t(dy, grad=False))
    _close(bn(x), yt, rtol=1e-4, atol=1e-5)
    _close(bn.backward(dy), xt.grad, rtol=1e-4, atol=1e-5)


def test_batch_norm_1d_rejects_what_torch_rejects():
    for shape in ((1, 3), (1, 3, 1)):  # one value per channel in training
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            nn.BatchNorm1d(3)(np.zeros(shape, np.float32))
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            torch.nn.BatchNorm1d(3)(torch.zeros(shape))
    for shape in ((3,), (2, 3, 4, 5)):
        with pytest.raises(
            ValueError, match=r"expected a 2-D or 3-D array \(N, C\) or \(N, C, L\)"
        ):
            nn.BatchNorm1d(3)(np.zeros(shape, np.float32))
        with pytest.raises(ValueError, match="expected 2D or 3D input"):
            torch.nn.BatchNorm1d(3)(torch.zeros(shape))


# ---- ModuleList -----------------------------------------------------------------------------


def test_module_list_state_dict_as_torch():
    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh()])
            self.blocks.append(nn.Linear(4, 2))

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(
                [torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh()]
            )
            self.blocks.append(torch.nn.Linear(4, 2))

    ours, theirs = Ours(), Theirs()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # torch tensors load directly
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


# ---- MSELoss with a broadcast target --------------------------------------------------------


@pytest.mark.parametrize(
    "shapes", [((3, 4), (4,)), ((3, 4), (3, 1)), ((5, 1), (5,)), ((2, 1, 3), (4, 3)), ((), (2,))]
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_broadcast_as_torch(shapes, reduction):
    rng = np.random.default_rng(14000 + len(shapes[0]) * 10 + len(shapes[1]))
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    at, bt = _t(a), _t(b)
    with pytest.warns(UserWarning, match="different to the input size") as theirs:
        tl = torch.nn.MSELoss(reduction=reduction)(at, bt)
    with pytest.warns(UserWarning, match="different to the input size") as ours:
        module = nn.MSELoss(reduction=reduction)
        loss = module(a, b)
    # the same words, with NumPy's spelling of the shapes
    assert str(ours[0].message).split("(")[0] == str(theirs[0].message).split("(")[0]
    _close(loss, tl)
    g = rng.standard_normal(tl.shape) if reduction == "none" else 1.0
    (tl * torch.as_tensor(g)).sum().backward()
    _close(module.backward(g), at.grad)
    with pytest.warns(UserWarning):
        da, db = F.mse_loss_backward(a, b, g, reduction)
    _close(da, at.grad)
    _close(db, bt.grad)


def test_mse_loss_shapes_torch_cannot_broadcast():
    a, b = np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(RuntimeError), pytest.warns(UserWarning):
        tF.mse_loss(torch.from_numpy(a), torch.from_numpy(b))
    with pytest.raises(ValueError, match="target: expected shape"):
        F.mse_loss(a, b)


# ---- a small network, trained --------------------------------------------------------------


def _mlp(lib, d_in: int, hidden: int, classes: int):
    m = lib.nn if lib is torch else fastcnn.nn
    # (no bias before the batch norm: its gradient is 0 up to rounding, which Adam would scale up
    # to full steps in directions set by that rounding)
    return m.Sequential(
        m.Linear(d_in, hidden, bias=False),
        m.BatchNorm1d(hidden),
        m.Tanh(),
        m.Linear(hidden, hidden),
        m.Sigmoid(),
        m.Linear(hidden, classes),
        m.LogSoftmax(dim=1),
    )


def test_mse_loss_positional_reduction_is_refused_as_torch_reads_it():
    """torch's third positional argument of MSELoss and F.mse_loss is the deprecated size_average,
    so MSELoss("sum") is the mean there (with a deprecation warning); fastcnn took it as the
    reduction and summed, a silent difference. It is refused now, naming the argument, as
    CrossEntropyLoss and NLLLoss refuse size_average and reduce; reduction= gives torch's values."""
    a, b = np.full(3, 2.0, np.float32), np.zeros(3, np.float32)
    with pytest.warns(UserWarning, match="size_average"):
        assert float(torch.nn.MSELoss("sum")(torch.from_numpy(a), torch.from_numpy(b))) == 4.0
    with pytest.raises(ValueError, match="size_average='sum'"):
        nn.MSELoss("sum")
    with pytest.raises(ValueError, match="size_average='sum'"):
        F.mse_loss(a, b, "sum")
    with pytest.raises(ValueError, match="reduce=False"):
        nn.MSELoss(reduce=False)
    for reduction in ("mean", "sum"):
        want = torch.nn.MSELoss(reduction=reduction)(torch.from_numpy(a), torch.from_numpy(b))
        assert nn.MSELoss(reduction=reduction)(a, b) == F.mse_loss(a, b, reduction=reduction)
        assert F.mse_loss(a, b, reduction=reduction) == float(want)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_small_network_trains_as_torch(kind):
    """Sigmoid, Tanh, BatchNorm1d, LogSoftmax and NLLLoss trained five steps in float32 next to
    torch, from the same weights and without re-syncing: losses, gradients, weights and running
    statistics stay equal to float32 rounding."""
    rng = np.random.default_rng(15000)
    torch.manual_seed(0)
    d_in, hidden, classes, n = 7, 13, 5, 11
    tnet, net = _mlp(torch, d_in, hidden, classes), _mlp(fastcnn, d_in, hidden, classes)
    net.load_state_dict({k: v.detach().numpy() for k, v in tnet.state_dict().items()})
    weight = rng.uniform(0.5, 1.5, classes).astype(np.float32)
    loss_fn, tloss_fn = nn.NLLLoss(weight), torch.nn.NLLLoss(torch.from_numpy(weight))
    kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-3) if kind == "SGD" else dict(lr=1e-2)
    opt = getattr(fastcnn.optim, kind)(net.parameters(), **kw)
    topt = getattr(torch.optim, kind)(tnet.parameters(), **kw)
    losses = []
    for _ in range(5):
        x = rng.standard_normal((n, d_in)).astype(np.float32)
        labels = rng.integers(0, classes, n)
        loss = loss_fn(net(x), labels)
        tloss = tloss_fn(tnet(torch.from_numpy(x)), torch.from_numpy(labels))
        assert loss == pytest.approx(tloss.item(), rel=1e-5, abs=1e-6)
        losses.append(loss)
        opt.zero_grad()
        topt.zero_grad()
        net.backward(loss_fn.backward(), input_grad=False)
        tloss.backward()
        for p, tp in zip(net.parameters(), tnet.parameters()):
            _close(p.grad, tp.grad, rtol=1e-4, atol=1e-6)
        opt.step()
        topt.step()
        for p, tp in zip(net.parameters(), tnet.parameters()):
            _close(p.data, tp, rtol=1e-4, atol=1e-6)
    for key, value in tnet.state_dict().items():
        _close(net.state_dict()[key], value, rtol=1e-4, atol=1e-6)
    assert losses[-1] < losses[0]
    net.eval()
    tnet.eval()
    x = rng.standard_normal((n, d_in)).astype(np.float32)
    _close(net(x), tnet(torch.from_numpy(x)), rtol=1e-4, atol=1e-5)
