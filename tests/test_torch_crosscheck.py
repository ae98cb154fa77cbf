"""Random configurations against PyTorch: every functional op, forward and backward, on shapes and
arguments drawn afresh per case (seeded, so a failure reproduces), beyond the hand-picked matrices
of the per-family tests; then the nn modules, whole Sequential nets, optimizers and schedulers as
a PyTorch user composes them, and the edge cases (non-finite values, unbatched inputs, positional
arguments) where fastcnn once answered differently."""

from __future__ import annotations

import inspect
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F

torch = pytest.importorskip("torch", reason="the cross-check needs PyTorch")
tF = torch.nn.functional

CASES = range(40)


def _close(ours, theirs, atol_scale: float = 1.0, rtol: float = 1e-4) -> None:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    # float32 sums of `atol_scale` terms of unit size carry about sqrt(terms) ulps of error
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-5 * max(1.0, atol_scale))


def _t(a: np.ndarray, grad: bool = True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_random(case):
    rng = np.random.default_rng(1000 + case)
    groups = int(rng.choice([1, 1, 2, 3]))
    cpg, kpg = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    c, k = cpg * groups, kpg * groups
    r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    if rng.random() < 0.2:
        stride, padding = (1, 1), str(rng.choice(["same", "valid"]))
    h = int(rng.integers(1, 14)) + dilation[0] * (r - 1)
    w = int(rng.integers(1, 14)) + dilation[1] * (s - 1)
    n = int(rng.integers(1, 4))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, cpg, r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if rng.random() < 0.7 else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv2d(x, wt, b, **args)
    xt, wtt = _t(x), _t(wt)
    bt = _t(b) if b is not None else None
    with warnings.catch_warnings():
        # torch warns (once per process) that "same" with an even kernel pads asymmetrically
        warnings.simplefilter("ignore", UserWarning)
        yt = tF.conv2d(xt, wtt, bt, **args)
    terms = cpg * r * s
    _close(y, yt, terms**0.5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    dx, dw, db = F.conv2d_backward(dy, x, wt, **args)
    _close(dx, xt.grad, (kpg * r * s) ** 0.5)
    _close(dw, wtt.grad, (n * y.shape[2] * y.shape[3]) ** 0.5)
    if b is not None:
        _close(db, bt.grad, (n * y.shape[2] * y.shape[3]) ** 0.5)


@pytest.mark.parametrize("case", CASES)
def test_pooling_random(case):
    rng = np.random.default_rng(2000 + case)
    kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kernel[0] // 2 + 1)), int(rng.integers(0, kernel[1] // 2 + 1)))
    ceil_mode = bool(rng.random() < 0.5)
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    h, w = kernel[0] + int(rng.integers(0, 12)), kernel[1] + int(rng.integers(0, 12))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)

    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    if (
        all(h + 2 * p >= d * (k - 1) + 1 for p, d, k in ((padding[0], dilation[0], kernel[0]),))
        and w + 2 * padding[1] >= dilation[1] * (kernel[1] - 1) + 1
        and rng.random() < 0.5
    ):
        mdil = dilation
    else:
        mdil = (1, 1)
    margs = dict(
        kernel_size=kernel, stride=stride, padding=padding, dilation=mdil, ceil_mode=ceil_mode
    )
    xt = _t(x)
    try:
        yt, it = tF.max_pool2d(xt, **margs, return_indices=True)
    except RuntimeError:
        with pytest.raises(ValueError):
            F.max_pool2d(x, **margs)
        return
    y, idx = F.max_pool2d(x, **margs, return_indices=True)
    _close(y, yt)
    np.testing.assert_array_equal(idx, it.numpy())
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(F.max_pool2d_backward(dy, x, **margs, indices=idx), xt.grad)

    include = bool(rng.random() < 0.5)
    divisor = int(rng.integers(1, 7)) if rng.random() < 0.2 else None
    aargs = dict(
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=include,
        divisor_override=divisor,
    )
    xt = _t(x)
    yt = tF.avg_pool2d(xt, **aargs)
    y = F.avg_pool2d(x, **aargs)
    _close(y, yt)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(F.avg_pool2d_backward(dy, x, **aargs), xt.grad)

    out = (int(rng.integers(1, h + 3)), None if rng.random() < 0.2 else int(rng.integers(1, w + 3)))
    xt = _t(x)
    yt = tF.adaptive_avg_pool2d(xt, out)
    y = F.adaptive_avg_pool2d(x, out)
    _close(y, yt)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(F.adaptive_avg_pool2d_backward(dy, x, out), xt.grad)


@pytest.mark.parametrize("case", CASES)
def test_norm_softmax_loss_linear_random(case):
    rng = np.random.default_rng(3000 + case)
    rank = int(rng.integers(2, 5))
    shape = (int(rng.integers(2, 6)), int(rng.integers(1, 8))) + tuple(
        int(rng.integers(1, 7)) for _ in range(rank - 2)
    )
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 5) + rng.uniform(-3, 3)).astype(np.float32)
    c = shape[1]
    weight = rng.standard_normal(c).astype(np.float32) if rng.random() < 0.8 else None
    bias = rng.standard_normal(c).astype(np.float32) if weight is not None else None
    momentum = float(rng.uniform(0.01, 0.9))
    rm, rv = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    rmt, rvt = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
    xt = _t(x)
    wt = _t(weight) if weight is not None else None
    bt = _t(bias) if bias is not None else None
    yt = tF.batch_norm(xt, rmt, rvt, wt, bt, training=True, momentum=momentum, eps=1e-5)
    y = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=momentum, eps=1e-5)
    _close(y, yt, 10)
    _close(rm, rmt, 10)
    _close(rv, rvt, 10)
    dy = rng.standard_normal(shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    dx, dw, db = F.batch_norm_backward(dy, x, weight, training=True, eps=1e-5)
    count = x.size // c
    _close(dx, xt.grad, 10 * count**0.5, rtol=1e-3)
    if weight is not None:
        _close(dw, wt.grad, count**0.5, rtol=1e-3)
        _close(db, bt.grad, count**0.5)

    dim = int(rng.integers(-rank, rank))
    xt = _t(x)
    for ours, theirs, back in (
        (F.softmax, torch.softmax, F.softmax_backward),
        (F.log_softmax, torch.log_softmax, F.log_softmax_backward),
    ):
        xt = _t(x)
        yt = theirs(xt, dim)
        _close(ours(x, dim=dim), yt)
        yt.backward(torch.from_numpy(dy.astype(np.float64)))
        _close(back(dy, x, dim=dim), xt.grad, shape[dim] ** 0.5)

    n, classes = int(rng.integers(1, 20)), int(rng.integers(2, 30))
    logits = (rng.standard_normal((n, classes)) * 4).astype(np.float32)
    labels = rng.integers(0, classes, n)
    smoothing = float(rng.choice([0.0, 0.1, 0.3]))
    lt = _t(logits)
    loss_t = tF.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
    loss_t.backward()
    assert float(F.cross_entropy(logits, labels, label_smoothing=smoothing)) == pytest.approx(
        loss_t.item(), rel=1e-5, abs=1e-6
    )
    _close(F.cross_entropy_backward(logits, labels, label_smoothing=smoothing), lt.grad)

    inf, outf = int(rng.integers(1, 40)), int(rng.integers(1, 20))
    lead = tuple(int(rng.integers(1, 4)) for _ in range(int(rng.integers(1, 3))))
    xl = rng.standard_normal(lead + (inf,)).astype(np.float32)
    wl = rng.standard_normal((outf, inf)).astype(np.float32)
    bl = rng.standard_normal(outf).astype(np.float32)
    xlt, wlt, blt = _t(xl), _t(wl), _t(bl)
    ylt = tF.linear(xlt, wlt, blt)
    _close(F.linear(xl, wl, bl), ylt, inf**0.5)
    dyl = rng.standard_normal(ylt.shape).astype(np.float32)
    ylt.backward(torch.from_numpy(dyl.astype(np.float64)))
    dx, dw, db = F.linear_backward(dyl, xl, wl)
    _close(dx, xlt.grad, outf**0.5)
    _close(dw, wlt.grad, int(np.prod(lead)) ** 0.5)
    _close(db, blt.grad, int(np.prod(lead)) ** 0.5)


# --- fast paths: configurations large enough to reach each specialized kernel -------------------
# The draws above are small (few channels, small planes) and mostly run the generic GEMM path. These
# reach Winograd (3x3 stride 1, >= 8 channels and filters), depthwise (groups == C, with channel
# multipliers), the 1x1 GEMM, the few-input-channel first layer, grouped and strided direct
# kernels, GEMM tails (sizes not multiples of the vector width), on every compiled variant and at
# 1 and 2 threads.

FAST_KINDS = ("winograd", "depthwise", "pointwise", "first_layer", "grouped", "strided")
FAST_CASES = range(18)


def _fast_conv_args(rng, kind: str) -> dict:
    groups, stride, dilation = 1, (1, 1), (1, 1)
    if kind == "winograd":
        c, k, r, s = int(rng.integers(8, 41)), int(rng.integers(8, 41)), 3, 3
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    elif kind == "depthwise":
        c = int(rng.integers(1, 41))
        groups, k = c, c * int(rng.choice([1, 1, 2, 3]))
        r = s = int(rng.choice([3, 5, 7, 2]))
        stride = (int(rng.integers(1, 3)),) * 2
        dilation = (int(rng.integers(1, 3)),) * 2
        padding = (int(rng.integers(0, r)), int(rng.integers(0, s)))
    elif kind == "pointwise":
        c, k, r, s = int(rng.integers(1, 71)), int(rng.integers(1, 71)), 1, 1
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = (int(rng.integers(0, 2)),) * 2
    elif kind == "first_layer":
        c, k = int(rng.integers(1, 4)), int(rng.integers(4, 65))
        r = s = int(rng.choice([3, 5, 7]))
        stride = (int(rng.integers(1, 3)),) * 2
        padding = (r // 2, s // 2)
    else:
        groups = int(rng.choice([1, 2, 4])) if kind == "grouped" else 1
        c = groups * int(rng.integers(1, 65 // groups))
        k = groups * int(rng.integers(1, 65 // groups))
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        if rng.random() < 0.3:
            dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    h = int(rng.integers(1, 24)) + dilation[0] * (r - 1)
    w = int(rng.integers(1, 24)) + dilation[1] * (s - 1)
    n = int(rng.integers(1, 5))
    return dict(
        shape=(n, c, h, w),
        wshape=(k, c // groups, r, s),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


@pytest.mark.parametrize("case", FAST_CASES)
def test_conv2d_fast_paths_random(case, core):
    rng = np.random.default_rng(4000 + case)
    kind = FAST_KINDS[case % len(FAST_KINDS)]
    a = _fast_conv_args(rng, kind)
    x = rng.standard_normal(a["shape"]).astype(np.float32)
    wt = rng.standard_normal(a["wshape"]).astype(np.float32)
    b = rng.standard_normal(a["wshape"][0]).astype(np.float32)
    ph, pw = a["padding"]
    args = (a["stride"], (ph, pw, ph, pw), a["dilation"], a["groups"])
    targs = dict(
        stride=a["stride"], padding=a["padding"], dilation=a["dilation"], groups=a["groups"]
    )
    xt, wtt, bt = _t(x), _t(wt), _t(b)
    yt = tF.conv2d(xt, wtt, bt, **targs)
    dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    n, k, p, q = yt.shape
    cpg, kpg, r, s = a["wshape"][1], a["wshape"][0] // a["groups"], *a["wshape"][2:]
    before = fastcnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            _close(core.conv2d_forward(x, wt, b, *args), yt, 4 * (cpg * r * s) ** 0.5)
            _close(
                core.conv2d_backward_input(dy, wt, x.shape, *args), xt.grad, (kpg * r * s) ** 0.5
            )
            dw, db = core.conv2d_backward_weight(dy, x, wt.shape, *args, True, True)
            _close(dw, wtt.grad, (n * p * q) ** 0.5, rtol=1e-3)
            _close(db, bt.grad, (n * p * q) ** 0.5)
    finally:
        fastcnn.set_num_threads(before)


@pytest.mark.parametrize("case", range(6))
def test_linear_gemm_tails_random(case, core):
    rng = np.random.default_rng(5000 + case)
    m, inf, outf = (int(rng.integers(1, 150)) for _ in range(3))
    x = rng.standard_normal((m, inf)).astype(np.float32)
    w = rng.standard_normal((outf, inf)).astype(np.float32)
    b = rng.standard_normal(outf).astype(np.float32)
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = tF.linear(xt, wt, bt)
    dy = rng.standard_normal((m, outf)).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    _close(core.linear_forward(x, w, b), yt, inf**0.5)
    _close(core.linear_backward_input(dy, w), xt.grad, outf**0.5)
    dw, db = core.linear_backward_weight(dy, x, True, True)
    _close(dw, wt.grad, m**0.5)
    _close(db, bt.grad, m**0.5)


def _copy_into(net, tnet) -> None:
    net.load_state_dict({k: v.detach().numpy() for k, v in tnet.state_dict().items()})


@pytest.mark.parametrize("case", range(6))
def test_network_training_steps_random(case):
    """A random conv stack (with the fused BatchNorm2d -> MaxPool2d(2) -> ReLU pattern, Winograd
    and depthwise layers, momentum None batch norms) trained a few steps next to torch.nn/optim on
    copied weights, then switched to eval mode (cached packed weights) after a load_state_dict."""
    rng = np.random.default_rng(6000 + case)
    torch.manual_seed(case)
    c, h, w = int(rng.choice([1, 3, 8])), int(rng.integers(8, 17)), int(rng.integers(8, 17))
    layers, ch = [], c
    for _ in range(2):
        k = int(rng.choice([8, 12, 16, 19]))
        depthwise = ch == k and rng.random() < 0.5
        layers.append(("Conv2d", (ch, k, 3), dict(padding=1, groups=k if depthwise else 1)))
        layers.append(("BatchNorm2d", (k,), dict(momentum=None if rng.random() < 0.5 else 0.2)))
        pool_first = rng.random() < 0.7
        if pool_first:
            layers.append(("MaxPool2d", (2,), {}))
        layers.append(("ReLU", (), {}))
        if not pool_first:
            layers.append(("MaxPool2d", (2,), {}))
        h, w, ch = h // 2, w // 2, k
    layers += [("Flatten", (), {}), ("Linear", (ch * h * w, 10), {})]
    tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a, **kw) for n, a, kw in layers)).double()
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a, **kw) for n, a, kw in layers))
    _copy_into(net, tnet)
    kind = ("SGD", "Adam", "AdamW")[case % 3]
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3) if kind == "SGD" else dict(lr=1e-3)
    opt = getattr(fastcnn.optim, kind)(net.parameters(), **kw)
    topt = getattr(torch.optim, kind)(tnet.parameters(), **kw)
    n = int(rng.integers(2, 6))
    for _ in range(3):
        x = rng.standard_normal((n, c, h * 4 + case % 2, w * 4)).astype(np.float32)
        labels = rng.integers(0, 10, n)
        loss_fn = fastcnn.nn.CrossEntropyLoss()
        loss = loss_fn(net(x), labels)
        tloss = tF.cross_entropy(tnet(_t(x, grad=False)), torch.from_numpy(labels))
        assert loss == pytest.approx(tloss.item(), rel=1e-4)
        opt.zero_grad()
        topt.zero_grad()
        net.backward(loss_fn.backward())
        tloss.backward()
        for p, tp in zip(net.parameters(), tnet.parameters()):
            _close(p.grad, tp.grad, 30, rtol=2e-3)
            # the optimizers alone: torch steps on our gradient
            tp.grad = torch.from_numpy(p.grad.astype(np.float64))
        opt.step()
        topt.step()
        for p, tp in zip(net.parameters(), tnet.parameters()):
            _close(p.data, tp, 10)
        _copy_into(net, tnet)  # no drift between the two copies
    for key, value in tnet.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[key], value.numpy(), rtol=1e-4, atol=1e-5)
    net.eval()
    tnet.eval()
    x = rng.standard_normal((n, c, h * 4, w * 4)).astype(np.float32)
    _close(net(x), tnet(_t(x, grad=False)), 30)
    with torch.no_grad():
        for tp in tnet.parameters():
            tp.mul_(0.5)
    _copy_into(net, tnet)  # in place: the eval-mode weight caches must notice
    _close(net(x), tnet(_t(x, grad=False)), 30)


