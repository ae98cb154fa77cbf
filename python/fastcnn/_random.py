"""The package's random source for weight initialization and dropout masks.

`manual_seed(n)` makes every later initialization reproducible, like torch.manual_seed. Modules also
take an explicit `rng=` (a numpy.random.Generator) that overrides the global source.
"""

from __future__ import annotations

import numpy as np

# Made on first use: numpy.random costs ~20 ms to import, a fifth of `import fastcnn`.
_generator: np.random.Generator | None = None


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed fastcnn's global generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    """The global generator that modules draw from when given no `rng`."""
    global _generator
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator


def get_rng_state() -> dict:
    """The global generator's state, as plain JSON-able values (for checkpoints)."""
    return default_generator().bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by get_rng_state."""
    default_generator().bit_generator.state = state
