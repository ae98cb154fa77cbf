"""PyTorch's weight initializations, drawn from fastcnn's generator (or an explicit one).

The public functions are torch.nn.init's, with its names, arguments and formulas: each fills a
Parameter's data or a float array in place and returns it. `generator` is a
numpy.random.Generator (torch's takes a torch.Generator); None draws from fastcnn's global one
(see fastcnn.manual_seed). The samples are NumPy's, not torch's random stream.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fastcnn._random import default_generator
from fastcnn.parameter import Parameter

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for `nonlinearity`, as torch.nn.init.calculate_gain: 1 for linear,
    conv and sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope**2)) for leaky_relu
    (param is the slope, 0.01 by default) and 3/4 for selu."""
    if nonlinearity in _LINEAR:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _target(tensor: object) -> np.ndarray:
    """The float array that tensor (a Parameter or a float NumPy array) is filled through."""
    data = tensor.data if isinstance(tensor, Parameter) else tensor
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise TypeError(
            f"tensor: expected a Parameter or a floating NumPy array, got {type(tensor).__name__}"
        )
    if not data.flags.writeable:
        raise ValueError("tensor: expected a writable array (it is filled in place)")
    return data


def _fill(tensor, draw) -> object:
    data = _target(tensor)
    data[...] = draw(data.shape)
    return tensor


def _generator(generator: np.random.Generator | None) -> np.random.Generator:
    return generator if generator is not None else default_generator()


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fills tensor with samples from U(a, b)."""
    return _fill(tensor, lambda shape: _generator(generator).uniform(a, b, shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fills tensor with samples from N(mean, std**2)."""
    return _fill(tensor, lambda shape: _generator(generator).normal(mean, std, shape))


def constant_(tensor, val: float):
    """Fills tensor with val."""
    return _fill(tensor, lambda shape: val)


def zeros_(tensor):
    """Fills tensor with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fills tensor with 1."""
    return constant_(tensor, 1.0)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as torch counts them: dim 1 and dim 0 times the receptive field (the
    product of the dims after the first two)."""
    if len(shape) < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_target(tensor).shape)
    a = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_target(tensor).shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def _kaiming_std(tensor, a: float, mode: str, nonlinearity: str) -> float | None:
    """gain / sqrt(fan) for the kaiming initializations; None for a tensor with no elements,
    which torch leaves as it is (with a warning)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    shape = _target(tensor).shape
    if 0 in shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return None
    fan_in, fan_out = _fans(shape)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_uniform_(
    tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None
):
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan) (a: leaky_relu's slope;
    mode: which fan). a=sqrt(5) is the default init of Conv2d and Linear weights."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None
):
    """He normal: N(0, std**2) with std = gain / sqrt(fan)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std, generator)


def uniform(shape: tuple[int, ...], bound: float, rng: np.random.Generator | None) -> np.ndarray:
    """float32 samples from U(-bound, bound)."""
    return _generator(rng).uniform(-bound, bound, size=shape).astype(np.float32)


def default_weight_and_bias(
    weight_shape: tuple[int, ...], fan_in: int, bias: bool, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """torch's Conv/Linear reset_parameters: kaiming_uniform_(a=sqrt(5)) for the weight, which comes
    to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    w = uniform(weight_shape, bound, rng)
    b = uniform((weight_shape[0],), bound, rng) if bias else None
    return w, b