@pytest.mark.parametrize(
    "op, args",
    [
        ("conv2d", dict(stride=(1, 2), padding=1)),
        ("conv2d", dict(padding="same", groups=2)),
        ("max_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("avg_pool2d", dict(kernel_size=(2, 3), count_include_pad=False, padding=1)),
        ("adaptive_avg_pool2d", dict(output_size=(3, 5))),
    ],
)
def test_unbatched_image_as_torch(op, args):
    """One (C, H, W) image, as PyTorch's 2-D convolution and pooling take it: functional forward
    and backward, and the module."""
    rng = np.random.default_rng(7000)
    x = rng.standard_normal((6, 9, 11)).astype(np.float32)
    extra, module_args = [], dict(args)
    if op == "conv2d":
        weight = rng.standard_normal((4, 6 // args.get("groups", 1), 3, 3)).astype(np.float32)
        bias = rng.standard_normal(4).astype(np.float32)
        extra = [weight, bias]
        module = fastcnn.nn.Conv2d(6, 4, 3, **args)
        module.weight.data[...] = weight
        module.bias.data[...] = bias
    else:
        name = {"max_pool2d": "MaxPool2d", "avg_pool2d": "AvgPool2d"}.get(op, "AdaptiveAvgPool2d")
        module = getattr(fastcnn.nn, name)(**module_args)
    xt = _t(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yt = getattr(tF, op)(xt, *(_t(a, grad=False) for a in extra), **args)
    y = getattr(F, op)(x, *extra, **args)
    _close(y, yt, 10)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    if op == "conv2d":
        dx = F.conv2d_backward(dy, x, extra[0], **{k: v for k, v in args.items()})[0]
    else:
        dx = getattr(F, op + "_backward")(dy, x, **args)
    _close(dx, xt.grad, 10)
    for mode in (True, False):
        module.train(mode)
        _close(module(x), yt, 10)
        _close(module.backward(dy), xt.grad, 10)
    if op == "max_pool2d":
        y, indices = F.max_pool2d(x, **args, return_indices=True)
        assert indices.shape == y.shape
        _close(F.max_pool2d_backward(dy, x, **args, indices=indices), xt.grad)
        relu_after = fastcnn.nn.Sequential(module, fastcnn.nn.ReLU())  # one fused pass
        _close(relu_after(x), torch.relu(yt), 10)


# --- optimizers and schedulers: several steps on identical gradients -----------------------------


def _optimizer_options(rng, kind: str) -> dict:
    kw = {"lr": float(rng.choice([1e-3, 0.01, 0.1, 0.5]))}
    if kind == "SGD":
        if rng.random() < 0.7:
            kw["momentum"] = float(rng.choice([0.5, 0.9]))
            if rng.random() < 0.3:
                kw["dampening"] = float(rng.choice([0.1, 0.5]))
            elif rng.random() < 0.4:
                kw["nesterov"] = True
    else:
        if rng.random() < 0.5:
            kw["betas"] = (float(rng.choice([0.0, 0.5, 0.9])), float(rng.choice([0.9, 0.999])))
        if rng.random() < 0.3:
            kw["eps"] = float(rng.choice([1e-6, 1e-3]))
        kw["amsgrad"] = bool(rng.random() < 0.3)
        if kind == "Adam" and rng.random() < 0.3:
            kw["decoupled_weight_decay"] = True
    if rng.random() < 0.5:
        kw["weight_decay"] = float(rng.choice([1e-4, 0.01, 0.1]))
    kw["maximize"] = bool(rng.random() < 0.3)
    return kw


def _scheduler_options(rng, name: str, lr: float, steps: int) -> dict:
    if name == "StepLR":
        return dict(step_size=int(rng.integers(1, 4)), gamma=float(rng.choice([0.1, 0.5])))
    if name == "CosineAnnealingLR":
        return dict(T_max=int(rng.integers(1, 6)), eta_min=float(rng.choice([0.0, 1e-4])))
    return dict(
        max_lr=lr,
        total_steps=steps,
        pct_start=float(rng.choice([0.1, 0.3, 0.5])),
        anneal_strategy=str(rng.choice(["cos", "linear"])),
        three_phase=bool(rng.random() < 0.3),
    )


def _params_side_by_side(rng):
    """Three parameters (a matrix, a vector, a long vector of random length) and torch's copies."""
    shapes = [(3, 2), (5,), (int(rng.integers(100, 3000)),)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params = [fastcnn.Parameter(a.copy()) for a in start]
    tparams = [torch.tensor(a, requires_grad=True) for a in start]
    return params, tparams


def _step_side_by_side(rng, opt, topt, params, tparams, schedulers, steps):
    """Steps both optimizers (and schedulers) on the same random gradients; after each step the
    parameters, learning rates and any cycled momenta agree."""
    for _ in range(steps):
        for p, tp in zip(params, tparams):
            p.grad[...] = rng.standard_normal(p.shape).astype(np.float32)
            tp.grad = torch.from_numpy(p.grad.copy())
        opt.step()
        topt.step()
        opt.zero_grad(set_to_none=True)  # PyTorch's signature
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
        if schedulers is not None:
            for s in schedulers:
                s.step()
            np.testing.assert_allclose(
                schedulers[0].get_last_lr(), schedulers[1].get_last_lr(), rtol=1e-12
            )
            for group, tgroup in zip(opt.param_groups, topt.param_groups):
                for key in ("momentum", "betas"):
                    if key in group:
                        np.testing.assert_allclose(group[key], tgroup[key], rtol=1e-12)


@pytest.mark.parametrize("case", range(30))
def test_optimizer_and_scheduler_steps_random(case):
    """SGD / Adam / AdamW with random options (maximize and Adam's decoupled_weight_decay
    included), one or two parameter groups and a learning-rate scheduler, stepped next to
    torch.optim on the same gradients: parameters, learning rates and cycled momenta agree."""
    rng = np.random.default_rng(8000 + case)
    kind = ("SGD", "Adam", "AdamW")[case % 3]
    kw = _optimizer_options(rng, kind)
    params, tparams = _params_side_by_side(rng)
    if case % 2:  # a second group with its own lr (and betas)
        extra = {"lr": kw["lr"] / 2} | ({} if kind == "SGD" else {"betas": (0.8, 0.95)})
        groups = [{"params": params[:1], **extra}, {"params": params[1:]}]
        tgroups = [{"params": tparams[:1], **extra}, {"params": tparams[1:]}]
    else:
        groups, tgroups = params, tparams
    opt = getattr(fastcnn.optim, kind)(groups, **kw)
    topt = getattr(torch.optim, kind)(tgroups, **kw)
    steps = 12  # total_steps for OneCycleLR: no phase of zero length (torch divides by it)
    name = ("StepLR", "CosineAnnealingLR", "OneCycleLR", None)[case % 4]
    if name == "OneCycleLR" and kind == "SGD" and "momentum" not in kw:
        name = None  # OneCycleLR cycles momentum by default
    schedulers = None
    if name is not None:
        skw = _scheduler_options(rng, name, kw["lr"], steps)
        schedulers = (
            getattr(fastcnn.optim, name)(opt, **skw),
            getattr(torch.optim.lr_scheduler, name)(topt, **skw),
        )
    _step_side_by_side(rng, opt, topt, params, tparams, schedulers, steps)


def test_one_cycle_positional_arguments_as_torch():
    """OneCycleLR's positional order is torch's: ..., anneal_strategy, cycle_momentum,
    base_momentum, max_momentum, div_factor, final_div_factor, three_phase."""
    args = (0.1, 20, None, None, 0.25, "linear", True, 0.8, 0.9, 10.0, 100.0, True)
    param = fastcnn.Parameter(np.zeros(3, np.float32))
    ours = fastcnn.optim.OneCycleLR(fastcnn.optim.SGD([param], momentum=0.9), *args)
    tparam = torch.zeros(3, requires_grad=True)
    theirs = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([tparam], momentum=0.9), *args)
    for _ in range(20):
        theirs.optimizer.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert ours.optimizer.param_groups[0]["momentum"] == pytest.approx(
            theirs.optimizer.param_groups[0]["momentum"], rel=1e-12
        )


@pytest.mark.parametrize("kind", ["SGD", "Adam", "AdamW"])
def test_maximize_steps_a_zero_dim_parameter_as_torch(kind):
    """maximize=True on a 0-d parameter (a learnable scalar) steps as torch's: its negated
    gradient stays an array (np.negative of a 0-d array was a NumPy scalar, which the step
    kernels refused with a TypeError)."""
    kw = {"lr": 0.1, "maximize": True} | ({"momentum": 0.9} if kind == "SGD" else {})
    param = fastcnn.Parameter(np.array(0.5, np.float32))
    tparam = torch.tensor(0.5, requires_grad=True)
    opt, topt = (
        getattr(fastcnn.optim, kind)([param], **kw),
        getattr(torch.optim, kind)([tparam], **kw),
    )
    for g in (1.0, -2.0, 0.25):
        param.grad = np.array(g, np.float32)
        tparam.grad = torch.tensor(g)
        opt.step()
        topt.step()
        assert param.data.shape == ()
        np.testing.assert_allclose(param.data, tparam.detach().numpy(), rtol=1e-6)


def _steps_on_shrinking_gradients(seed, n, kind, kw):
    """fastcnn's and torch's optimizer `kind` (with options kw) on one parameter of n floats,
    stepped side by side on gradients of scale 1, 1e-3, 1, 1e-3 (a small gradient after a large
    one is where the order of a running average's sum shows); yields (param, tparam, opt, topt)
    after each step."""
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(n).astype(np.float32)
    param, tparam = fastcnn.Parameter(start), torch.tensor(start.copy(), requires_grad=True)
    opt = getattr(fastcnn.optim, kind)([param], **kw)
    topt = getattr(torch.optim, kind)([tparam], **kw)
    for scale in (1.0, 1e-3, 1.0, 1e-3):
        grad = (rng.standard_normal(n) * scale).astype(np.float32)
        param.grad = grad.copy()
        tparam.grad = torch.from_numpy(grad)
        opt.step()
        topt.step()
        yield param, tparam, opt, topt


@pytest.mark.parametrize("beta1", [0.0, 0.5])
@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
def test_adam_first_moment_is_torchs_lerp(kind, beta1):
    """exp_avg follows torch's lerp_(grad, 1 - beta1), which sums from grad for weights of 1/2
    and more: beta1 = 0 keeps exp_avg = grad exactly, and both weights give torch's bits.
    fastcnn always summed from exp_avg, where a gradient 1000x smaller than the last cancelled:
    exp_avg and the step came out 5e-5 off. (Below 1/2 torch's vector lerp fuses a multiply-add
    that fastcnn, rounding as NumPy does, does not: those agree to rounding.)"""
    kw = {"lr": 0.5, "betas": (beta1, 0.9), "eps": 1e-3}
    for param, tparam, opt, topt in _steps_on_shrinking_gradients(8800, 500, kind, kw):
        np.testing.assert_array_equal(
            opt.state[param]["exp_avg"], topt.state[tparam]["exp_avg"].numpy()
        )
        np.testing.assert_allclose(param.data, tparam.detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided"])
def test_step_reads_a_float32_gradient_in_any_layout_as_torch(kind, layout):
    """A float32 gradient assigned as a Fortran-order, negative-stride or strided array steps as
    torch's does with the same values (fastcnn raised 'grad: expected a C-contiguous array');
    maximize negates it without touching the caller's array."""
    rng = np.random.default_rng(8900)
    start = rng.standard_normal((4, 6)).astype(np.float32)
    kw = {"lr": 0.1, "maximize": True} | ({"momentum": 0.9} if kind == "SGD" else {})
    param, tparam = fastcnn.Parameter(start), torch.tensor(start.copy(), requires_grad=True)
    opt, topt = (
        getattr(fastcnn.optim, kind)([param], **kw),
        getattr(torch.optim, kind)([tparam], **kw),
    )
    for _ in range(3):
        g = rng.standard_normal((4, 6)).astype(np.float32)
        if layout == "fortran":
            grad = np.asfortranarray(g)
        elif layout == "reversed":
            grad = np.ascontiguousarray(g[::-1])[::-1]
        else:
            grad = np.zeros((4, 12), np.float32)[:, ::2]
            grad[...] = g
        param.grad = grad
        tparam.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        np.testing.assert_array_equal(grad, g)
        np.testing.assert_allclose(param.data, tparam.detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.3, 0.5])
def test_centered_rmsprop_gradient_average_is_torchs_lerp(alpha):
    """Centered RMSprop's grad_avg follows torch's lerp_(grad, 1 - alpha) as Adam's exp_avg does:
    summed from grad at weights of 1/2 and more (summed from grad_avg, a gradient 1000x smaller
    than the last cancelled). At alpha = 0.5 the products are exact: torch's bits; elsewhere
    torch's vector lerp fuses the multiply-add, which fastcnn does not."""
    kw = {"lr": 0.01, "alpha": alpha, "centered": True, "eps": 1e-3}
    for param, tparam, opt, topt in _steps_on_shrinking_gradients(8850, 300, "RMSprop", kw):
        grad_avg, want = opt.state[param]["grad_avg"], topt.state[tparam]["grad_avg"].numpy()
        np.testing.assert_allclose(grad_avg, want, rtol=0 if alpha == 0.5 else 1e-6, atol=0)
        np.testing.assert_allclose(param.data, tparam.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_optimizer_loads_the_negative_lr_a_linear_one_cycle_ends_on_as_torch():
    """OneCycleLR's linear anneal, stepped to total_steps, leaves the lr below 0 and a cycled
    beta1 at 1 (torch's formula too); the optimizer's state_dict then loads, as torch's does,
    where fastcnn refused it ('lr: expected a value >= 0.0', 'betas[0]: expected 0 <= beta < 1').
    Such values given to the constructor are still refused."""
    kw = dict(max_lr=0.01, total_steps=10, anneal_strategy="linear", div_factor=2.0)
    param = fastcnn.Parameter(np.zeros(3, np.float32))
    tparam = torch.zeros(3, requires_grad=True)
    opt, topt = fastcnn.optim.Adam([param]), torch.optim.Adam([tparam])
    sched = fastcnn.optim.OneCycleLR(opt, **kw)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, **kw)
    for _ in range(10):
        param.grad = np.ones(3, np.float32)
        tparam.grad = torch.ones(3)
        opt.step(), topt.step(), sched.step(), tsched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
    assert opt.param_groups[0]["lr"] < 0
    again = fastcnn.optim.Adam([fastcnn.Parameter(np.zeros(3, np.float32))])
    again.load_state_dict(opt.state_dict())
    torch.optim.Adam([torch.zeros(3, requires_grad=True)]).load_state_dict(topt.state_dict())
    assert again.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="lr"):
        fastcnn.optim.Adam([param], lr=-0.1)
    # cycling beta1 too, the anneal overshoots max_momentum: beta1 = 1 at total_steps = 4
    kw = dict(max_lr=0.001, total_steps=4, pct_start=0.5, anneal_strategy="linear")
    opt, topt = fastcnn.optim.AdamW([param]), torch.optim.AdamW([tparam])
    sched = fastcnn.optim.OneCycleLR(opt, **kw)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, **kw)
    for _ in range(4):
        opt.step(), topt.step(), sched.step(), tsched.step()
    assert opt.param_groups[0]["betas"][0] == pytest.approx(topt.param_groups[0]["betas"][0])
    assert opt.param_groups[0]["betas"][0] >= 1.0
    fastcnn.optim.AdamW([fastcnn.Parameter(np.zeros(3, np.float32))]).load_state_dict(
        opt.state_dict()
    )
    with pytest.raises(ValueError, match="betas"):
        fastcnn.optim.AdamW([param], betas=(1.0, 0.999))


def test_one_cycle_phase_of_no_length_raises_naming_the_arguments():
    """pct_start * total_steps = 1 gives the warm-up phase no length: torch divides by it
    (ZeroDivisionError); fastcnn raises a ValueError naming pct_start and total_steps."""
    kw = dict(max_lr=0.5, total_steps=10, pct_start=0.1)
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(2)], momentum=0.9), **kw)
    opt = fastcnn.optim.SGD([fastcnn.Parameter(np.zeros(2, np.float32))], momentum=0.9)
    with pytest.raises(ValueError, match="pct_start, total_steps: phase 1"):
        fastcnn.optim.OneCycleLR(opt, **kw)


