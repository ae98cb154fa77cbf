"""The caching allocator behind large arrays that kernels return (csrc/common/host_pool.h): blocks
go back to the pool only when the last array or view on them dies, results keep NumPy's
semantics, the cache stays under its limit, and it survives threads and fork()."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastcnn import _core

# relu of this shape returns 256 KiB: above the 128 KiB pooling threshold.
BIG = (4, 16, 32, 32)


@pytest.fixture(autouse=True)
def pool_limit():
    """Each test starts from an empty cache under a 64 MB limit (whatever an earlier test or the
    environment set) and leaves the limit as it found it."""
    limit = _core.host_pool_stats()["limit_bytes"]
    _core.host_pool_trim()
    _core.host_pool_set_limit(64 << 20)
    yield
    _core.host_pool_set_limit(limit)


def test_large_results_are_reused_small_ones_are_plain_numpy(rng):
    x = rng.standard_normal(BIG).astype(np.float32)
    before = _core.host_pool_stats()
    y = _core.relu_forward(x)
    assert not y.flags.owndata  # its base, a capsule, hands the block back when y dies
    del y
    assert _core.host_pool_stats()["cached_bytes"] > 0, (before, _core.host_pool_stats())
    y = _core.relu_forward(x)
    after = _core.host_pool_stats()
    assert after["hits"] == before["hits"] + 1
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    small = _core.relu_forward(x[:1, :1])
    assert small.flags.owndata and small.base is None
    empty = _core.relu_forward(np.zeros((0, 16, 32, 32), np.float32))
    assert empty.shape == (0, 16, 32, 32)


def test_results_keep_numpy_semantics(rng):
    x = rng.standard_normal(BIG).astype(np.float32)
    y = _core.relu_forward(x)
    assert y.dtype == np.float32 and y.shape == BIG
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
    assert y.ctypes.data % 64 == 0
    y += 1.0  # the caller owns the result
    np.testing.assert_array_equal(y, np.maximum(x, 0) + 1.0)
    z = np.resize(y, (2,) + BIG)
    np.testing.assert_array_equal(z[1], y)


def test_blocks_return_only_when_the_last_view_dies(rng):
    x = rng.standard_normal(BIG).astype(np.float32)
    y = _core.relu_forward(x)
    view = y[1:3, ::2]
    expected = view.copy()
    del y
    assert _core.host_pool_stats()["cached_bytes"] == 0  # the view keeps the block
    # Same-size results written with other values must land in other blocks.
    others = [_core.relu_forward(x + 10.0 * (i + 1)) for i in range(3)]
    np.testing.assert_array_equal(view, expected)
    del others
    cached = _core.host_pool_stats()["cached_bytes"]
    del view
    assert _core.host_pool_stats()["cached_bytes"] > cached


def test_results_outlive_a_trim_and_the_limit_going_to_zero(rng):
    x = rng.standard_normal(BIG).astype(np.float32)
    kept = [_core.relu_forward(x) for _ in range(3)]
    _core.host_pool_trim()
    _core.host_pool_set_limit(0)
    y = _core.relu_forward(x)
    assert y.flags.owndata  # no caching: plain NumPy allocation
    del kept[0]  # a pooled block dying while caching is off is freed, not cached
    assert _core.host_pool_stats()["cached_bytes"] == 0
    for a in kept:
        np.testing.assert_array_equal(a, np.maximum(x, 0))


def test_pickle_and_copy_of_pooled_results(rng):
    x = rng.standard_normal(BIG).astype(np.float32)
    y = _core.relu_forward(x)
    want = np.maximum(x, 0)
    for clone in (pickle.loads(pickle.dumps(y)), copy.copy(y), copy.deepcopy(y), y.copy()):
        assert not np.shares_memory(clone, y)
        np.testing.assert_array_equal(clone, want)
        clone[...] = -1.0
        np.testing.assert_array_equal(y, want)
    del y
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(_core.relu_forward(x))), want)


def test_cache_stays_under_its_limit(rng):
    limit = 1 << 20
    _core.host_pool_set_limit(limit)
    # Nine distinct sizes of 160-400 KiB, all dying: at most the limit is kept.
    for c in range(5, 14):
        x = rng.standard_normal((2, c, 64, 64)).astype(np.float32)
        _core.relu_forward(x)
        assert _core.host_pool_stats()["cached_bytes"] <= limit
    assert _core.host_pool_stats()["cached_bytes"] > 0
    _core.host_pool_set_limit(300 << 10)  # shrinking frees the excess at once
    assert _core.host_pool_stats()["cached_bytes"] <= 300 << 10
    with pytest.raises(ValueError, match="bytes"):
        _core.host_pool_set_limit(-1)


def test_many_threads_allocating_and_freeing(rng):
    inputs = [rng.standard_normal((2, c, 32, 32)).astype(np.float32) for c in (16, 24, 32, 40)]
    weight = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)

    def work(seed: int) -> bool:
        local = np.random.default_rng(seed)
        kept = []
        for i in range(200):
            x = inputs[local.integers(len(inputs))]
            y = _core.relu_forward(x)
            if not np.array_equal(y, np.maximum(x, 0)):
                return False
            if i % 7 == 0:
                kept.append((x, y))
            if len(kept) > 4:
                kept.pop(local.integers(len(kept)))
            if i % 50 == 0:
                c = _core.conv2d_forward(inputs[0], weight, None, 1, 1, 1, 1)
                if c.shape != (2, 8, 32, 32):
                    return False
        return all(np.array_equal(y, np.maximum(x, 0)) for x, y in kept)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(16)))
    stats = _core.host_pool_stats()
    assert 0 < stats["cached_bytes"] <= stats["limit_bytes"]


def test_fork_while_other_threads_allocate():
    """A child forked while other threads churn through the pool allocates, reuses and frees,
    arrays inherited from the parent included."""
    script = textwrap.dedent(
        """
        import os, threading, numpy as np
        from fastcnn import _core
        x = np.ones((4, 16, 32, 32), np.float32)
        kept = _core.relu_forward(x)
        stop = threading.Event()
        def churn():
            while not stop.is_set():
                _core.relu_forward(x)
        threads = [threading.Thread(target=churn) for _ in range(3)]
        for t in threads:
            t.start()
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                ok = all(float(_core.relu_forward(x * i).sum()) == 65536.0 * i
                         for i in range(1, 20))
                del kept  # an array inherited from the parent goes back to the child's pool
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
        stop.set()
        for t in threads:
            t.join()
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
