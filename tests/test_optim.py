"""Parameter, optimizers and schedulers: torch.optim parity, checkpoint round trips, bad arguments.

The update kernels themselves are tested against the float64 oracle in test_optim_kernels.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import fastcnn
from fastcnn import optim
from fastcnn.parameter import Parameter

torch = pytest.importorskip("torch")

SHAPES = [(3, 4, 5), (7,), (16, 3, 3, 3), (), (1, 10)]
STEPS = 20
# Relative 1e-6 per element, with a floor at 1e-6 of the parameter's scale: torch fuses a * b + c
# into one FMA where NumPy rounds twice, so an element that cancels to near zero differs by an ulp
# of its inputs, which is large relative to itself.
RTOL = 1e-6
SCALE_ATOL = 1e-6


def assert_params_close(params: list[Parameter], tensors: list) -> None:
    for p, t in zip(params, tensors):
        expected = t.detach().numpy()
        atol = SCALE_ATOL * max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
        np.testing.assert_allclose(p.data, expected, rtol=RTOL, atol=atol)


def make_pair(rng: np.random.Generator, shapes=SHAPES):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params = [Parameter(a) for a in arrays]
    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    return params, tensors


def set_grads(rng: np.random.Generator, params: list[Parameter], tensors: list) -> None:
    for p, t in zip(params, tensors):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad[...] = g
        t.grad = torch.from_numpy(g.copy())


# --- Parameter -----------------------------------------------------------------------------------


def test_parameter_copies_to_float32_and_starts_with_zero_grad(rng):
    source = rng.standard_normal((4, 3))[:, ::2]  # float64, not contiguous
    p = Parameter(source)
    assert p.data.dtype == np.float32 and p.data.flags.c_contiguous
    assert p.shape == (4, 2) and p.size == 8
    np.testing.assert_array_equal(p.data, source.astype(np.float32))
    assert p.grad.shape == p.shape and p.grad.dtype == np.float32 and not p.grad.any()
    p.data += 1
    assert not np.shares_memory(p.data, source)
    assert repr(p) == "Parameter(shape=(4, 2))"


def test_parameter_zero_grad_reuses_the_buffer(rng):
    p = Parameter(rng.standard_normal(5))
    p.grad += rng.standard_normal(5).astype(np.float32)
    buffer = p.grad
    p.zero_grad()
    assert p.grad is buffer and not p.grad.any()


def test_parameter_has_slots():
    p = Parameter(np.ones(2))
    with pytest.raises(AttributeError):
        p.other = 1


@pytest.mark.parametrize("bad", [np.array([True, False]), np.array(["a"]), np.ones(2) * 1j])
def test_parameter_refuses_non_real_data(bad):
    with pytest.raises(TypeError, match="data"):
        Parameter(bad)


# --- optimizers against torch --------------------------------------------------------------------

OPTIMIZER_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.02, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "maximize": True}),  # the () shape too
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.02, "amsgrad": True, "weight_decay": 0.05, "betas": (0.5, 0.9)}),
    ("Adam", {"lr": 0.01, "maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "amsgrad": True, "eps": 1e-3}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.005, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.05}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.005, "centered": True}),
    ("RMSprop", {"lr": 0.002, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9, "maximize": True}),
]


@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZER_CASES)
def test_optimizer_matches_torch(rng, name, kwargs):
    params, tensors = make_pair(rng)
    opt = getattr(optim, name)(params, **kwargs)
    ref = getattr(torch.optim, name)(tensors, **kwargs)
    for _ in range(STEPS):
        set_grads(rng, params, tensors)
        opt.step()
        ref.step()
    assert_params_close(params, tensors)


# A Linear weight the size of fmnist_bn's (split across threads by the kernels) and a small bias.
LARGE_SHAPES = [(3136, 128), (129,)]
LARGE_CASES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.05}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    # (no weight decay: RMSprop divides g by about |g|, so where g + weight_decay * w cancels to
    # near zero in one of these 400k elements, torch's FMA and the kernels' two roundings give
    # steps that differ by 1e-5; test_optimizer_matches_torch covers weight decay)
    ("RMSprop", {"lr": 0.005, "centered": True, "momentum": 0.9}),
]


@pytest.mark.parametrize(("name", "kwargs"), LARGE_CASES)
def test_optimizer_matches_torch_on_a_large_parameter(rng, name, kwargs):
    params, tensors = make_pair(rng, LARGE_SHAPES)
    opt = getattr(optim, name)(params, **kwargs)
    ref = getattr(torch.optim, name)(tensors, **kwargs)
    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(2)
    try:
        for _ in range(5):
            set_grads(rng, params, tensors)
            opt.step()
            ref.step()
    finally:
        fastcnn.set_num_threads(before)
    assert_params_close(params, tensors)


@pytest.mark.parametrize(("name", "kwargs"), LARGE_CASES)
def test_steps_do_not_depend_on_the_thread_count(rng, name, kwargs):
    grads = [[rng.standard_normal(s).astype(np.float32) for s in LARGE_SHAPES] for _ in range(3)]
    start = [rng.standard_normal(s).astype(np.float32) for s in LARGE_SHAPES]
    results = []
    before = fastcnn.get_num_threads()
    try:
        for threads in (1, 2):
            fastcnn.set_num_threads(threads)
            params = [Parameter(a) for a in start]
            opt = getattr(optim, name)(params, **kwargs)
            for step_grads in grads:
                for p, g in zip(params, step_grads):
                    p.grad[...] = g
                opt.step()
            results.append([p.data for p in params])
    finally:
        fastcnn.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_defaults_match_torch():
    p = [Parameter(np.ones(2))]
    t = [torch.nn.Parameter(torch.ones(2))]
    for name in ("SGD", "Adam", "AdamW", "RMSprop"):
        ours = getattr(optim, name)(p).param_groups[0]
        theirs = getattr(torch.optim, name)(t).param_groups[0]
        for key, value in ours.items():
            if key != "params":
                assert theirs[key] == value, (name, key)


def test_param_groups_have_their_own_options(rng):
    params, tensors = make_pair(rng)

    def groups(ps):
        return [
            {"params": ps[:2]},
            {"params": ps[2:], "lr": 0.01, "momentum": 0.5, "weight_decay": 0.1},
        ]

    opt = optim.SGD(groups(params), lr=0.1, momentum=0.9)
    ref = torch.optim.SGD(groups(tensors), lr=0.1, momentum=0.9)
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[0]["lr"] == 0.1
    for _ in range(STEPS):
        set_grads(rng, params, tensors)
        opt.step()
        ref.step()
    assert_params_close(params, tensors)


def test_step_updates_in_place_and_zero_grad_zeroes(rng):
    params, _ = make_pair(rng)
    buffers = [(p.data, p.grad) for p in params]
    opt = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad[...] = 1.0
    before = [p.data.copy() for p in params]
    opt.step()
    opt.zero_grad()
    for p, (data, grad), old in zip(params, buffers, before):
        assert p.data is data and p.grad is grad
        assert not p.grad.any()
        assert np.all(p.data < old)


def test_step_returns_the_closure_value():
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.1)
    assert opt.step(lambda: 1.5) == 1.5
    assert opt.step() is None


# --- checkpoints ---------------------------------------------------------------------------------


def json_round_trip(state: object) -> object:
    """What a checkpoint does: arrays stored aside, everything else through JSON."""
    arrays: list[np.ndarray] = []

    def strip(value):
        if isinstance(value, np.ndarray):
            arrays.append(value)
            return {"__array__": len(arrays) - 1}
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        assert value is None or isinstance(value, (bool, int, float, str)), type(value)
        return value

    def restore(value):
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]]
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    return restore(json.loads(json.dumps(strip(state))))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
        ("AdamW", {"lr": 0.01}),
        ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True}),
    ],
)
def test_state_dict_round_trip_continues_identically(rng, name, kwargs):
    params, _ = make_pair(rng)
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(12)]
    opt = getattr(optim, name)(params, **kwargs)

    def run(optimizer, ps, steps):
        for step_grads in steps:
            for p, g in zip(ps, step_grads):
                p.grad[...] = g
            optimizer.step()

    run(opt, params, grads[:5])
    saved = opt.state_dict()
    saved_copy = json_round_trip(saved)
    resumed_params = [Parameter(p.data) for p in params]
    fresh = getattr(optim, name)(resumed_params, lr=123.0)  # options come back from the checkpoint
    fresh.load_state_dict(saved_copy)
    assert fresh.param_groups[0]["lr"] == kwargs["lr"]

    snapshot = {i: {k: np.copy(v) for k, v in e.items()} for i, e in saved["state"].items()}
    run(opt, params, grads[5:])
    run(fresh, resumed_params, grads[5:])
    for p, q in zip(params, resumed_params):
        np.testing.assert_array_equal(p.data, q.data)
    for i, entry in saved["state"].items():  # the state dict is a snapshot, not a live view
        for k, v in entry.items():
            np.testing.assert_array_equal(v, snapshot[i][k])


def test_state_dict_holds_plain_values(rng):
    params, _ = make_pair(rng, [(2, 3), (4,)])
    opt = optim.Adam(params)
    for p in params:
        p.grad[...] = 1
    opt.step()
    state = opt.state_dict()
    assert state["param_groups"] == [
        {
            "lr": 1e-3,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "weight_decay": 0.0,
            "amsgrad": False,
            "maximize": False,
            "decoupled_weight_decay": False,
            "params": [0, 1],
        }
    ]
    assert sorted(state["state"]) == [0, 1]
    assert state["state"][0]["step"] == 1 and type(state["state"][0]["step"]) is int
    assert state["state"][1]["exp_avg"].shape == (4,)


def test_load_state_dict_checks_and_changes_nothing_on_error(rng):
    params, _ = make_pair(rng, [(2, 3), (4,)])
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad[...] = 1
    opt.step()
    good = opt.state_dict()
    before = opt.state_dict()

    bad_shape = json_round_trip(good)
    bad_shape["state"]["1"]["momentum_buffer"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"momentum_buffer.*expected shape \(4,\), got \(5,\)"):
        opt.load_state_dict(bad_shape)

    bad_lr = json_round_trip(good)
    bad_lr["param_groups"][0]["lr"] = float("nan")  # a negative lr loads: schedulers set one
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(bad_lr)

    unknown = json_round_trip(good)
    unknown["state"]["0"]["exp_avg"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="exp_avg"):
        opt.load_state_dict(unknown)

    stray = json_round_trip(good)
    stray["state"]["7"] = stray["state"]["0"]
    with pytest.raises(ValueError, match="7"):
        opt.load_state_dict(stray)

    with pytest.raises(ValueError, match="groups"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(good)
    with pytest.raises(ValueError, match="parameters"):
        optim.SGD(params[:1]).load_state_dict(good)
    with pytest.raises(ValueError, match="param_groups"):
        opt.load_state_dict({"state": {}})

    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        np.testing.assert_array_equal(
            after["state"][i]["momentum_buffer"], before["state"][i]["momentum_buffer"]
        )


def test_rmsprop_state_matches_torch(rng):
    params, tensors = make_pair(rng, [(2, 3)])
    kwargs = {"lr": 0.01, "momentum": 0.9, "centered": True}
    opt, ref = optim.RMSprop(params, **kwargs), torch.optim.RMSprop(tensors, **kwargs)
    for _ in range(3):
        set_grads(rng, params, tensors)
        opt.step()
        ref.step()
    ours, theirs = opt.state_dict(), ref.state_dict()
    assert set(ours["state"][0]) == set(theirs["state"][0])
    assert ours["state"][0]["step"] == int(theirs["state"][0]["step"]) == 3
    for name in ("square_avg", "momentum_buffer", "grad_avg"):
        np.testing.assert_allclose(
            ours["state"][0][name], theirs["state"][0][name].numpy(), rtol=1e-5, atol=1e-7
        )
    for key, value in theirs["param_groups"][0].items():
        if key in ours["param_groups"][0]:
            assert ours["param_groups"][0][key] == value, key
    plain = optim.RMSprop(params)
    params[0].grad[...] = 1.0
    plain.step()
    assert sorted(plain.state_dict()["state"][0]) == ["square_avg", "step"]
    saved = opt.state_dict()
    del saved["state"][0]["grad_avg"]
    with pytest.raises(ValueError, match="grad_avg"):  # a centered state needs its average
        optim.RMSprop(params).load_state_dict(saved)


def test_load_state_dict_needs_every_adam_entry(rng):
    params, _ = make_pair(rng, [(3,)])
    opt = optim.Adam(params, amsgrad=True)
    params[0].grad[...] = 1
    opt.step()
    saved = opt.state_dict()
    del saved["state"][0]["max_exp_avg_sq"]
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        optim.Adam(params, amsgrad=True).load_state_dict(saved)
    saved = opt.state_dict()
    for bad_step in (1.5, -1, "3", np.ones(2)):
        saved["state"][0]["step"] = bad_step
        with pytest.raises(ValueError, match="step"):
            optim.Adam(params, amsgrad=True).load_state_dict(saved)


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda ps: optim.SGD(ps, lr=-0.1), ValueError, "lr"),
        (lambda ps: optim.SGD(ps, lr="fast"), TypeError, "lr"),
        (lambda ps: optim.SGD(ps, lr=float("nan")), ValueError, "lr"),
        (lambda ps: optim.SGD(ps, momentum=-0.5), ValueError, "momentum"),
        (lambda ps: optim.SGD(ps, weight_decay=-1), ValueError, "weight_decay"),
        (lambda ps: optim.SGD(ps, nesterov=True), ValueError, "nesterov"),
        (
            lambda ps: optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            "nesterov",
        ),
        (lambda ps: optim.SGD(ps, nesterov="yes"), TypeError, "nesterov"),
        (lambda ps: optim.Adam(ps, lr=-1e-3), ValueError, "lr"),
        (lambda ps: optim.Adam(ps, eps=-1.0), ValueError, "eps"),
        (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), ValueError, "betas"),
        (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), ValueError, "betas"),
        (lambda ps: optim.Adam(ps, betas=0.9), TypeError, "betas"),
        (lambda ps: optim.AdamW(ps, weight_decay=-0.01), ValueError, "weight_decay"),
        (lambda ps: optim.RMSprop(ps, lr=-0.01), ValueError, "lr"),
        (lambda ps: optim.RMSprop(ps, alpha=-0.5), ValueError, "alpha"),
        (lambda ps: optim.RMSprop(ps, alpha="0.9"), TypeError, "alpha"),
        (lambda ps: optim.RMSprop(ps, eps=-1e-8), ValueError, "eps"),
        (lambda ps: optim.RMSprop(ps, momentum=-0.9), ValueError, "momentum"),
        (lambda ps: optim.RMSprop(ps, weight_decay=-1.0), ValueError, "weight_decay"),
        (lambda ps: optim.RMSprop(ps, centered=1), TypeError, "centered"),
        (lambda ps: optim.RMSprop(ps, maximize="no"), TypeError, "maximize"),
        (lambda ps: optim.SGD([{"params": ps, "lr": -2.0}]), ValueError, "lr"),
        (lambda ps: optim.SGD([]), ValueError, "params"),
        (lambda ps: optim.SGD(ps[0]), TypeError, "params"),
        (lambda ps: optim.SGD([np.ones(3)]), TypeError, "params"),
        (lambda ps: optim.SGD([ps[0], ps[0]]), ValueError, "more than once"),
        (lambda ps: optim.SGD([{"params": ps}, {"params": ps[:1]}]), ValueError, "more than once"),
        (lambda ps: optim.SGD([{"lr": 0.1}]), ValueError, "params"),
        # a set's order changes from run to run, and with it where saved state goes
        (lambda ps: optim.SGD(set(ps)), TypeError, "ordered collection"),
        (lambda ps: optim.SGD([{"params": set(ps)}]), TypeError, "ordered collection"),
    ],
)
def test_bad_optimizer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make([Parameter(np.ones(3)), Parameter(np.ones(2))])


# --- schedulers ----------------------------------------------------------------------------------

SCHEDULER_CASES = [
    ("SGD", "StepLR", {"step_size": 7, "gamma": 0.5}),
    ("SGD", "StepLR", {"step_size": 1}),
    ("SGD", "CosineAnnealingLR", {"T_max": 10, "eta_min": 1e-3}),
    ("Adam", "CosineAnnealingLR", {"T_max": 13}),
    ("SGD", "OneCycleLR", {"max_lr": 1.0, "total_steps": 40}),
    ("SGD", "OneCycleLR", {"max_lr": [0.5, 2.0], "epochs": 5, "steps_per_epoch": 8,
                           "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}),
    ("Adam", "OneCycleLR", {"max_lr": 0.1, "total_steps": 40, "three_phase": True,
                            "anneal_strategy": "linear", "base_momentum": [0.8, 0.7],
                            "max_momentum": 0.9}),
    ("SGD", "OneCycleLR", {"max_lr": 0.3, "total_steps": 37, "cycle_momentum": False}),
    ("SGD", "MultiStepLR", {"milestones": [3, 7, 7, 20], "gamma": 0.5}),
    ("Adam", "MultiStepLR", {"milestones": (30, 5)}),
    ("SGD", "ExponentialLR", {"gamma": 0.9}),
    ("Adam", "ExponentialLR", {"gamma": 0.97}),
    ("SGD", "LinearLR", {}),
    ("Adam", "LinearLR", {"start_factor": 0.1, "end_factor": 0.5, "total_iters": 12}),
]  # fmt: skip


def scheduler_pair(rng, opt_name, sched_name, kwargs):
    params, tensors = make_pair(rng, [(3, 2), (5,)])
    opt_kwargs = {"lr": 0.1, "momentum": 0.9} if opt_name == "SGD" else {"lr": 0.1}

    def groups(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}]

    opt = getattr(optim, opt_name)(groups(params), **opt_kwargs)
    ref = getattr(torch.optim, opt_name)(groups(tensors), **opt_kwargs)
    sched = getattr(optim, sched_name)(opt, **kwargs)
    ref_sched = getattr(torch.optim.lr_scheduler, sched_name)(ref, **kwargs)
    return params, tensors, opt, ref, sched, ref_sched


def momenta(optimizer) -> list:
    return [g.get("momentum", g.get("betas")) for g in optimizer.param_groups]


@pytest.mark.parametrize(("opt_name", "sched_name", "kwargs"), SCHEDULER_CASES)
def test_scheduler_matches_torch(rng, opt_name, sched_name, kwargs):
    params, tensors, opt, ref, sched, ref_sched = scheduler_pair(rng, opt_name, sched_name, kwargs)
    steps = 36 if sched_name == "OneCycleLR" else 40
    lrs, ref_lrs = [sched.get_last_lr()], [ref_sched.get_last_lr()]
    moms, ref_moms = [momenta(opt)], [momenta(ref)]
    for _ in range(steps):
        set_grads(rng, params, tensors)
        opt.step()
        ref.step()
        sched.step()
        ref_sched.step()
        lrs.append(sched.get_last_lr())
        ref_lrs.append(ref_sched.get_last_lr())
        moms.append(momenta(opt))
        ref_moms.append(momenta(ref))
    # torch's cosine schedule is recursive; it drifts from the closed form by rounding only
    np.testing.assert_allclose(np.array(lrs), np.array(ref_lrs), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.array(moms), np.array(ref_moms), rtol=1e-12)
    assert_params_close(params, tensors)


@pytest.mark.parametrize(("opt_name", "sched_name", "kwargs"), SCHEDULER_CASES[::2])
def test_scheduler_state_dict_round_trip(rng, opt_name, sched_name, kwargs):
    _, _, opt, _, sched, _ = scheduler_pair(rng, opt_name, sched_name, kwargs)
    for _ in range(12):
        sched.step()
    opt_state = json_round_trip(opt.state_dict())
    sched_state = json_round_trip(sched.state_dict())
    _, _, opt2, _, _, _ = scheduler_pair(rng, opt_name, sched_name, kwargs)
    opt2.load_state_dict(opt_state)
    sched2 = getattr(optim, sched_name)(opt2, **kwargs)
    sched2.load_state_dict(sched_state)
    assert sched2.get_last_lr() == sched.get_last_lr()
    for _ in range(20):
        sched.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
        assert momenta(opt2) == momenta(opt)


def test_one_cycle_refuses_to_step_past_total_steps():
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.1, momentum=0.9)
    sched = optim.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="total_steps"):
        sched.step()


def test_scheduler_state_dict_checks(rng):
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.1)
    sched = optim.StepLR(opt, 3)
    with pytest.raises(ValueError, match="step_size"):
        sched.load_state_dict({"last_epoch": 2, "base_lrs": [0.1], "step_size": 0, "gamma": 0.1})
    with pytest.raises(ValueError, match="base_lrs"):
        sched.load_state_dict({"last_epoch": 2, "base_lrs": [0.1, 0.2], "step_size": 2, "gamma": 1})
    with pytest.raises(ValueError, match="last_epoch"):
        sched.load_state_dict({"base_lrs": [0.1]})
    assert sched.state_dict() == {
        "last_epoch": 0,
        "base_lrs": [0.1],
        "step_size": 3,
        "gamma": 0.1,
        "_last_lr": [0.1],
    }


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda o: optim.StepLR(o, step_size=0), ValueError, "step_size"),
        (lambda o: optim.StepLR(o, step_size=2.5), TypeError, "step_size"),
        (lambda o: optim.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
        (lambda o: optim.OneCycleLR(o, max_lr=1.0), ValueError, "total_steps"),
        (lambda o: optim.OneCycleLR(o, max_lr=1.0, epochs=2), ValueError, "total_steps"),
        (lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=0), ValueError, "total_steps"),
        (lambda o: optim.OneCycleLR(o, 1.0, epochs=0, steps_per_epoch=3), ValueError, "epochs"),
        (lambda o: optim.OneCycleLR(o, 1.0, total_steps=9, pct_start=1.5), ValueError, "pct_start"),
        (
            lambda o: optim.OneCycleLR(o, 1.0, 9, anneal_strategy="exp"),
            ValueError,
            "anneal_strategy",
        ),
        (lambda o: optim.OneCycleLR(o, [1.0, 2.0], total_steps=9), ValueError, "max_lr"),
        (lambda o: optim.StepLR("sgd", 2), TypeError, "optimizer"),
        (lambda o: optim.MultiStepLR(o, milestones=3), TypeError, "milestones"),
        (lambda o: optim.MultiStepLR(o, milestones=[2, 1.5]), TypeError, "milestones"),
        (lambda o: optim.MultiStepLR(o, milestones=[0, 4]), ValueError, "milestones"),
        (lambda o: optim.MultiStepLR(o, [2], gamma="half"), TypeError, "gamma"),
        (lambda o: optim.ExponentialLR(o, gamma=float("nan")), ValueError, "gamma"),
        (lambda o: optim.LinearLR(o, start_factor=0.0), ValueError, "start_factor"),
        (lambda o: optim.LinearLR(o, start_factor=1.5), ValueError, "start_factor"),
        (lambda o: optim.LinearLR(o, end_factor=-0.1), ValueError, "end_factor"),
        (lambda o: optim.LinearLR(o, total_iters=0), ValueError, "total_iters"),
        (lambda o: optim.ReduceLROnPlateau("sgd"), TypeError, "optimizer"),
        (lambda o: optim.ReduceLROnPlateau(o, mode="minimum"), ValueError, "mode"),
        (lambda o: optim.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
        (lambda o: optim.ReduceLROnPlateau(o, factor=-0.5), ValueError, "factor"),
        (lambda o: optim.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
        (lambda o: optim.ReduceLROnPlateau(o, patience=2.5), TypeError, "patience"),
        (lambda o: optim.ReduceLROnPlateau(o, threshold=-1e-4), ValueError, "threshold"),
        (lambda o: optim.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
        (lambda o: optim.ReduceLROnPlateau(o, cooldown=-2), ValueError, "cooldown"),
        (lambda o: optim.ReduceLROnPlateau(o, min_lr=[0.1, 0.2]), ValueError, "min_lr"),
        (lambda o: optim.ReduceLROnPlateau(o, min_lr=-1.0), ValueError, "min_lr"),
        (lambda o: optim.ReduceLROnPlateau(o, eps=float("inf")), ValueError, "eps"),
        (lambda o: optim.ReduceLROnPlateau(o).step("low"), TypeError, "metrics"),
    ],
)
def test_bad_scheduler_arguments(make, error, match):
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.1, momentum=0.9)
    with pytest.raises(error, match=match):
        make(opt)


def test_scheduler_load_failure_changes_nothing():
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.1, momentum=0.9)
    sched = optim.OneCycleLR(opt, max_lr=1.0, total_steps=20)
    sched.step()
    before, lr = sched.state_dict(), opt.param_groups[0]["lr"]
    bad = dict(before, total_steps=5, pct_start=2.0)
    with pytest.raises(ValueError, match="pct_start"):
        sched.load_state_dict(bad)
    with pytest.raises(ValueError, match="total_steps"):
        sched.load_state_dict(dict(before, last_epoch=30))
    assert sched.state_dict() == before and opt.param_groups[0]["lr"] == lr


# --- ReduceLROnPlateau ---------------------------------------------------------------------------

PLATEAU_CASES = [
    {},
    {"patience": 2, "factor": 0.5},
    {"patience": 1, "cooldown": 2, "min_lr": [0.02, 0.004], "threshold": 0.05},
    {"mode": "max", "patience": 0, "threshold_mode": "abs", "threshold": 0.01},
    {"mode": "min", "patience": 3, "threshold_mode": "abs", "factor": 0.9, "eps": 1e-3},
]


def plateau_metrics(rng, mode: str) -> list[float]:
    """A loss that falls, then wanders on a plateau (an accuracy: the same, negated)."""
    values = np.r_[np.linspace(1.0, 0.5, 8), 0.5 + 0.02 * rng.standard_normal(40)]
    return list(values if mode == "min" else 1.0 - values)


@pytest.mark.parametrize("kwargs", PLATEAU_CASES)
def test_reduce_lr_on_plateau_matches_torch(rng, kwargs):
    params, tensors = make_pair(rng, [(3, 2), (5,)])

    def groups(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}]

    opt = optim.SGD(groups(params), lr=0.1, momentum=0.9)
    ref = torch.optim.SGD(groups(tensors), lr=0.1, momentum=0.9)
    sched = optim.ReduceLROnPlateau(opt, **kwargs)
    ref_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(ref, **kwargs)
    for metric in plateau_metrics(rng, kwargs.get("mode", "min")):
        set_grads(rng, params, tensors)
        opt.step()
        ref.step()
        sched.step(np.float32(metric) if metric > 0.7 else metric)  # a NumPy scalar too
        ref_sched.step(metric)
        assert sched.get_last_lr() == ref_sched.get_last_lr()
        for name in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
            assert getattr(sched, name) == pytest.approx(getattr(ref_sched, name)), name
    assert sched.get_last_lr() != [0.1, 0.05]  # the plateau cut the lr
    assert_params_close(params, tensors)


@pytest.mark.parametrize("min_lr", [1e-3, [1e-3]])
def test_reduce_lr_on_plateau_takes_a_group_added_later_as_torch(min_lr):
    """A group added to the optimizer after the scheduler (unfreezing a backbone for fine-tuning)
    gets the min_lr given as one value, as in torch; with one value per group, the lengths no
    longer match and it raises (torch too, when it cuts). The default survives state_dict."""
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ours = optim.ReduceLROnPlateau(opt, patience=0, min_lr=min_lr)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=0, min_lr=min_lr)
    ours.step(1.0)
    theirs.step(1.0)
    opt.add_param_group({"params": [Parameter(np.zeros(1))], "lr": 0.01})
    topt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.01})
    if isinstance(min_lr, list):
        with pytest.raises(ValueError, match="min_lr"):
            ours.step(2.0)
        with pytest.raises(RuntimeError, match="param groups"):
            theirs.step(2.0)
        return
    for value in (2.0, 3.0, 0.5, 4.0):
        ours.step(value)
        theirs.step(value)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert ours.state_dict()["default_min_lr"] == theirs.state_dict()["default_min_lr"]
    resumed = optim.ReduceLROnPlateau(opt, min_lr=[0.0, 0.0])
    resumed.load_state_dict(theirs.state_dict())
    assert resumed.default_min_lr == min_lr and resumed.min_lrs == [min_lr, min_lr]


def test_reduce_lr_on_plateau_state_dict_round_trip(rng):
    opt = optim.SGD([Parameter(np.ones(2)), Parameter(np.ones(3))], lr=0.1)
    sched = optim.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    metrics = plateau_metrics(rng, "min")
    for m in metrics[:12]:
        sched.step(m)
    saved = json_round_trip(sched.state_dict())
    opt2 = optim.SGD([Parameter(np.ones(2)), Parameter(np.ones(3))], lr=0.1)
    opt2.load_state_dict(json_round_trip(opt.state_dict()))
    sched2 = optim.ReduceLROnPlateau(opt2)
    sched2.load_state_dict(saved)
    assert sched2.state_dict() == sched.state_dict()
    for m in metrics[12:]:
        sched.step(m)
        sched2.step(m)
        assert sched2.get_last_lr() == sched.get_last_lr()
    # torch's state_dict has the same entries (and a few more)
    ref = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    ref_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(ref, mode="max", patience=4)
    ref_sched.step(0.3)
    one = optim.ReduceLROnPlateau(optim.SGD([Parameter(np.ones(2))], lr=0.1))
    one.load_state_dict(ref_sched.state_dict())
    assert (one.mode, one.patience, one.best, one.last_epoch) == ("max", 4, 0.3, 1)


def test_reduce_lr_on_plateau_load_failure_changes_nothing():
    opt = optim.SGD([Parameter(np.ones(2))], lr=0.1)
    sched = optim.ReduceLROnPlateau(opt, patience=3)
    sched.step(1.0)
    before = sched.state_dict()
    for bad, match in [
        (dict(before, patience=-1), "patience"),
        (dict(before, min_lrs=[0.0, 0.0]), "min_lr"),
        (dict(before, num_bad_epochs=1.5), "num_bad_epochs"),
        (dict(before, _last_lr=0.1), "_last_lr"),
        ({"mode": "min"}, "entries"),
    ]:
        with pytest.raises((TypeError, ValueError), match=match):
            sched.load_state_dict(bad)
        assert sched.state_dict() == before


def test_fit_steps_reduce_lr_on_plateau_on_the_validation_loss(rng, monkeypatch):
    seen = []

    class Recording(optim.ReduceLROnPlateau):
        def step(self, metrics):
            seen.append(metrics)
            super().step(metrics)

    fastcnn.manual_seed(0)
    net = fastcnn.nn.Sequential(fastcnn.nn.Flatten(), fastcnn.nn.Linear(4, 3))
    x = rng.standard_normal((12, 1, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    train = fastcnn.data.DataLoader((x, y), batch_size=4)
    val = fastcnn.data.DataLoader((x[:6], y[:6]), batch_size=6)
    opt = optim.SGD(net.parameters(), lr=0.1)
    sched = Recording(opt)
    history = fastcnn.fit(
        net, train, fastcnn.nn.CrossEntropyLoss(), opt, 3, val, sched, progress=False
    )
    assert seen == [h["val_loss"] for h in history]
    seen.clear()
    history = fastcnn.fit(
        net, train, fastcnn.nn.CrossEntropyLoss(), opt, 2, None, sched, progress=False
    )
    assert seen == [h["loss"] for h in history]
    # mode "max" watches a value that should rise: fed the loss, it would cut the lr while the
    # loss falls
    seen.clear()
    sched = Recording(opt, mode="max")
    history = fastcnn.fit(
        net, train, fastcnn.nn.CrossEntropyLoss(), opt, 2, val, sched, progress=False
    )
    assert seen == [h["val_accuracy"] for h in history]
    seen.clear()
    fastcnn.fit(net, train, fastcnn.nn.CrossEntropyLoss(), opt, 1, None, sched, progress=False)
    assert len(seen) == 1 and 0.0 <= seen[0] <= 1.0
    with pytest.raises(ValueError, match="scheduler_interval"):
        fastcnn.fit(
            net,
            train,
            fastcnn.nn.CrossEntropyLoss(),
            opt,
            1,
            None,
            sched,
            progress=False,
            scheduler_interval="batch",
        )


def test_rmsprop_and_plateau_state_go_through_a_checkpoint(tmp_path):
    net = fastcnn.nn.Sequential(fastcnn.nn.Linear(3, 2))
    opt = optim.RMSprop(net.parameters(), lr=0.01, momentum=0.9, centered=True)
    sched = optim.ReduceLROnPlateau(opt)  # best is still inf: JSON's Infinity
    for p in net.parameters():
        p.grad[...] = 1.0
    opt.step()
    fastcnn.save(net, tmp_path / "c.npz", optimizer=opt, scheduler=sched, epoch=1)
    saved = fastcnn.load_checkpoint(tmp_path / "c.npz")
    opt2 = optim.RMSprop(net.parameters())
    opt2.load_state_dict(saved.optimizer)
    sched2 = optim.ReduceLROnPlateau(opt2)
    sched2.load_state_dict(saved.scheduler)
    assert sched2.state_dict() == sched.state_dict() and sched2.best == math.inf
    assert opt2.param_groups[0]["centered"] and opt2.param_groups[0]["momentum"] == 0.9
    for p in net.parameters():
        for name, value in opt.state[p].items():
            np.testing.assert_array_equal(opt2.state[p][name], value)