def test_probability_labels_refuse_an_ignore_index_as_torch():
    """Class-probability labels with an ignore_index >= 0 raise, as in torch (which refuses any
    ignore_index but a negative one there); fastcnn ignored it."""
    rng = np.random.default_rng(8700)
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    probs = rng.dirichlet(np.ones(4), 3).astype(np.float32)
    with pytest.raises(RuntimeError, match="ignore_index"):
        tF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(probs), ignore_index=0)
    for call in (
        lambda: F.cross_entropy(logits, probs, ignore_index=0),
        lambda: F.cross_entropy_backward(logits, probs, ignore_index=2),
        lambda: fastcnn.nn.CrossEntropyLoss(ignore_index=1)(logits, probs),
    ):
        with pytest.raises(ValueError, match="ignore_index"):
            call()
    expected = tF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(probs), ignore_index=-1)
    assert F.cross_entropy(logits, probs, ignore_index=-1) == pytest.approx(
        float(expected), rel=1e-5
    )


@pytest.mark.parametrize("case", range(12))
def test_cross_entropy_of_one_unbatched_row_as_torch(case):
    """Logits (C,) with a 0-d class id or a (C,) probability row, as torch takes them: every
    option and reduction ('none' gives a 0-d loss), functional and module, loss and gradient."""
    rng = np.random.default_rng(8500 + case)
    classes = int(rng.integers(2, 7))
    logits = (rng.standard_normal(classes) * 3).astype(np.float32)
    if case % 3 == 2:
        label = rng.dirichlet(np.ones(classes)).astype(np.float32)
        tlabel = _t(label, grad=False)
    else:
        label = np.array(int(rng.integers(0, classes)))
        tlabel = torch.tensor(label)
    kw = dict(reduction=("mean", "sum", "none")[case % 3], label_smoothing=(0.0, 0.2)[case % 2])
    if case % 4 == 3:
        kw["weight"] = rng.uniform(0.5, 2, classes).astype(np.float32)
    tkw = {k: _t(v, grad=False) if k == "weight" else v for k, v in kw.items()}
    lt = _t(logits)
    loss_t = tF.cross_entropy(lt, tlabel, **tkw)
    grad_out = rng.uniform(0.5, 2)
    loss_t.backward(torch.tensor(grad_out, dtype=torch.float64))
    loss = F.cross_entropy(logits, label, **kw)
    assert np.shape(loss) == tuple(loss_t.shape)
    assert float(loss) == pytest.approx(loss_t.item(), rel=1e-5, abs=1e-6)
    _close(F.cross_entropy_backward(logits, label, grad_output=grad_out, **kw), lt.grad)
    module = fastcnn.nn.CrossEntropyLoss(**kw)
    assert float(module(logits, label)) == pytest.approx(loss_t.item(), rel=1e-5, abs=1e-6)
    g = np.array(grad_out) if kw["reduction"] == "none" else grad_out
    _close(module.backward(g), lt.grad)


