"""fastcnn.nn.init against torch.nn.init: the same gains and formulas (bounds and standard
deviations within sampling error; the samples are NumPy's), filled in place, and the same errors;
and the default initialization of Conv2d and Linear against torch's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastcnn import nn
from fastcnn.nn import init

torch = pytest.importorskip("torch", reason="the cross-check needs PyTorch")

SHAPES = [(64, 48), (32, 16, 3, 3), (24, 8, 5, 1), (40, 6, 2, 2, 2)]


@pytest.mark.parametrize(
    ("nonlinearity", "param"),
    [
        ("linear", None),
        ("conv2d", None),
        ("conv_transpose2d", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("leaky_relu", 3),
        ("selu", None),
    ],
)
def test_calculate_gain_as_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(
        nonlinearity, param
    )


@pytest.mark.parametrize(("nonlinearity", "param"), [("gelu", None), ("leaky_relu", "0.1")])
def test_calculate_gain_refuses_what_torch_refuses(nonlinearity, param):
    with pytest.raises(ValueError) as theirs:
        torch.nn.init.calculate_gain(nonlinearity, param)
    with pytest.raises(ValueError, match=str(theirs.value)):
        init.calculate_gain(nonlinearity, param)


def _draws(name, kwargs, shape, seed):
    """(ours, torch's) samples of one initializer on an array of `shape`."""
    ours = np.full(shape, np.nan, np.float32)
    assert getattr(init, name)(ours, **kwargs, generator=np.random.default_rng(seed)) is ours
    theirs = torch.full(shape, float("nan"))
    getattr(torch.nn.init, name)(theirs, **kwargs, generator=torch.Generator().manual_seed(seed))
    return ours, theirs.numpy()


CASES = [
    ("uniform_", dict(a=-0.3, b=0.7)),
    ("normal_", dict(mean=0.5, std=2.0)),
    ("xavier_uniform_", dict(gain=1.0)),
    ("xavier_uniform_", dict(gain=5.0 / 3)),
    ("xavier_normal_", dict(gain=math.sqrt(2.0))),
    ("kaiming_uniform_", dict()),
    ("kaiming_uniform_", dict(a=math.sqrt(5))),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu")),
    ("kaiming_normal_", dict(nonlinearity="relu")),
    ("kaiming_normal_", dict(a=0.2, mode="fan_out")),
    ("kaiming_normal_", dict(nonlinearity="tanh")),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_initializers_draw_torchs_distribution(name, kwargs, shape):
    """Mean and standard deviation agree within sampling error; uniform draws stay inside torch's
    bounds and reach their ends."""
    ours, theirs = _draws(name, kwargs, shape, seed=len(shape))
    n, std = ours.size, float(theirs.std())
    assert abs(ours.mean() - theirs.mean()) < 6 * std / math.sqrt(n)
    assert abs(ours.std() / std - 1) < 6 / math.sqrt(n)
    if "uniform" in name:
        lo, hi = theirs.min(), theirs.max()
        width = hi - lo
        assert ours.min() >= lo - 0.02 * width and ours.max() <= hi + 0.02 * width
        assert ours.min() <= lo + 0.02 * width and ours.max() >= hi - 0.02 * width


def test_initializers_fill_a_parameter_in_place():
    p = nn.Parameter(np.zeros((5, 4)))
    data = p.data
    assert init.kaiming_uniform_(p, generator=np.random.default_rng(0)) is p
    bound = math.sqrt(3) * math.sqrt(2) / math.sqrt(4)  # gain sqrt(2) (a = 0), fan_in 4
    assert p.data is data and np.all(np.abs(data) <= bound) and np.any(data != 0)
    init.constant_(p, 0.25)
    np.testing.assert_array_equal(data, 0.25)
    init.zeros_(p)
    np.testing.assert_array_equal(data, 0)
    init.ones_(p)
    np.testing.assert_array_equal(data, 1)


def test_initializers_refuse_what_torch_refuses():
    for name in ("xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"):
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            getattr(torch.nn.init, name)(torch.zeros(4))
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            getattr(init, name)(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="fan_avg"):
        torch.nn.init.kaiming_uniform_(torch.zeros(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_uniform_(np.zeros((3, 3), np.float32), mode="fan_avg")
    with pytest.raises(TypeError, match="tensor"):
        init.normal_([0.0, 1.0])
    with pytest.raises(TypeError, match="tensor"):
        init.normal_(np.zeros(3, np.int64))


def test_kaiming_on_no_elements_warns_and_leaves_it_as_torch():
    with pytest.warns(UserWarning, match="zero-element"):
        torch.nn.init.kaiming_normal_(torch.zeros(0, 3))
    empty = np.zeros((0, 3), np.float32)
    with pytest.warns(UserWarning, match="zero-element"):
        assert init.kaiming_normal_(empty) is empty


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.Conv2d(6, 40, 3),
        lambda m: m.Conv2d(8, 64, (5, 1), groups=4),
        lambda m: m.Linear(50, 200),
    ],
)
def test_default_layer_init_as_torch(make):
    """Conv2d and Linear weights and biases: torch's kaiming_uniform_(a=sqrt(5)) and its bias bound
    1/sqrt(fan_in), fan_in counting the input channels of one group."""
    torch.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    for name in ("weight", "bias"):
        a = getattr(ours, name).data
        b = getattr(theirs, name).detach().numpy()
        bound = float(np.abs(b).max())
        assert np.abs(a).max() <= bound * 1.05 and np.abs(a).max() >= bound * 0.9
        assert abs(a.std() / b.std() - 1) < 8 / math.sqrt(b.size)
