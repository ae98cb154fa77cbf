"""PyTorch's default initializations, drawn from fastcnn's generator (or an explicit one)."""

from __future__ import annotations

import math

import numpy as np

from fastcnn._random import default_generator


def uniform(shape: tuple[int, ...], bound: float, rng: np.random.Generator | None) -> np.ndarray:
    """float32 samples from U(-bound, bound)."""
    gen = rng if rng is not None else default_generator()
    return gen.uniform(-bound, bound, size=shape).astype(np.float32)


def default_weight_and_bias(
    weight_shape: tuple[int, ...], fan_in: int, bias: bool, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """torch's Conv/Linear reset_parameters: kaiming_uniform_(a=sqrt(5)) for the weight, which comes
    to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    w = uniform(weight_shape, bound, rng)
    b = uniform((weight_shape[0],), bound, rng) if bias else None
    return w, b