def test_flatten_of_a_scalar_and_empty_pool_stride_as_torch():
    """Flatten of a 0-d array gives shape (1,) as torch.flatten does, and a pooling stride of ()
    or [] means the default (kernel_size), PyTorch's own spelling of it."""
    for start, end in ((0, -1), (-1, 0), (0, 0)):
        y = fastcnn.nn.Flatten(start, end)(np.float32(3.0))
        assert y.shape == tuple(torch.nn.Flatten(start, end)(torch.tensor(3.0)).shape) == (1,)
    with pytest.raises(ValueError, match="Flatten"):
        fastcnn.nn.Flatten(1, -1)(np.float32(3.0))
    x = np.random.default_rng(8600).standard_normal((2, 3, 7, 6)).astype(np.float32)
    for stride in ((), []):
        _close(F.max_pool2d(x, 3, stride), tF.max_pool2d(_t(x), 3, stride))
        _close(F.avg_pool2d(x, 3, stride), tF.avg_pool2d(_t(x), 3, stride))
        _close(fastcnn.nn.MaxPool2d(2, stride)(x), torch.nn.MaxPool2d(2, stride)(_t(x)))
        _close(fastcnn.nn.AvgPool2d(2, stride)(x), torch.nn.AvgPool2d(2, stride)(_t(x)))


# --- nn modules as a user composes them: construction, state_dict, train and eval, backward ------


