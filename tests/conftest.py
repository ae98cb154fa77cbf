"""Shared fixtures: a fresh, reproducible random generator a test, and the compiled CPU variants."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastcnn

VARIANTS = sorted(fastcnn._core._variants)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id: fresh data per test case, the same data on a rerun."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=VARIANTS)
def core(request: pytest.FixtureRequest):
    """Each compiled CPU variant of fastcnn._core that this machine runs (ref, avx2, avx512)."""
    return fastcnn._core._variants[request.param]
