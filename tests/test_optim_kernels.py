"""Tests of the optimizer update kernels (_core.sgd_step, _core.adam_step, _core.rmsprop_step):
every compiled variant against the float64 oracle over several steps and option combinations, the
variants bit for bit against ref at 1 and 2 threads, the oracle against torch.optim, and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref

import fastcnn

# Odd sizes off the SIMD width, a 0-d scalar, and one large enough to run on several threads.
SHAPES = [(), (1,), (7,), (3, 5, 7), (33, 17), (1000003,)]
STEPS = 4
# Each step is checked from the kernel's own float32 state, so the error is one step's rounding:
# a few float32 ulps of the terms. Relative 2e-6 per element, and 2e-6 of the array's largest
# value for elements that cancel (param - lr * d): an FMA-contracted variant is within this, a
# wrong coefficient (the lrs below make each update a large part of param) is far outside it.
RTOL = 2e-6
SCALE_ATOL = 2e-6

SGD_OPTIONS = [
    {"lr": 0.1},
    {"lr": 0.1, "weight_decay": 0.3},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.2},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.1},
]
ADAM_OPTIONS = [
    {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    {"lr": 0.1, "beta1": 0.5, "beta2": 0.9, "eps": 0.1},  # eps big enough for its place to show
    {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "eps": 1e-3, "weight_decay": 0.3},
    {"lr": 0.1, "beta1": 0.8, "beta2": 0.95, "eps": 1e-3, "weight_decay": 0.3, "decoupled": True},
]

RMSPROP_OPTIONS = [
    {"lr": 0.01, "alpha": 0.99, "eps": 1e-8},
    {"lr": 0.05, "alpha": 0.9, "eps": 0.1},  # eps big enough for its place to show
    {"lr": 0.01, "alpha": 0.9, "eps": 1e-3, "weight_decay": 0.3},
    {"lr": 0.01, "alpha": 0.8, "eps": 1e-3, "momentum": 0.9},
    {"lr": 0.01, "alpha": 0.95, "eps": 1e-2, "weight_decay": 0.2, "momentum": 0.5},
]


def assert_close(got: np.ndarray, want: np.ndarray, name: str) -> None:
    atol = SCALE_ATOL * float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=name)


def nonzero(rng: np.random.Generator, shape, scale: float = 1.0) -> np.ndarray:
    """Standard normal float32 values kept away from zero (a zero hides a missing term)."""
    x = rng.standard_normal(shape)
    return np.array(scale * np.where(np.abs(x) < 0.1, 0.1 + x, x), np.float32)


def sgd_kwargs(options: dict) -> dict:
    return {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, **options}


def adam_kwargs(options: dict) -> dict:
    return {"weight_decay": 0.0, "decoupled": False, **options}


@pytest.mark.parametrize("options", SGD_OPTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_sgd_step_matches_oracle(core, rng, shape, options):
    kw = sgd_kwargs(options)
    param = nonzero(rng, shape)
    buf = np.full(shape, np.nan, np.float32)  # the first step must overwrite it
    for step in range(STEPS):
        grad = nonzero(rng, shape)
        first = step == 0
        want_p, want_buf = ref.sgd_step(param, grad, buf, first_step=first, **kw)
        core.sgd_step(param, grad, buf, init_buffer=first, **kw)
        assert_close(param, want_p, f"param, step {step}")
        if kw["momentum"]:
            assert_close(buf, want_buf, f"momentum_buffer, step {step}")


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("options", ADAM_OPTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_adam_step_matches_oracle(core, rng, shape, options, amsgrad):
    kw = adam_kwargs(options)
    param = nonzero(rng, shape)
    m = np.zeros(shape, np.float32)
    v = np.zeros(shape, np.float32)
    # amsgrad's running max starts above v in some elements, so that both sides of max count
    v_max = None
    if amsgrad:
        v_max = np.array(np.abs(nonzero(rng, shape, 0.01)) * (rng.random(shape) < 0.3), np.float32)
    for step in range(1, STEPS + 1):
        grad = nonzero(rng, shape)
        want = ref.adam_step(param, grad, m, v, v_max, step, **kw)
        core.adam_step(param, grad, m, v, v_max, step, **kw)
        for name, got, expected in zip(["param", "exp_avg", "exp_avg_sq"], [param, m, v], want):
            assert_close(got, expected, f"{name}, step {step}")
        if amsgrad:
            assert_close(v_max, want[3], f"max_exp_avg_sq, step {step}")


def rmsprop_kwargs(options: dict) -> dict:
    return {"weight_decay": 0.0, "momentum": 0.0, **options}


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("options", RMSPROP_OPTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_rmsprop_step_matches_oracle(core, rng, shape, options, centered):
    kw = rmsprop_kwargs(options)
    param = nonzero(rng, shape)
    v = np.zeros(shape, np.float32)
    # centered: the gradient average starts at zero, as torch's does (and v >= ga^2 stays true)
    ga = np.zeros(shape, np.float32) if centered else None
    buf = np.zeros(shape, np.float32) if kw["momentum"] else None
    for step in range(STEPS):
        grad = nonzero(rng, shape)
        want = ref.rmsprop_step(param, grad, v, ga, buf, **kw)
        core.rmsprop_step(param, grad, v, ga, buf, **kw)
        for name, got, expected in zip(["param", "square_avg", "grad_avg", "momentum_buffer"],
                                       [param, v, ga, buf], want):  # fmt: skip
            if got is not None:
                assert_close(got, expected, f"{name}, step {step}")


def run_sgd(core, param, grads, options):
    param, buf = param.copy(), np.zeros_like(param)
    for i, grad in enumerate(grads):
        core.sgd_step(param, grad, buf, init_buffer=i == 0, **sgd_kwargs(options))
    return param, buf


def run_adam(core, param, grads, options):
    param = param.copy()
    state = [np.zeros_like(param) for _ in range(3)]
    for t, grad in enumerate(grads, 1):
        core.adam_step(param, grad, *state, t, **adam_kwargs(options))
    return param, *state


def run_rmsprop(core, param, grads, options, centered):
    param = param.copy()
    state = [np.zeros_like(param) for _ in range(3)]
    if not centered:
        state[1] = None
    for grad in grads:
        core.rmsprop_step(param, grad, *state, **rmsprop_kwargs(options))
    return [param] + [a for a in state if a is not None]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", sorted(set(fastcnn._core._variants) - {"ref"}))
def test_variants_match_ref_bit_for_bit(rng, variant, threads):
    # Every variant rounds the same operations in the same order (no FMA contraction) and the
    # update is elementwise, so neither the ISA nor the split across threads may change a bit.
    fast, slow = fastcnn._core._variants[variant], fastcnn._core._variants["ref"]
    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(threads)
    try:
        for shape in [(13,), (1000003,)]:
            param = nonzero(rng, shape)
            grads = [nonzero(rng, shape) for _ in range(3)]
            for options in SGD_OPTIONS:
                for got, want in zip(
                    run_sgd(fast, param, grads, options), run_sgd(slow, param, grads, options)
                ):
                    np.testing.assert_array_equal(got, want, err_msg=str(options))
            for options in ADAM_OPTIONS:
                for got, want in zip(
                    run_adam(fast, param, grads, options), run_adam(slow, param, grads, options)
                ):
                    np.testing.assert_array_equal(got, want, err_msg=str(options))
            for options in RMSPROP_OPTIONS:
                for centered in (False, True):
                    for got, want in zip(
                        run_rmsprop(fast, param, grads, options, centered),
                        run_rmsprop(slow, param, grads, options, centered),
                    ):
                        np.testing.assert_array_equal(got, want, err_msg=str(options))
    finally:
        fastcnn.set_num_threads(before)


def test_amsgrad_max_keeps_nan(core):
    # np.maximum and torch.maximum propagate a NaN from either side
    param = np.ones(9, np.float32)
    grad = np.ones(9, np.float32)
    v_max = np.zeros(9, np.float32)
    v_max[2] = np.nan
    m, v = np.zeros(9, np.float32), np.zeros(9, np.float32)
    core.adam_step(param, grad, m, v, v_max, 1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    assert np.isnan(v_max[2]) and np.isnan(param[2])
    assert np.isfinite(np.delete(param, 2)).all()


def test_options_that_round_to_zero_in_float32_stay_on(core):
    # The old NumPy code, like torch, tested the Python float: momentum 1e-50 still keeps the
    # buffer (times 0.0f), and weight decay 1e-50 still adds param * 0.0f, NaN for an inf param.
    param = np.array([1.0, np.inf], np.float32)
    grad = np.array([0.5, 0.5], np.float32)
    buf = np.full(2, 7.0, np.float32)
    core.sgd_step(param, grad, buf, lr=0.1, momentum=1e-50, init_buffer=True)
    np.testing.assert_array_equal(buf, grad)
    core.sgd_step(param, grad, buf, lr=0.1, momentum=1e-50, weight_decay=1e-50)
    step = np.float32(0.5) * np.float32(0.1)  # d * lr, with d = g both times
    assert param[0] == (np.float32(1.0) - step) - step and np.isnan(param[1])
    param = np.array([1.0, np.inf], np.float32)
    m, v = np.zeros(2, np.float32), np.zeros(2, np.float32)
    core.adam_step(param, grad, m, v, None, 1, 0.1, 0.9, 0.999, 1e-8, weight_decay=1e-50)
    assert np.isfinite(param[0]) and np.isnan(param[1])


def test_empty_parameter(core):
    param = np.zeros(0, np.float32)
    core.sgd_step(param, param.copy(), param.copy(), lr=0.1, momentum=0.9)
    core.adam_step(param, *(param.copy() for _ in range(3)), None, 1, 0.1, 0.9, 0.999, 1e-8)
    core.rmsprop_step(param, *(param.copy() for _ in range(4)), 0.1, 0.9, 1e-8, momentum=0.9)


# --- the oracle against torch.optim ---------------------------------------------------------------


@pytest.mark.parametrize("options", SGD_OPTIONS)
def test_sgd_oracle_matches_torch(rng, options):
    torch = pytest.importorskip("torch")
    kw = sgd_kwargs(options)
    param, buf = nonzero(rng, (5, 7)).astype(np.float64), None
    t = torch.nn.Parameter(torch.from_numpy(param.copy()))
    opt = torch.optim.SGD([t], **kw)
    for step in range(STEPS):
        grad = nonzero(rng, (5, 7)).astype(np.float64)
        param, buf = ref.sgd_step(param, grad, buf, first_step=step == 0, **kw)
        t.grad = torch.from_numpy(grad)
        opt.step()
        np.testing.assert_allclose(param, t.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("options", ADAM_OPTIONS)
def test_adam_oracle_matches_torch(rng, options, amsgrad):
    torch = pytest.importorskip("torch")
    kw = adam_kwargs(options)
    param = nonzero(rng, (5, 7)).astype(np.float64)
    m, v = np.zeros_like(param), np.zeros_like(param)
    v_max = np.zeros_like(param) if amsgrad else None
    t = torch.nn.Parameter(torch.from_numpy(param.copy()))
    cls = torch.optim.AdamW if kw["decoupled"] else torch.optim.Adam
    opt = cls(
        [t],
        lr=kw["lr"],
        betas=(kw["beta1"], kw["beta2"]),
        eps=kw["eps"],
        weight_decay=kw["weight_decay"],
        amsgrad=amsgrad,
    )
    for step in range(1, STEPS + 1):
        grad = nonzero(rng, (5, 7)).astype(np.float64)
        param, m, v, v_max = ref.adam_step(param, grad, m, v, v_max, step, **kw)
        t.grad = torch.from_numpy(grad)
        opt.step()
        np.testing.assert_allclose(param, t.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("options", RMSPROP_OPTIONS)
def test_rmsprop_oracle_matches_torch(rng, options, centered):
    torch = pytest.importorskip("torch")
    kw = rmsprop_kwargs(options)
    param = nonzero(rng, (5, 7)).astype(np.float64)
    v = np.zeros_like(param)
    ga = np.zeros_like(param) if centered else None
    buf = np.zeros_like(param) if kw["momentum"] else None
    t = torch.nn.Parameter(torch.from_numpy(param.copy()))
    opt = torch.optim.RMSprop([t], centered=centered, **kw)
    for _ in range(STEPS):
        grad = nonzero(rng, (5, 7)).astype(np.float64)
        param, v, ga, buf = ref.rmsprop_step(param, grad, v, ga, buf, **kw)
        t.grad = torch.from_numpy(grad)
        opt.step()
        np.testing.assert_allclose(param, t.detach().numpy(), rtol=1e-12, atol=1e-12)


# --- bad input ------------------------------------------------------------------------------------


def sgd_arrays(n: int = 10):
    return [np.ones(n, np.float32) for _ in range(3)]


def adam_arrays(n: int = 10):
    return [np.ones(n, np.float32) for _ in range(5)]


def read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# (argument position, bad value, error, message pattern)
BAD_ARRAYS = [
    (0, np.ones(10, np.float64), TypeError, "param: expected a float32 NumPy array.*float64"),
    (0, [1.0] * 10, TypeError, "param: expected a float32 NumPy array.*list"),
    (0, None, TypeError, "param: expected a float32 NumPy array"),
    (0, np.ones(20, np.float32)[::2], ValueError, "param: expected a C-contiguous array"),
    (0, read_only(np.ones(10, np.float32)), ValueError, "param: expected a writeable array"),
    (0, np.ones(10, ">f4"), TypeError, "param: expected a float32"),
    (1, np.ones(10, np.float16), TypeError, "grad: expected a float32 NumPy array.*float16"),
    (1, np.ones(11, np.float32), ValueError, r"grad: expected shape \(10,\), got shape \(11,\)"),
    (1, np.ones((2, 5), np.float32), ValueError, r"grad: expected shape \(10,\)"),
    (1, np.ones(20, np.float32)[1::2], ValueError, "grad: expected a C-contiguous array"),
    (2, read_only(np.ones(10, np.float32)), ValueError, "expected a writeable array"),
    (2, np.ones(10, np.int32), TypeError, "expected a float32 NumPy array.*int32"),
    (2, np.ones(9, np.float32), ValueError, "expected shape"),
]


@pytest.mark.parametrize("position, bad, error, match", BAD_ARRAYS)
def test_sgd_step_refuses_bad_arrays(core, position, bad, error, match):
    arrays = sgd_arrays()
    arrays[position] = bad
    match = f"momentum_buffer: {match}" if position == 2 else match
    with pytest.raises(error, match=match):
        core.sgd_step(*arrays, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("position", [2, 3, 4])
@pytest.mark.parametrize("_, bad, error, match", [b for b in BAD_ARRAYS if b[0] == 2])
def test_adam_step_refuses_bad_state(core, position, _, bad, error, match):
    arrays = adam_arrays()
    arrays[position] = bad
    name = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"][position - 2]
    with pytest.raises(error, match=f"{name}: {match}"):
        core.adam_step(*arrays, 1, 0.1, 0.9, 0.999, 1e-8)


@pytest.mark.parametrize("position, bad, error, match", [b for b in BAD_ARRAYS if b[0] < 2])
def test_adam_step_refuses_bad_param_or_grad(core, position, bad, error, match):
    arrays = adam_arrays()
    arrays[position] = bad
    with pytest.raises(error, match=match):
        core.adam_step(*arrays, 1, 0.1, 0.9, 0.999, 1e-8)


def rmsprop_arrays(n: int = 10):
    return [np.ones(n, np.float32) for _ in range(5)]


@pytest.mark.parametrize("position", [2, 3, 4])
@pytest.mark.parametrize("_, bad, error, match", [b for b in BAD_ARRAYS if b[0] == 2])
def test_rmsprop_step_refuses_bad_state(core, position, _, bad, error, match):
    arrays = rmsprop_arrays()
    arrays[position] = bad
    name = ["square_avg", "grad_avg", "momentum_buffer"][position - 2]
    with pytest.raises(error, match=f"{name}: {match}"):
        core.rmsprop_step(*arrays, 0.01, 0.99, 1e-8, momentum=0.9)


@pytest.mark.parametrize("position, bad, error, match", [b for b in BAD_ARRAYS if b[0] < 2])
def test_rmsprop_step_refuses_bad_param_or_grad(core, position, bad, error, match):
    arrays = rmsprop_arrays()
    arrays[position] = bad
    with pytest.raises(error, match=match):
        core.rmsprop_step(*arrays, 0.01, 0.99, 1e-8)


def test_refuses_overlapping_arrays(core):
    # an update in place through a shifted view would read values it has already written
    base = np.ones(11, np.float32)
    param, grad, buf = base[1:], base[:-1], np.ones(10, np.float32)
    with pytest.raises(ValueError, match="grad: shares memory with param"):
        core.sgd_step(param, grad, buf, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buffer: shares memory with param"):
        core.sgd_step(param, np.ones(10, np.float32), param, lr=0.1, momentum=0.9)
    m, v = np.ones(10, np.float32), np.ones(10, np.float32)
    with pytest.raises(ValueError, match="exp_avg_sq: shares memory with exp_avg"):
        core.adam_step(param, buf, m, m, None, 1, 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="max_exp_avg_sq: shares memory with param"):
        core.adam_step(param, buf, m, v, param, 1, 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="grad_avg: shares memory with square_avg"):
        core.rmsprop_step(param, buf, m, m, None, 0.01, 0.99, 1e-8)
    with pytest.raises(ValueError, match="momentum_buffer: shares memory with grad"):
        core.rmsprop_step(param, buf, m, v, buf, 0.01, 0.99, 1e-8, momentum=0.9)
    np.testing.assert_array_equal(base, 1.0)  # nothing was written


def test_sgd_momentum_needs_a_buffer(core):
    param, grad, _ = sgd_arrays()
    with pytest.raises(ValueError, match=r"momentum_buffer: expected an array .*\(10,\).*None"):
        core.sgd_step(param, grad, None, lr=0.1, momentum=0.9)
    core.sgd_step(param, grad, None, lr=0.1)  # no buffer without momentum
    np.testing.assert_array_equal(param, np.float32(0.9))


def test_rmsprop_momentum_needs_a_buffer(core):
    param, grad, v, _, _ = rmsprop_arrays()
    with pytest.raises(ValueError, match=r"momentum_buffer: expected an array .*\(10,\).*None"):
        core.rmsprop_step(param, grad, v, None, None, 0.01, 0.99, 1e-8, momentum=0.9)
    np.testing.assert_array_equal(param, 1.0)
    core.rmsprop_step(param, grad, v, None, None, 0.01, 0.99, 1e-8)  # no buffer without momentum
    assert (param < 1.0).all()


def test_adam_step_count_starts_at_one(core):
    with pytest.raises(ValueError, match="step: expected .* >= 1, got 0"):
        core.adam_step(*adam_arrays(), 0, 0.1, 0.9, 0.999, 1e-8)


def test_bad_scalars_raise_type_error(core):
    with pytest.raises(TypeError):
        core.sgd_step(*sgd_arrays(), lr="0.1")
    with pytest.raises(TypeError):
        core.adam_step(*adam_arrays(), 1.5, 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError):
        core.rmsprop_step(*rmsprop_arrays(), "0.01", 0.99, 1e-8)