def _module_case(rng, family: str) -> tuple[str, tuple, dict, tuple]:
    """(class name, positional args, keyword args, input shape) of one random module."""

    def pair_or_int(lo, hi):
        a, b = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        return (a, b) if rng.random() < 0.5 else a

    def both(v):
        return v if isinstance(v, tuple) else (v, v)

    if family == "conv":
        groups = int(rng.choice([1, 1, 2, 3]))
        if rng.random() < 0.3:  # depthwise, with a channel multiplier
            c, k = groups, groups * int(rng.choice([1, 2, 3]))
        else:
            c, k = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        kernel, dilation = pair_or_int(1, 6), pair_or_int(1, 3)
        stride, padding = pair_or_int(1, 4), pair_or_int(0, 4)
        if rng.random() < 0.25:
            stride, padding = 1, str(rng.choice(["same", "valid"]))
        (r, s), (dh, dw) = both(kernel), both(dilation)
        h, w = int(rng.integers(1, 10)) + dh * (r - 1), int(rng.integers(1, 10)) + dw * (s - 1)
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        kw["bias"] = bool(rng.random() < 0.6)
        kw["padding_mode"] = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
        return "Conv2d", (c, k, kernel), kw, (int(rng.integers(1, 4)), c, h, w)
    if family == "pool":
        kernel = pair_or_int(1, 5)
        r, s = both(kernel)
        stride = None if rng.random() < 0.3 else pair_or_int(1, 4)
        padding = (int(rng.integers(0, r // 2 + 1)), int(rng.integers(0, s // 2 + 1)))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
        shape += (r + int(rng.integers(0, 9)), s + int(rng.integers(0, 9)))
        kw = dict(stride=stride, padding=padding, ceil_mode=bool(rng.random() < 0.4))
        if rng.random() < 0.5:
            return "MaxPool2d", (kernel,), kw, shape
        kw["count_include_pad"] = bool(rng.random() < 0.5)
        kw["divisor_override"] = None if rng.random() < 0.7 else int(rng.integers(1, 10))
        return "AvgPool2d", (kernel,), kw, shape
    if family == "adaptive":
        out = [int(rng.integers(1, 8)) if rng.random() < 0.8 else None for _ in range(2)]
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
        shape += (int(rng.integers(1, 15)), int(rng.integers(1, 15)))
        return "AdaptiveAvgPool2d", (tuple(out),), {}, shape
    if family == "batchnorm":
        c = int(rng.integers(1, 6))
        kw = dict(eps=float(rng.choice([1e-5, 1e-3, 0.1])), affine=bool(rng.random() < 0.7))
        kw["momentum"] = None if rng.random() < 0.3 else float(rng.choice([0.1, 0.5, 1.0, 0.0]))
        kw["track_running_stats"] = bool(rng.random() < 0.7)
        shape = (int(rng.integers(2, 5)), c, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        return "BatchNorm2d", (c,), kw, shape
    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank))
    if family == "linear":
        kw = dict(bias=bool(rng.random() < 0.7))
        return "Linear", (shape[-1], int(rng.integers(1, 12))), kw, shape
    if family == "flatten":
        kw = dict(start_dim=int(rng.integers(-rank, rank)), end_dim=int(rng.integers(-rank, rank)))
        return "Flatten", (), kw, shape
    if family == "leaky_relu":
        return "LeakyReLU", (float(rng.choice([0.01, 0.2, -0.5, 1.5])),), {}, shape
    dim = None if rng.random() < 0.3 else int(rng.integers(-rank, rank))
    return "Softmax", (), dict(dim=dim), shape


MODULE_FAMILIES = (
    "conv", "pool", "adaptive", "batchnorm", "linear", "flatten", "leaky_relu", "softmax"
)  # fmt: skip


@pytest.mark.parametrize("family", MODULE_FAMILIES)
@pytest.mark.parametrize("case", range(12))
def test_module_random(family, case):
    """One random module next to torch.nn's on copied state (Conv2d's padding modes included):
    state_dict keys and shapes, then in
    train and in eval mode the output, the input gradient, every parameter gradient and the
    buffers (running stats, num_batches_tracked) after the call. Construction or a call that
    torch refuses must be refused too."""
    rng = np.random.default_rng(9000 + 100 * MODULE_FAMILIES.index(family) + case)
    name, args, kw, shape = _module_case(rng, family)
    tm = getattr(torch.nn, name)(*args, **kw).double()
    m = getattr(fastcnn.nn, name)(*args, **kw)
    tstate = tm.state_dict()
    assert [(k, v.shape) for k, v in m.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in tstate.items()
    ]
    m.load_state_dict({k: v.numpy() for k, v in tstate.items()})
    for training in (True, False):
        m.train(training)
        tm.train(training)
        x = rng.standard_normal(shape).astype(np.float32)
        xt = _t(x)
        try:
            with warnings.catch_warnings():
                # torch warns about Softmax's implicit dim and "same" with an even kernel
                warnings.simplefilter("ignore", UserWarning)
                yt = tm(xt)
        except (RuntimeError, ValueError, IndexError):
            with pytest.raises((ValueError, TypeError)):
                m(x)
            continue
        y = m(x)
        _close(y, yt, 30)
        dy = rng.standard_normal(tuple(yt.shape))
        tm.zero_grad()
        yt.backward(torch.from_numpy(dy))
        m.zero_grad()
        _close(m.backward(dy.astype(np.float32)), xt.grad, 30)
        for p, tp in zip(m.parameters(), tm.parameters()):
            _close(p.grad, tp.grad, 100, rtol=1e-3)
        for key, value in tm.state_dict().items():
            _close(m.state_dict()[key], value, 10)


def _random_net(rng) -> tuple[list, tuple, int]:
    """(layers as (class name, args, kwargs), input shape, classes) of a random small CNN."""
    c, layers = int(rng.integers(1, 4)), []
    shape = (int(rng.integers(2, 5)), c, int(rng.integers(10, 18)), int(rng.integers(10, 18)))
    for _ in range(int(rng.integers(1, 4))):
        groups = c if rng.random() < 0.3 else 1
        k = groups * int(rng.integers(1, 3)) if groups > 1 else int(rng.integers(2, 9))
        kw = dict(groups=groups, bias=bool(rng.random() < 0.6))
        if rng.random() < 0.3:
            kw["padding"] = "same"
        else:
            kw.update(stride=(1, int(rng.integers(1, 3))), padding=(1, int(rng.integers(0, 2))))
        kw["dilation"] = (int(rng.integers(1, 3)), 1)
        layers.append(("Conv2d", (c, k, (3, int(rng.integers(1, 4)))), kw))
        c = k
        if rng.random() < 0.7:
            affine, track = bool(rng.random() < 0.8), bool(rng.random() < 0.8)
            momentum = None if rng.random() < 0.3 else 0.1
            bn = dict(momentum=momentum, affine=affine, track_running_stats=track)
            layers.append(("BatchNorm2d", (c,), bn))
        layers.append(("ReLU", (), {}) if rng.random() < 0.6 else ("LeakyReLU", (0.2,), {}))
        u = rng.random()
        if u < 0.4:
            layers.append(("MaxPool2d", (int(rng.choice([2, 3])),), dict(stride=2, padding=1)))
        elif u < 0.6:
            pool = dict(ceil_mode=bool(rng.random() < 0.5), count_include_pad=False)
            layers.append(("AvgPool2d", (2,), pool))
        if rng.random() < 0.2:
            layers.append(("Dropout", (0.0,), {}))
    out = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    classes = int(rng.integers(2, 7))
    layers += [("AdaptiveAvgPool2d", (out,), {}), ("Flatten", (), {})]
    layers.append(("Linear", (c * out[0] * out[1], classes), {}))
    return layers, shape, classes


@pytest.mark.parametrize("case", range(10))
def test_sequential_net_random(case):
    """A random Sequential CNN (grouped, dilated, non-square and "same" convolutions, batch norm
    options, LeakyReLU, max / average / adaptive pooling, Dropout(0)) next to torch.nn's on
    copied weights, under cross-entropy options or MSE: the loss, the input gradient, every
    parameter gradient and the state (running stats) over two training calls and one in eval."""
    rng = np.random.default_rng(9500 + case)
    torch.manual_seed(case)
    layers, shape, classes = _random_net(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "same" with an even kernel
        tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a, **kw) for n, a, kw in layers))
    tnet = tnet.double()
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a, **kw) for n, a, kw in layers))
    assert list(net.state_dict()) == list(tnet.state_dict())
    _copy_into(net, tnet)
    kind = ("mean", "sum", "smoothing", "weight", "mse")[case % 5]
    for training in (True, True, False):
        net.train(training)
        tnet.train(training)
        x = rng.standard_normal(shape).astype(np.float32)
        xt = _t(x)
        y, yt = net(x), tnet(xt)
        _close(y, yt, 30, rtol=1e-3)
        if kind == "mse":
            target = rng.standard_normal(y.shape).astype(np.float32)
            loss_fn = fastcnn.nn.MSELoss()
            loss, tloss = loss_fn(y, target), tF.mse_loss(yt, _t(target, grad=False))
        else:
            labels = rng.integers(0, classes, shape[0])
            kw = {"sum": dict(reduction="sum"), "smoothing": dict(label_smoothing=0.2)}
            kw = kw.get(kind, {})
            tkw = dict(kw)
            if kind == "weight":
                kw["weight"] = rng.uniform(0.5, 2, classes).astype(np.float32)
                tkw["weight"] = _t(kw["weight"], grad=False)
            loss_fn = fastcnn.nn.CrossEntropyLoss(**kw)
            loss = loss_fn(y, labels)
            tloss = tF.cross_entropy(yt, torch.from_numpy(labels), **tkw)
        assert loss == pytest.approx(tloss.item(), rel=1e-4, abs=1e-5)
        net.zero_grad(set_to_none=True)  # PyTorch's signature
        tnet.zero_grad()
        tloss.backward()
        _close(net.backward(loss_fn.backward()), xt.grad, 100, rtol=2e-3)
        for p, tp in zip(net.parameters(), tnet.parameters()):
            _close(p.grad, tp.grad, 100, rtol=2e-3)
        for key, value in tnet.state_dict().items():
            _close(net.state_dict()[key], value, 10)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_padding_mode_as_torch(mode, tmp_path):
    """Conv2d(padding_mode=...) on an unbatched image and a batch, with "same" padding of an even
    dilated kernel (asymmetric pads), in train and eval mode; save and load keep the mode; a pad
    that torch refuses (reflect: >= the size, circular: > the size) is refused."""
    rng = np.random.default_rng(9700)
    kw = dict(padding="same", dilation=(2, 1), groups=2, padding_mode=mode)
    conv = fastcnn.nn.Conv2d(4, 6, (2, 4), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "same" with an even kernel
        tconv = torch.nn.Conv2d(4, 6, (2, 4), **kw).double()
    _copy_into(conv, tconv)
    for shape in ((4, 5, 7), (2, 4, 6, 5)):
        for training in (True, False):
            conv.train(training)
            x = rng.standard_normal(shape).astype(np.float32)
            xt = _t(x)
            yt = tconv(xt)
            _close(conv(x), yt, 10)
            dy = rng.standard_normal(tuple(yt.shape))
            tconv.zero_grad()
            yt.backward(torch.from_numpy(dy))
            conv.zero_grad()
            _close(conv.backward(dy.astype(np.float32)), xt.grad, 10)
            _close(conv.weight.grad, tconv.weight.grad, 30)
            _close(conv.bias.grad, tconv.bias.grad, 30)
    fastcnn.save(conv, tmp_path / "conv.npz")
    restored = fastcnn.load(tmp_path / "conv.npz")
    assert restored.padding_mode == mode
    _close(restored.eval()(x), tconv(_t(x, grad=False)), 10)
    x = np.ones((1, 1, 3, 3), np.float32)
    for padding in (3, 4):
        big = fastcnn.nn.Conv2d(1, 1, 3, padding=padding, padding_mode=mode)
        if mode == "replicate" or (mode == "circular" and padding == 3):
            assert big(x).shape == (1, 1, 2 * padding + 1, 2 * padding + 1)
        else:
            with pytest.raises(ValueError, match="too large"):
                big(x)
    with pytest.raises(ValueError, match="padding_mode"):
        fastcnn.nn.Conv2d(1, 1, 3, padding_mode="mirror")


@pytest.mark.parametrize("case", range(8))
def test_max_pool_module_return_indices_as_torch(case):
    """MaxPool2d(return_indices=True) returns (output, int64 indices) as torch.nn.MaxPool2d
    does, in train and eval mode, batched and unbatched, also last in a Sequential after a
    BatchNorm2d and a ReLU (no fused or reordered pass changes the indices)."""
    rng = np.random.default_rng(9800 + case)
    kw = dict(kernel_size=int(rng.integers(2, 4)), stride=int(rng.integers(1, 3)))
    kw.update(padding=int(rng.integers(0, 2)), ceil_mode=bool(case % 2), return_indices=True)
    shape = (2, 3, 7, 8) if case % 4 < 2 else (3, 7, 8)
    x = rng.standard_normal(shape).astype(np.float32)
    for training in (True, False):
        pool = fastcnn.nn.MaxPool2d(**kw).train(training)
        y, indices = pool(x)
        xt = _t(x)
        yt, it = torch.nn.MaxPool2d(**kw)(xt)
        _close(y, yt)
        assert indices.dtype == np.int64
        np.testing.assert_array_equal(indices, it.numpy())
        dy = rng.standard_normal(y.shape).astype(np.float32)
        yt.backward(torch.from_numpy(dy.astype(np.float64)))
        _close(pool.backward(dy), xt.grad)
    if len(shape) == 4:
        layers = (fastcnn.nn.BatchNorm2d(3), fastcnn.nn.ReLU(), fastcnn.nn.MaxPool2d(**kw))
        tlayers = (torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.MaxPool2d(**kw))
        y, indices = fastcnn.nn.Sequential(*layers)(x)
        yt, it = torch.nn.Sequential(*tlayers).double()(_t(x, grad=False))
        _close(y, yt)
        np.testing.assert_array_equal(indices, it.numpy())


@pytest.mark.parametrize(
    "options",
    [
        {},
        dict(reduction="none"),
        dict(reduction="sum"),
        dict(label_smoothing=0.1, reduction="none"),
        dict(ignore_index=1, reduction="none"),
        dict(ignore_index=1, label_smoothing=0.1, reduction="none"),
        dict(weight=np.arange(1, 6, dtype=np.float32), reduction="none"),
    ],
)
def test_cross_entropy_with_minus_inf_logits_as_torch(core, options):
    """A -inf logit of a class other than the target leaves torch's loss finite (it never
    multiplies that -logp = inf by a zero coefficient), and so does a NaN row that ignore_index
    drops; with label smoothing the loss is inf, as in torch. Every compiled variant's fused
    kernel, the NumPy path of the other options, the module, and the gradients."""
    logits = np.array(
        [[0.7, 0.1, -np.inf, 0.15, -0.5], [1, 2, 3, 4, 5], [-np.inf, 1, 1, 1, -np.inf]],
        np.float32,
    )
    labels = np.array([4, 2, 3])
    if "ignore_index" in options:
        logits[1, 0], labels[1] = np.nan, 1
    kind_t = {k: _t(v, grad=False) if k == "weight" else v for k, v in options.items()}
    lt = _t(logits)
    loss_t = tF.cross_entropy(lt, torch.from_numpy(labels), **kind_t)
    loss_t.sum().backward()
    expected = loss_t.detach().numpy()
    assert np.isfinite(expected).all() == ("label_smoothing" not in options)
    grad_out = np.ones(3, np.float32) if options.get("reduction") == "none" else 1.0
    np.testing.assert_allclose(F.cross_entropy(logits, labels, **options), expected, rtol=1e-5)
    _close(F.cross_entropy_backward(logits, labels, grad_output=grad_out, **options), lt.grad)
    module = fastcnn.nn.CrossEntropyLoss(**options)
    np.testing.assert_allclose(module(logits, labels), expected, rtol=1e-5)
    _close(module.backward(grad_out), lt.grad)
    if not options:
        loss, _ = core.softmax_xent_forward(logits, labels, 0.0)
        assert loss == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("case", range(6))
def test_depthwise_input_gradient_of_non_finite_filters_as_torch(core, case):
    """An Inf or NaN filter tap of a depthwise layer (channel multiplier 1 or 2, stride 1 or 2,
    with and without padding) reaches exactly the input-gradient cells it reaches in torch: not
    the cells whose taps fall on dy's zero border or, at stride 2, on the zeros between its
    cells."""
    rng = np.random.default_rng(9900 + case)
    c, mult, stride, pad = (4, 16, 24)[case % 3], 1 + case % 2, 1 + case // 3, case % 2
    x = rng.standard_normal((2, c, 7, 9)).astype(np.float32)
    w = rng.standard_normal((c * mult, 1, 3, 3)).astype(np.float32)
    w[1, 0, 1, 1], w[2, 0, 0, 2] = np.nan, -np.inf
    args = ((stride, stride), (pad,) * 4, (1, 1), c)
    xt = _t(x)
    yt = tF.conv2d(xt, _t(w, grad=False), None, stride, pad, 1, c)
    dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    dx = core.conv2d_backward_input(dy, w, x.shape, *args)
    expected = xt.grad.numpy()
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(dx), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(dx[~finite], expected[~finite].astype(np.float32))
    _close(dx[finite], expected[finite], 10)


_CHAINABLE = {
    "StepLR": dict(step_size=3, gamma=0.5),
    "CosineAnnealingLR": dict(T_max=4, eta_min=1e-3),
    "LinearLR": dict(start_factor=0.25, end_factor=0.9, total_iters=9),
}


@pytest.mark.parametrize("name", list(_CHAINABLE))
def test_chainable_scheduler_follows_a_changed_lr_as_torch(name):
    """StepLR, CosineAnnealingLR and LinearLR step each group's current lr, as torch's do: an lr
    set by hand between steps carries on (it is not replaced by the closed form), a scheduler made
    anew on a running optimizer starts from its current lr, the values are torch's floats over
    several periods, and a resume from torch's state dict goes on the same way."""
    kw = _CHAINABLE[name]
    param = fastcnn.Parameter(np.zeros(2, np.float32))
    ours = getattr(fastcnn.optim, name)(fastcnn.optim.SGD([param], lr=0.1, momentum=0.9), **kw)
    tparam = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tparam], lr=0.1, momentum=0.9)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for step in range(20):
        if step == 7:
            ours.optimizer.param_groups[0]["lr"] = topt.param_groups[0]["lr"] = 0.03
        if step == 12:  # a new scheduler on the running optimizer starts from its current lr
            ours = getattr(fastcnn.optim, name)(ours.optimizer, **kw)
            theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
        topt.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-14, abs=1e-17)
    # resumed from torch's own state dict (its "_last_lr" holds the changed lr), on a fresh
    # optimizer: the same lrs onwards
    resumed_opt = fastcnn.optim.SGD([fastcnn.Parameter(np.zeros(2, np.float32))], lr=0.1)
    resumed = getattr(fastcnn.optim, name)(resumed_opt, **kw)
    resumed.load_state_dict(theirs.state_dict())
    for _ in range(6):
        topt.step()
        resumed.step()
        theirs.step()
        assert resumed.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-14, abs=1e-17)


def test_cross_entropy_loss_positional_arguments_as_torch():
    """nn.CrossEntropyLoss takes torch's positional order: (weight, size_average, ignore_index,
    reduce, reduction, label_smoothing), so CrossEntropyLoss(class_weights) weights the classes;
    the deprecated size_average and reduce are refused."""
    rng = np.random.default_rng(9950)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 2, 1])
    weight = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    for args in ((weight,), (weight, None, 2), (weight, None, 1, None, "sum", 0.2)):
        targs = (_t(weight, grad=False),) + args[1:]
        expected = torch.nn.CrossEntropyLoss(*targs)(_t(logits), torch.from_numpy(labels))
        assert fastcnn.nn.CrossEntropyLoss(*args)(logits, labels) == pytest.approx(
            expected.item(), rel=1e-5
        )
    for legacy in (dict(size_average=True), dict(reduce=False)):
        with pytest.raises(ValueError, match="deprecated"):
            fastcnn.nn.CrossEntropyLoss(**legacy)


