"""The package's random source for weight initialization and dropout masks.

`manual_seed(n)` makes every later initialization reproducible, like torch.manual_seed. Modules also
take an explicit `rng=` (a numpy.random.Generator) that overrides the global source.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed fastcnn's global generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    """The global generator that modules draw from when given no `rng`."""
    return _generator


def get_rng_state() -> dict:
    """The global generator's state, as plain JSON-able values (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by get_rng_state."""
    _generator.bit_generator.state = state
