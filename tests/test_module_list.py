"""ModuleList: registration (parameters, state_dict keys, train/eval reach its entries), the list
operations torch.nn.ModuleList has, a custom Module that runs its entries forward and backward,
and bad entries."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn
from fastcnn import nn


class _Stack(nn.Module):
    """A custom Module holding its layers in a ModuleList, as PyTorch code does."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Sigmoid()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, dy, input_grad=True):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


def test_registers_entries_like_torch():
    model = _Stack()
    assert list(model.state_dict()) == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    assert len(list(model.parameters())) == 4
    model.eval()
    assert not any(m.training for m in model.layers)
    sd = {k: np.full_like(v, 0.5) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    np.testing.assert_array_equal(model.layers[0].weight.data, 0.5)


def test_custom_module_trains_through_it(rng):
    model = _Stack()
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = model(x)
    assert y.shape == (5, 2) and np.all((y > 0) & (y < 1))
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape
    assert all(np.any(p.grad != 0) for p in model.parameters())


def test_list_operations():
    a, b, c, d = nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.Identity()
    ml = nn.ModuleList([a, b])
    assert len(ml) == 2 and list(ml) == [a, b] and ml[-1] is b
    ml.append(c)
    ml += [d]
    assert list(ml) == [a, b, c, d] and list(ml._modules) == ["0", "1", "2", "3"]
    ml.insert(1, nn.Identity())
    assert list(ml._modules) == ["0", "1", "2", "3", "4"] and ml[2] is b
    del ml[1]
    assert list(ml) == [a, b, c, d] and list(ml._modules) == ["0", "1", "2", "3"]
    ml[0] = d
    assert ml[0] is d
    sub = ml[1:3]
    assert type(sub) is nn.ModuleList and list(sub) == [b, c]
    del ml[::2]
    assert list(ml) == [b, d]
    ml.extend(nn.Sequential(a, c))
    assert list(ml) == [b, d, a, c]
    assert ml.pop(1) is d and ml.pop() is c and list(ml) == [b, a]
    assert list(ml._modules) == ["0", "1"]
    assert len(nn.ModuleList()) == 0
    assert "(1): ReLU()" in repr(ml)


def test_no_forward_and_bad_entries():
    ml = nn.ModuleList([nn.ReLU()])
    with pytest.raises(NotImplementedError, match="ModuleList does not define forward"):
        ml(np.zeros(3))
    with pytest.raises(IndexError, match="out of range"):
        ml[1]
    with pytest.raises(IndexError, match="out of range"):
        ml[-2] = nn.ReLU()
    with pytest.raises(TypeError, match="expected a Module, got int"):
        ml.append(3)
    with pytest.raises(TypeError, match="expected a Module, got str"):
        nn.ModuleList(["relu"])
    with pytest.raises(TypeError, match="expected an iterable of Modules, got ReLU"):
        ml.extend(nn.ReLU())
    with pytest.raises(TypeError):
        ml["a"]


def test_checkpoint_of_a_custom_module_needs_its_state_dict(tmp_path):
    # As for any custom Module: fastcnn.save writes only fastcnn's own architectures.
    with pytest.raises(TypeError, match="cannot describe a _Stack"):
        fastcnn.save(_Stack(), tmp_path / "m.npz")