@pytest.mark.parametrize(
    "warmup, main",
    [
        (dict(start_factor=0.1, total_iters=4), ("ExponentialLR", dict(gamma=0.8))),
        (dict(start_factor=0.2, total_iters=3), ("CosineAnnealingLR", dict(T_max=6))),
        (dict(start_factor=1.0, end_factor=0.0, total_iters=3), ("StepLR", dict(step_size=2))),
    ],
)
def test_linear_warmup_stepped_beside_another_scheduler_composes_as_torch(warmup, main):
    """Two schedulers stepped together on one optimizer compose, as torch's chainable ones do
    (a LinearLR warmup beside the main schedule): each scales the lr the other left, so the
    warmup's factor multiplies the main schedule's lr instead of replacing it."""
    groups, tgroups = [], []
    for lr in (0.1, 0.03):
        groups.append({"params": [fastcnn.Parameter(np.zeros(2, np.float32))], "lr": lr})
        tgroups.append({"params": [torch.zeros(2, requires_grad=True)], "lr": lr})
    opt, topt = fastcnn.optim.SGD(groups), torch.optim.SGD(tgroups)
    name, kw = main
    ours = [fastcnn.optim.LinearLR(opt, **warmup), getattr(fastcnn.optim, name)(opt, **kw)]
    theirs = [
        torch.optim.lr_scheduler.LinearLR(topt, **warmup),
        getattr(torch.optim.lr_scheduler, name)(topt, **kw),
    ]
    for _ in range(12):
        topt.step()
        for scheduler in ours + theirs:
            scheduler.step()
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == pytest.approx([g["lr"] for g in topt.param_groups], rel=1e-14, abs=1e-17)
        assert ours[1].get_last_lr() == pytest.approx(theirs[1].get_last_lr(), rel=1e-14)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("StepLR", dict(step_size=3, gamma=0.5)),
        ("CosineAnnealingLR", dict(T_max=4, eta_min=1e-3)),
        ("LinearLR", dict(start_factor=0.5, total_iters=4)),
    ],
)
@pytest.mark.parametrize("last_epoch", [0, 2, 5])
def test_scheduler_resumed_with_last_epoch_as_torch(name, kw, last_epoch):
    """last_epoch >= 0 resumes as in torch: it needs each group's 'initial_lr' (as an optimizer
    checkpoint holds it; KeyError without), the constructor's step goes to last_epoch + 1 from
    the groups' current lrs (StepLR then decays on a multiple of step_size, CosineAnnealingLR
    keeps the lr), and later steps agree."""
    groups, tgroups = [], []
    for lr in (0.1, 0.04):
        groups.append({"params": [fastcnn.Parameter(np.zeros(2, np.float32))], "lr": lr})
        tgroups.append({"params": [torch.zeros(2, requires_grad=True)], "lr": lr})
    opt = fastcnn.optim.SGD(groups, momentum=0.9)
    topt = torch.optim.SGD(tgroups, momentum=0.9)
    with pytest.raises(KeyError, match="initial_lr"):
        getattr(fastcnn.optim, name)(opt, **kw, last_epoch=last_epoch)
    for ours_group, their_group in zip(opt.param_groups, topt.param_groups):
        ours_group["initial_lr"] = their_group["initial_lr"] = 0.3
    ours = getattr(fastcnn.optim, name)(opt, **kw, last_epoch=last_epoch)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw, last_epoch=last_epoch)
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-14)
    for _ in range(10):
        topt.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-14)


def test_one_cycle_resumed_with_last_epoch_continues_the_schedule():
    """OneCycleLR(last_epoch=k) on an optimizer that holds 'initial_lr' goes on from step k + 1
    of the same schedule (torch's reads its phases' lrs from the checkpoint's groups instead)."""
    kw = dict(max_lr=0.2, total_steps=30, three_phase=True)
    param = fastcnn.Parameter(np.zeros(2, np.float32))
    fresh = fastcnn.optim.OneCycleLR(fastcnn.optim.SGD([param], momentum=0.9), **kw)
    lrs = [fresh.get_last_lr()]
    for _ in range(12):
        fresh.step()
        lrs.append(fresh.get_last_lr())
    opt = fastcnn.optim.SGD([fastcnn.Parameter(np.zeros(2, np.float32))], momentum=0.9)
    with pytest.raises(KeyError, match="initial_lr"):
        fastcnn.optim.OneCycleLR(opt, **kw, last_epoch=5)
    opt.param_groups[0]["initial_lr"] = 0.2 / 25
    resumed = fastcnn.optim.OneCycleLR(opt, **kw, last_epoch=5)
    assert resumed.get_last_lr() == lrs[6]
    for step in range(7, 13):
        resumed.step()
        assert resumed.get_last_lr() == lrs[step]


def test_multi_step_lr_loads_torchs_counted_milestones():
    """torch's MultiStepLR keeps its milestones as a Counter {step: times listed} (and takes such
    a mapping as the argument): loading its state_dict cuts twice at a milestone listed twice, as
    torch goes on. fastcnn read the mapping's keys only, cutting once."""
    param = fastcnn.Parameter(np.zeros(2, np.float32))
    tparam = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tparam], lr=0.5)
    theirs = torch.optim.lr_scheduler.MultiStepLR(topt, milestones=[4, 4, 6], gamma=0.5)
    for _ in range(2):
        topt.step()
        theirs.step()
    opt = fastcnn.optim.SGD([param], lr=0.5)
    ours = fastcnn.optim.MultiStepLR(opt, milestones=[9], gamma=0.5)
    ours.load_state_dict(theirs.state_dict())
    assert ours.milestones == [4, 4, 6]
    for _ in range(6):
        topt.step()
        theirs.step()
        ours.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-14)
    counted = fastcnn.optim.MultiStepLR(opt, milestones={3: 2, 5: 1})
    assert counted.milestones == [3, 3, 5]


@pytest.mark.parametrize(
    "name, kw",
    [
        ("StepLR", {"step_size": 3, "gamma": 0.5}),
        ("MultiStepLR", {"milestones": [2, 5, 5], "gamma": 0.5}),
        ("ExponentialLR", {"gamma": 0.8}),
        ("CosineAnnealingLR", {"T_max": 6, "eta_min": 0.01}),
        ("LinearLR", {"start_factor": 0.25, "total_iters": 4}),
        ("OneCycleLR", {"max_lr": 0.5, "total_steps": 12}),
        ("ReduceLROnPlateau", {"patience": 0, "factor": 0.5}),
    ],
)
def test_scheduler_step_with_an_epoch_as_torch(name, kw):
    """torch still takes the deprecated scheduler.step(epoch) of older training loops (with a
    UserWarning): it jumps to that step with the closed-form lrs (ReduceLROnPlateau.step(metric,
    epoch) sets last_epoch), and step() chains on from there. fastcnn raised TypeError."""
    param = fastcnn.Parameter(np.zeros(2, np.float32))
    tparam = torch.zeros(2, requires_grad=True)
    opt = fastcnn.optim.SGD([param], lr=0.5, momentum=0.9)
    topt = torch.optim.SGD([tparam], lr=0.5, momentum=0.9)
    ours = getattr(fastcnn.optim, name)(opt, **kw)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    metric = [1.0, 2.0, 0.5, 0.7, 0.8, 0.1, 0.2, 0.3]
    for step, epoch in enumerate([None, 4, None, None, 2, 7, None, 9]):
        args = (metric[step],) if name == "ReduceLROnPlateau" else ()
        topt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs.step(*args, epoch)
        with (
            pytest.warns(UserWarning, match="deprecated")
            if epoch is not None
            else warnings.catch_warnings()
        ):
            ours.step(*args, epoch)
        assert ours.last_epoch == theirs.last_epoch
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert opt.param_groups[0]["momentum"] == pytest.approx(topt.param_groups[0]["momentum"])


@pytest.mark.parametrize(
    "name, kw",
    [
        ("StepLR", {"step_size": 2, "gamma": 0.5}),
        ("MultiStepLR", {"milestones": [2, 4], "gamma": 0.5}),
        ("ExponentialLR", {"gamma": 0.8}),
        ("CosineAnnealingLR", {"T_max": 9, "eta_min": 0.001}),
        ("LinearLR", {"start_factor": 0.2, "total_iters": 4}),
    ],
)
def test_scheduler_steps_a_group_added_later_as_torch(name, kw):
    """torch's chainable schedulers step every group's lr, so a group added with
    add_param_group after the scheduler was made (a head unfrozen mid-run) decays with the
    others from its own lr; fastcnn left it at the lr it was added with."""
    params = [fastcnn.Parameter(np.zeros(2, np.float32)) for _ in range(2)]
    tparams = [torch.zeros(2, requires_grad=True) for _ in range(2)]
    opt = fastcnn.optim.SGD(params[:1], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tparams[:1], lr=0.1, momentum=0.9)
    ours = getattr(fastcnn.optim, name)(opt, **kw)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for step in range(8):
        if step == 2:
            opt.add_param_group({"params": params[1:], "lr": 0.05})
            topt.add_param_group({"params": tparams[1:], "lr": 0.05})
        topt.step()
        theirs.step()
        ours.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)


def test_module_helpers_as_torch():
    """buffers(), add_module(), apply() and Parameter.numel() behave as torch.nn's: the same
    buffers in the same order, a child added by name shows in state_dict, apply visits children
    before their parent, and the parameter count adds up."""
    layers = [("Conv2d", (3, 4, 3)), ("BatchNorm2d", (4,)), ("ReLU", ())]
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a) for n, a in layers))
    tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a) for n, a in layers))
    assert [b.shape for b in net.buffers()] == [tuple(b.shape) for b in tnet.buffers()]
    net.add_module("head", fastcnn.nn.Linear(4, 2))
    tnet.add_module("head", torch.nn.Linear(4, 2))
    assert list(net.state_dict()) == list(tnet.state_dict())
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in tnet.parameters())
    visited, tvisited = [], []
    assert net.apply(lambda m: visited.append(type(m).__name__)) is net
    tnet.apply(lambda m: tvisited.append(type(m).__name__))
    assert visited == tvisited
    with pytest.raises(TypeError, match="Module"):
        net.add_module("bad", np.zeros(3))


def test_optimizer_over_named_parameters_as_torch():
    """An optimizer takes named_parameters() as torch 2.x's do: the names go to the group's
    "param_names" (and its state dict); the steps are the same; named and unnamed groups do not
    mix."""
    layers = [("Conv2d", (2, 3, 3)), ("Flatten", ()), ("Linear", (12, 2))]
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a) for n, a in layers))
    tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a) for n, a in layers))
    _copy_into(net, tnet)
    opt = fastcnn.optim.Adam(net.named_parameters(), lr=0.01)
    topt = torch.optim.Adam(tnet.named_parameters(), lr=0.01)
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"]
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == names
    rng = np.random.default_rng(9960)
    for _ in range(3):
        for p, tp in zip(net.parameters(), tnet.parameters()):
            p.grad[...] = rng.standard_normal(p.shape).astype(np.float32)
            tp.grad = torch.from_numpy(p.grad.copy())
        opt.step()
        topt.step()
    for p, tp in zip(net.parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="named"):
        opt.add_param_group({"params": [fastcnn.Parameter(np.zeros(2))]})


def test_scalar_arguments_refuse_arrays_by_name():
    """F.cross_entropy's third positional argument is label_smoothing (torch's is weight): class
    weights passed there are refused with a message that names the argument."""
    logits, labels = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 0])
    for weight in (np.ones(3, np.float32), np.ones(1, np.float32)):
        with pytest.raises(TypeError, match="label_smoothing: expected a float, got an array"):
            F.cross_entropy(logits, labels, weight)
    with pytest.raises(TypeError, match="negative_slope: expected a float, got an array"):
        F.leaky_relu(logits, np.array([0.1, 0.2]))


# --- round 3: implicit defaults, shared modules, load_state_dict's result, None gradients ---------


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 4), (2, 3, 2, 2)])
def test_softmax_implicit_dim_as_torch(shape):
    """F.softmax / F.log_softmax without dim pick torch's dim: 0 for rank 0, 1 or 3, else 1 (a
    rank-3 input once took dim 1 here)."""
    rng = np.random.default_rng(9970 + len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    for ours, ours_bwd, theirs in (
        (F.softmax, F.softmax_backward, tF.softmax),
        (F.log_softmax, F.log_softmax_backward, tF.log_softmax),
    ):
        xt = _t(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: implicit dim is deprecated
            yt = theirs(xt)
        _close(ours(x), yt)
        yt.backward(torch.from_numpy(dy.astype(np.float64)))
        _close(ours_bwd(dy, x), xt.grad)


def test_load_state_dict_returns_missing_and_unexpected_keys_as_torch():
    """load_state_dict returns (missing_keys, unexpected_keys) as torch's does; strict raises on
    either and copies nothing."""
    layers = [("Conv2d", (2, 3, 3)), ("BatchNorm2d", (3,)), ("Flatten", ()), ("Linear", (12, 2))]
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a) for n, a in layers))
    tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a) for n, a in layers))
    state = {k: v.numpy() for k, v in tnet.state_dict().items()}
    del state["1.running_var"], state["3.bias"]
    state["4.weight"] = np.zeros(2, np.float32)
    before = net.state_dict()
    with pytest.raises(KeyError, match="1.running_var"):
        net.load_state_dict(state)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    result = net.load_state_dict(state, strict=False)
    tresult = tnet.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert result.missing_keys == tresult.missing_keys == ["1.running_var", "3.bias"]
    assert result.unexpected_keys == tresult.unexpected_keys == ["4.weight"]
    missing, unexpected = net.load_state_dict(net.state_dict())
    assert missing == unexpected == []
    np.testing.assert_array_equal(net.state_dict()["0.weight"], state["0.weight"])


def test_state_dict_without_num_batches_tracked_loads_as_torch():
    """A plain dict that lacks a batch norm's num_batches_tracked (converted from elsewhere, or
    from an older torch) loads strictly, as torch's does for a dict without its version
    metadata: the count keeps its value and is not among the missing keys."""
    layers = [("Conv2d", (2, 3, 3)), ("BatchNorm2d", (3,)), ("Flatten", ()), ("Linear", (12, 2))]
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a) for n, a in layers))
    tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a) for n, a in layers))
    net[1].num_batches_tracked[...] = 7
    with torch.no_grad():
        tnet[1].num_batches_tracked.fill_(7)
    state = {k: v.numpy() for k, v in tnet.state_dict().items() if "num_batches" not in k}
    assert net.load_state_dict(state) == ([], [])
    tnet.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert int(net[1].num_batches_tracked) == int(tnet[1].num_batches_tracked) == 7
    result = net.load_state_dict({}, strict=False)
    tresult = tnet.load_state_dict({}, strict=False)
    assert result.missing_keys == tresult.missing_keys
    with pytest.raises(ValueError, match="boolean"):
        tnet.train(0)
    with pytest.raises(ValueError, match="bool"):
        net.train(0)
    assert net.training and all(m.training for m in net.modules())


def test_parameters_and_buffers_take_recurse_as_torch():
    """parameters(recurse=False) and its kin list a module's own entries only, as torch's (a
    custom Module's own weight beside its children's); prefix names them as there."""
    nets = []
    for lib in (fastcnn.nn, torch.nn):
        inner = lib.Sequential(lib.Linear(2, 2), lib.BatchNorm1d(2))
        nets.append(lib.Sequential(inner, lib.Linear(2, 2)))
    net, tnet = nets
    for recurse in (True, False):
        for module, tmodule in ((net, tnet), (net[0][0], tnet[0][0]), (net[0][1], tnet[0][1])):
            names = [n for n, _ in module.named_parameters("p", recurse=recurse)]
            assert names == [n for n, _ in tmodule.named_parameters("p", recurse=recurse)]
            names = [n for n, _ in module.named_buffers("p", recurse=recurse)]
            assert names == [n for n, _ in tmodule.named_buffers("p", recurse=recurse)]
            assert len(list(module.parameters(recurse))) == len(list(tmodule.parameters(recurse)))
            assert len(list(module.buffers(recurse))) == len(list(tmodule.buffers(recurse)))


def test_module_lookups_and_remove_duplicate_as_torch():
    """named_parameters/named_buffers take torch's remove_duplicate (False: a shared module's
    entries under each of its names), and get_submodule/get_parameter/get_buffer find an entry
    by its dotted name or raise AttributeError, as torch's; each raised TypeError or
    AttributeError (no such method) before."""
    shared, tshared = fastcnn.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    net = fastcnn.nn.Sequential(
        shared, fastcnn.nn.BatchNorm2d(3), fastcnn.nn.Sequential(shared, fastcnn.nn.ReLU())
    )
    tnet = torch.nn.Sequential(
        tshared, torch.nn.BatchNorm2d(3), torch.nn.Sequential(tshared, torch.nn.ReLU())
    )
    for remove_duplicate in (True, False):
        for recurse in (True, False):
            kw = dict(prefix="m", recurse=recurse, remove_duplicate=remove_duplicate)
            assert [n for n, _ in net.named_parameters(**kw)] == [
                n for n, _ in tnet.named_parameters(**kw)
            ]
            assert [n for n, _ in net.named_buffers(**kw)] == [
                n for n, _ in tnet.named_buffers(**kw)
            ]
    for target in ("", "1", "2", "2.0"):
        assert type(net.get_submodule(target)).__name__ == type(tnet.get_submodule(target)).__name__
    assert net.get_parameter("2.0.weight") is shared.weight
    assert net.get_buffer("1.running_var") is net[1].running_var
    for lookup in (
        lambda m: m.get_submodule("2.5"),
        lambda m: m.get_parameter("1.nope"),
        lambda m: m.get_buffer("0.weight"),
    ):
        with pytest.raises(AttributeError):
            lookup(tnet)
        with pytest.raises(AttributeError):
            lookup(net)


def test_shared_module_is_listed_once_as_torch():
    """A module registered under two names (tied weights) is one child, one module and one set of
    parameters, as in torch, so an optimizer over parameters() takes it (it used to refuse the
    duplicate); state_dict keeps every name. Its backward keeps only the last call's input, so
    backward through a container that runs it twice raises instead of giving wrong gradients."""
    shared, tshared = fastcnn.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    net = fastcnn.nn.Sequential(shared, fastcnn.nn.ReLU(), shared)
    tnet = torch.nn.Sequential(tshared, torch.nn.ReLU(), tshared)
    assert [k for k, _ in net.named_parameters()] == [k for k, _ in tnet.named_parameters()]
    assert [k for k, _ in net.named_modules()] == [k for k, _ in tnet.named_modules()]
    assert [k for k, _ in net.named_children()] == [k for k, _ in tnet.named_children()]
    assert len(list(net.children())) == len(list(tnet.children())) == 2
    assert list(net.state_dict()) == list(tnet.state_dict())
    assert len(net.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})[0]) == 0
    fastcnn.optim.SGD(net.parameters(), lr=0.1)
    x = np.ones((2, 3), np.float32)
    _close(net(x), tnet(torch.from_numpy(x)))
    with pytest.raises(ValueError, match="more than once"):
        net.backward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="same module"):
        residual = fastcnn.nn.Residual(shared, shared)
        residual(x)
        residual.backward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("set_to_none", [True, False])
def test_step_skips_parameters_without_gradient_as_torch(name, set_to_none):
    """After zero_grad(set_to_none=True) torch's gradients are None and its optimizers leave a
    parameter no backward reached untouched (no weight decay, momentum or Adam step); fastcnn
    keeps a zero array but skips it the same way. With set_to_none=False both step it."""
    rng = np.random.default_rng(9980)
    data = [rng.standard_normal(4).astype(np.float32) for _ in range(3)]
    ps = [fastcnn.Parameter(d) for d in data]
    tps = [torch.tensor(d, requires_grad=True) for d in data]
    kw = dict(lr=0.1, weight_decay=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
    opt = getattr(fastcnn.optim, name)(ps, **kw)
    topt = getattr(torch.optim, name)(tps, **kw)
    for step in range(4):
        reached = [0, 1, 2] if step == 0 else [step % 3]  # the others get no gradient
        for i in reached:
            g = rng.standard_normal(4).astype(np.float32)
            ps[i].grad += g
            tps[i].grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(ps, tps):
            _close(p.data, tp)
        opt.zero_grad(set_to_none=set_to_none)
        topt.zero_grad(set_to_none=set_to_none)
    assert ps[0].grad_is_none == set_to_none
    # `p.grad = None`, torch's hand-made zero_grad, is one here too (backward then adds into zeros)
    ps[1].grad, tps[1].grad = None, None
    assert ps[1].grad_is_none
    np.testing.assert_array_equal(ps[1].grad, 0.0)
    # a gradient written into the array in place is a gradient
    ps[0].grad[...] = 1.0
    tps[0].grad = torch.ones(4)
    opt.step()
    topt.step()
    _close(ps[0].data, tps[0])


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_optimizers_take_every_keyword_of_torchs(name):
    """Each keyword of torch's constructor is taken, at torch's default, so code written for
    torch.optim runs unchanged: foreach and fused (which of torch's loops runs) are ignored, as
    every step here is one fused kernel; differentiable and capturable refuse True by name.
    fastcnn raised TypeError on foreach, fused, differentiable and capturable."""
    signature = inspect.signature(getattr(torch.optim, name))
    ours = getattr(fastcnn.optim, name)
    for key, arg in signature.parameters.items():
        if key != "params":
            ours([fastcnn.Parameter(np.zeros(2, np.float32))], **{key: arg.default})
    switches = {"foreach", "fused"} & signature.parameters.keys()
    rng = np.random.default_rng(9990)
    start = rng.standard_normal(4).astype(np.float32)
    p, tp = fastcnn.Parameter(start), torch.tensor(start, requires_grad=True)
    opt = ours([p], lr=0.1, **{k: True for k in switches})
    topt = getattr(torch.optim, name)([tp], lr=0.1, **{k: False for k in switches})
    for _ in range(3):
        g = rng.standard_normal(4).astype(np.float32)
        p.grad, tp.grad = g.copy(), torch.from_numpy(g)
        opt.step()
        topt.step()
        _close(p.data, tp)
    for key in {"differentiable", "capturable"} & signature.parameters.keys():
        with pytest.raises(ValueError, match=key):
            ours([fastcnn.Parameter(np.zeros(2, np.float32))], **{key: True})


def test_nesterov_groups_may_override_momentum_and_dampening_as_torch():
    """torch checks Nesterov's momentum > 0 and dampening = 0 on the constructor's arguments
    only: a group may set momentum 0 (plain steps) or a dampening, and steps as the rule says.
    fastcnn refused such a group."""
    rng = np.random.default_rng(9982)
    data = [rng.standard_normal(3).astype(np.float32) for _ in range(3)]
    ps = [fastcnn.Parameter(d) for d in data]
    tps = [torch.tensor(d, requires_grad=True) for d in data]
    overrides = [{}, {"momentum": 0.0}, {"dampening": 0.3}]
    opt = fastcnn.optim.SGD(
        [{"params": [p], **o} for p, o in zip(ps, overrides)], lr=0.1, momentum=0.9, nesterov=True
    )
    topt = torch.optim.SGD(
        [{"params": [p], **o} for p, o in zip(tps, overrides)], lr=0.1, momentum=0.9, nesterov=True
    )
    for _ in range(4):
        for p, tp in zip(ps, tps):
            g = rng.standard_normal(3).astype(np.float32)
            p.grad = g.copy()
            tp.grad = torch.from_numpy(g)
        opt.step()
        topt.step()
        for p, tp in zip(ps, tps):
            _close(p.data, tp)
    with pytest.raises(ValueError, match="nesterov"):
        fastcnn.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_zero_grad_without_set_to_none_keeps_a_missing_gradient_missing_as_torch(name):
    """torch's zero_grad(set_to_none=False) zeroes the gradients that exist and leaves a None one
    None: a parameter no backward has reached yet (a head trained later, an unused branch) is
    still skipped by step, with no weight decay or momentum, whichever zero_grad ran."""
    rng = np.random.default_rng(9981)
    data = [rng.standard_normal(3).astype(np.float32) for _ in range(2)]
    ps = [fastcnn.Parameter(d) for d in data]
    tps = [torch.tensor(d, requires_grad=True) for d in data]
    kw = dict(lr=0.1, weight_decay=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
    net = fastcnn.nn.Linear(3, 1)  # Module.zero_grad too
    opt = getattr(fastcnn.optim, name)(ps + list(net.parameters()), **kw)
    topt = getattr(torch.optim, name)(tps, **kw)
    for _ in range(3):
        opt.zero_grad(set_to_none=False)
        net.zero_grad(set_to_none=False)
        topt.zero_grad(set_to_none=False)
        g = rng.standard_normal(3).astype(np.float32)
        ps[0].grad += g  # only the first is ever reached
        tg = torch.from_numpy(g)
        tps[0].grad = tg if tps[0].grad is None else tps[0].grad + tg
        opt.step()
        topt.step()
        assert tps[1].grad is None
        assert ps[1].grad_is_none and net.weight.grad_is_none
        for p, tp in zip(ps, tps):
            _close(p.data, tp)
    np.testing.assert_array_equal(ps[1].data, data[1])
    assert 1 not in opt.state_dict()["state"] and 0 in opt.state_dict()["state"]


def test_sequential_list_operations_as_torch():
    """Sequential takes torch's list operations (replacing the head of a pretrained network with
    net[-1] = Linear(...) is the common one): assigning keeps the position's name; del, pop and
    insert number the children again; extend and += append. Names, state_dict keys and the
    forward follow torch's."""
    named = OrderedDict([("conv", ("Conv2d", (2, 3, 3))), ("act", ("ReLU", ()))])
    rest = [("Flatten", ()), ("Linear", (12, 4)), ("Tanh", ())]

    def build(lib):
        net = lib.Sequential(OrderedDict((k, getattr(lib, n)(*a)) for k, (n, a) in named.items()))
        return net.extend([getattr(lib, n)(*a) for n, a in rest])

    net, tnet = build(fastcnn.nn), build(torch.nn)
    net.load_state_dict(tnet.state_dict())
    steps = [
        lambda lib, m: m.__setitem__(-2, lib.Linear(12, 3)),
        lambda lib, m: m.__setitem__(1, lib.Sigmoid()),
        lambda lib, m: m.pop(-1),
        lambda lib, m: m.__delitem__(1),
        lambda lib, m: m.insert(1, lib.ReLU()),
        lambda lib, m: m.__iadd__(lib.Sequential(lib.ReLU())),
        lambda lib, m: m.append(lib.Linear(3, 2)),
    ]
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4)).astype(np.float32)
    for step in steps:
        step(fastcnn.nn, net)
        step(torch.nn, tnet)
        assert [k for k, _ in net.named_children()] == [k for k, _ in tnet.named_children()]
        assert [type(m).__name__ for m in net] == [type(m).__name__ for m in tnet]
        assert list(net.state_dict()) == list(tnet.state_dict())
        net.load_state_dict(tnet.state_dict())
        np.testing.assert_allclose(net(x), tnet(torch.from_numpy(x)).detach(), rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        net[len(net)] = fastcnn.nn.ReLU()
    with pytest.raises(TypeError, match="expected a Module"):
        net[0] = "relu"


def test_sequential_slice_keeps_names_as_torch(tmp_path):
    """net[a:b] keeps the children's names, as torch's: its state_dict keys are those of the same
    layers in net (they were renumbered from 0), and they survive a save and load."""
    layers = [("Conv2d", (2, 3, 3)), ("ReLU", ()), ("Flatten", ()), ("Linear", (12, 2))]
    net = fastcnn.nn.Sequential(*(getattr(fastcnn.nn, n)(*a) for n, a in layers))
    tnet = torch.nn.Sequential(*(getattr(torch.nn, n)(*a) for n, a in layers))
    for index in (slice(1, None), slice(None, None, 2), slice(-1, None), slice(0, 3)):
        assert list(net[index].state_dict()) == list(tnet[index].state_dict())
        assert [k for k, _ in net[index].named_children()] == [
            k for k, _ in tnet[index].named_children()
        ]
    fastcnn.save(net[2:], tmp_path / "head.npz")
    assert list(fastcnn.load(tmp_path / "head.npz").state_dict()) == ["3.weight", "3.bias"]


@pytest.mark.parametrize("case", range(16))
def test_rmsprop_steps_random(case):
    """RMSprop with random options (centered, momentum, weight decay, maximize), one or two
    parameter groups and a chainable scheduler or none, stepped next to torch.optim.RMSprop on the
    same gradients: parameters and learning rates agree."""
    rng = np.random.default_rng(9000 + case)
    kw = {"lr": float(rng.choice([1e-3, 0.01])), "alpha": float(rng.choice([0.9, 0.99]))}
    if rng.random() < 0.5:
        kw["momentum"] = float(rng.choice([0.5, 0.9]))
    if rng.random() < 0.5:
        kw["centered"] = True
    if rng.random() < 0.4:
        kw["eps"] = float(rng.choice([1e-6, 1e-3]))
    if rng.random() < 0.4:
        kw["weight_decay"] = float(rng.choice([1e-4, 0.01]))
    kw["maximize"] = bool(rng.random() < 0.3)
    params, tparams = _params_side_by_side(rng)
    if case % 2:  # a second group with its own lr and alpha
        extra = {"lr": kw["lr"] / 2, "alpha": 0.95}
        groups = [{"params": params[:1], **extra}, {"params": params[1:]}]
        tgroups = [{"params": tparams[:1], **extra}, {"params": tparams[1:]}]
    else:
        groups, tgroups = params, tparams
    opt = fastcnn.optim.RMSprop(groups, **kw)
    topt = torch.optim.RMSprop(tgroups, **kw)
    name, skw = [
        ("MultiStepLR", {"milestones": [2, 5, 5]}),
        ("ExponentialLR", {"gamma": 0.8}),
        ("LinearLR", {"start_factor": 0.25, "total_iters": 4}),
        (None, {}),
    ][case % 4]
    schedulers = None
    if name is not None:
        schedulers = (
            getattr(fastcnn.optim, name)(opt, **skw),
            getattr(torch.optim.lr_scheduler, name)(topt, **skw),
        )
    _step_side_by_side(rng, opt, topt, params, tparams, schedulers, 10)


# --- round 6: torch's keyword names, eval-mode batch norm with non-finite inputs -----------------


def _keyword_calls(rng):
    """(name, keyword arguments as torch.nn.functional names them) for each forward op."""
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    return [
        ("relu", dict(input=x)),
        ("leaky_relu", dict(input=x, negative_slope=0.2)),
        ("sigmoid", dict(input=x)),
        ("tanh", dict(input=x)),
        ("softmax", dict(input=x, dim=1)),
        ("log_softmax", dict(input=x, dim=-1)),
        ("max_pool2d", dict(input=x, kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("avg_pool2d", dict(input=x, kernel_size=2, count_include_pad=False)),
        ("adaptive_avg_pool2d", dict(input=x, output_size=(2, 3))),
        ("dropout", dict(input=x, p=0.3, training=False)),
        ("conv2d", dict(input=x, weight=x[:2, :, :3, :3], bias=None, stride=1, padding="same")),
        ("linear", dict(input=logits, weight=logits[:2], bias=logits[0, :2])),
        (
            "batch_norm",
            dict(input=x, running_mean=None, running_var=None, training=True, eps=1e-3),
        ),
        (
            "cross_entropy",
            dict(input=logits, target=np.array([0, 2, 1, 2]), reduction="sum", label_smoothing=0.1),
        ),
    ]


def test_functional_takes_torchs_keyword_names():
    """Each forward op takes its array arguments by torch's names (input=, target= for
    cross_entropy), as code written against torch.nn.functional passes them; they were x= (and
    logits=, labels=), so such calls raised TypeError."""
    for name, kw in _keyword_calls(np.random.default_rng(60)):
        tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        want = getattr(tF, name)(**tkw)
        _close(getattr(F, name)(**kw), want, rtol=1e-5)


# --- round 7: messages name the argument the caller passed ---------------------------------------


def test_functional_errors_name_torchs_arguments():
    """A refused array is named as the caller passed it: input (and target) for the forward ops
    that take torch's names - their messages said x: and labels: - and x or dy for a backward op
    that reruns a forward kernel; fastcnn._core names its own arguments."""
    bad = np.ones((2, 3, 6, 5), np.complex64)
    for name, kw in _keyword_calls(np.random.default_rng(61)):
        with pytest.raises(TypeError, match=r"^input: expected a real-valued array"):
            getattr(F, name)(**dict(kw, input=bad))
    logits = np.zeros((2, 3), np.float32)
    for labels, error, match in (
        (np.array([0, 3]), ValueError, r"^target: expected class ids in \[0, C\) with C = 3"),
        (np.array([0.5, 1.0]), TypeError, r"^target: .*shaped like input \(2, 3\)"),
        (np.array([0, 1, 2]), ValueError, r"^target: expected shape \(2,\)"),
    ):
        for reduction in ("mean", "sum", "none"):  # the fused kernel and the NumPy path
            with pytest.raises(error, match=match):
                F.cross_entropy(logits, labels, reduction=reduction)
        with pytest.raises(error, match=match):
            fastcnn.nn.CrossEntropyLoss()(logits, labels)
        own = match.replace("target", "labels").replace("input", "logits")
        with pytest.raises(error, match=own):
            F.cross_entropy_backward(logits, labels)  # fastcnn's own names
    with pytest.raises(ValueError, match=r"^input: expected an array \(N, C\)"):
        F.cross_entropy(np.float32(1), np.int64(0))
    with pytest.raises(ValueError, match=r"^weight: .*\(input has shape \(2, 3, 6, 5\)"):
        F.conv2d(np.ones((2, 3, 6, 5)), np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"^input: expected last dimension in_features = 4"):
        fastcnn.nn.Linear(4, 2)(np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"^input: expected 3 channels \(N, 3\) or \(N, 3, L\)"):
        fastcnn.nn.BatchNorm1d(3)(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"^input: expected an array \(N, C, H, W\) or"):
        fastcnn.nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect")(np.ones(3, np.float32))
    for backward in (F.sigmoid_backward, F.tanh_backward):
        with pytest.raises(TypeError, match=r"^x: expected a real-valued array"):
            backward(np.ones(3), bad[0, 0, 0, :3])
    for backward in (F.softmax_backward, F.log_softmax_backward):
        with pytest.raises(TypeError, match=r"^x: expected a real-valued array"):
            backward(np.ones((2, 3)), bad[0, 0, :2, :3], 1)
    with pytest.raises(ValueError, match=r"^x: expected an array \(N, C\)"):
        F.batch_norm_backward(np.ones(3), np.ones(3), None, training=True)
    with pytest.raises(TypeError, match=r"^dy: expected a real-valued array"):
        F.dropout_backward(bad, 7)
    with pytest.raises(TypeError, match=r"^input: expected a real-valued array"):
        fastcnn._core.relu_forward(bad)
    with pytest.raises(ValueError, match=r"^labels: expected class ids"):
        fastcnn._core.softmax_xent_forward(logits, np.array([0, 3]))
