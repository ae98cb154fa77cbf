"""Kernels called from several Python threads at once, thread-count changes mid-run, fork() after
the OpenMP pool started, and Ctrl-C during `fastcnn train`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastcnn
from fastcnn import _core
from fastcnn import functional as F

# Big enough that a conv2d forward uses 2 threads (threads_for: 250k multiply-adds per thread).
CONV_X = (4, 16, 24, 24)
CONV_W = (32, 16, 3, 3)
# Sums of up to C*R*S = 144 products, split differently for different thread counts.
THREADS_RTOL, THREADS_ATOL = 1e-5, 1e-5


@pytest.fixture
def restore_threads():
    n = fastcnn.get_num_threads()
    yield
    fastcnn.set_num_threads(n)


def _workload(x, w, dy):
    y = F.conv2d(x, w, padding=1)
    dx, dw, db = F.conv2d_backward(dy, x, w, padding=1)
    p, idx = F.max_pool2d(F.relu(y), 2, return_indices=True)
    return [y, dx, dw, db, p, idx, F.batch_norm_train(y)[0], F.softmax(y.reshape(4, -1), 1)]


def _inputs(rng, count):
    return [
        (
            rng.standard_normal(CONV_X).astype(np.float32),
            rng.standard_normal(CONV_W).astype(np.float32),
            rng.standard_normal((CONV_X[0], CONV_W[0], CONV_X[2], CONV_X[3])).astype(np.float32),
        )
        for _ in range(count)
    ]


def _run_threads(fn, count):
    errors = []

    def guarded(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a kernel thread hung"
    if errors:
        raise errors[0]


def test_threads_calling_kernels_at_once_get_the_serial_results(rng):
    inputs = _inputs(rng, 4)
    serial = [_workload(*args) for args in inputs]
    results = [[None] * 3 for _ in inputs]

    def work(i):
        for rep in range(3):
            results[i][rep] = _workload(*inputs[i])

    _run_threads(work, len(inputs))
    for i, reps in enumerate(results):
        for rep in reps:
            for got, want in zip(rep, serial[i]):
                np.testing.assert_array_equal(got, want)


def test_thread_count_changed_from_another_thread_mid_run(rng, restore_threads):
    inputs = _inputs(rng, 3)
    fastcnn.set_num_threads(1)
    serial = [_workload(*args) for args in inputs]
    stop = threading.Event()

    def toggle():
        n = 0
        while not stop.is_set():
            fastcnn.set_num_threads(1 + n % 3)
            n += 1
            time.sleep(0.0005)

    toggler = threading.Thread(target=toggle)
    toggler.start()
    results = [None] * len(inputs)
    try:
        _run_threads(
            lambda i: results.__setitem__(i, [_workload(*inputs[i]) for _ in range(3)]), len(inputs)
        )
    finally:
        stop.set()
        toggler.join()
    for i, reps in enumerate(results):
        for rep in reps:
            for got, want in zip(rep, serial[i]):
                np.testing.assert_allclose(got, want, rtol=THREADS_RTOL, atol=THREADS_ATOL)


def test_thread_count_between_calls_keeps_results(rng, restore_threads):
    x, w, dy = _inputs(rng, 1)[0]
    fastcnn.set_num_threads(1)
    want = _workload(x, w, dy)
    for n in (2, 3, 1, 2):
        fastcnn.set_num_threads(n)
        assert fastcnn.get_num_threads() == n
        for got, ref in zip(_workload(x, w, dy), want):
            np.testing.assert_allclose(got, ref, rtol=THREADS_RTOL, atol=THREADS_ATOL)


def _announce_only(x, w, dy):
    # Sizes a weight-gradient call's team, which wakes the pool's helpers for a parallel section
    # (expect_parallel), but needs neither output: the announced section never starts.
    _core.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1, False, False)


# Gaps around the pool's watch windows: a helper's 100 us after a job, 1 ms after an announcement.
GAPS = (0.0, 50e-6, 300e-6, 2e-3, 20e-3)


def test_calls_after_idle_gaps_and_unused_announcements_keep_results(rng, restore_threads):
    x, w, dy = _inputs(rng, 1)[0]
    fastcnn.set_num_threads(2)
    want = _workload(x, w, dy)
    for gap in GAPS:
        for announce in (False, True):
            if announce:
                _announce_only(x, w, dy)
            time.sleep(gap)
            for got, ref in zip(_workload(x, w, dy), want):
                np.testing.assert_array_equal(got, ref)


def test_threads_announcing_and_calling_after_gaps_get_the_serial_results(rng, restore_threads):
    fastcnn.set_num_threads(3)
    inputs = _inputs(rng, 4)
    serial = [_workload(*args) for args in inputs]
    results = [[] for _ in inputs]

    def work(i):
        for rep, gap in enumerate(GAPS):
            if (i + rep) % 2:
                _announce_only(*inputs[i])
            time.sleep(gap)
            results[i].append(_workload(*inputs[i]))

    _run_threads(work, len(inputs))
    for i, reps in enumerate(results):
        assert len(reps) == len(GAPS)
        for rep in reps:
            for got, want in zip(rep, serial[i]):
                np.testing.assert_array_equal(got, want)


def test_calls_with_the_cpus_taken_by_other_processes_keep_results(rng, restore_threads):
    # Spinning processes on the CPUs (up to 4) preempt the pool's helpers while they watch, wake
    # after an announcement or join a job.
    x, w, dy = _inputs(rng, 1)[0]
    fastcnn.set_num_threads(2)
    want = _workload(x, w, dy)
    spin = [sys.executable, "-c", "while True: pass"]
    hogs = [subprocess.Popen(spin) for _ in range(min(os.cpu_count() or 2, 4))]
    try:
        for gap in GAPS * 3:
            _announce_only(x, w, dy)
            time.sleep(gap)
            for got, ref in zip(_workload(x, w, dy), want):
                np.testing.assert_array_equal(got, ref)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def test_idle_pool_stops_using_the_cpu(rng, restore_threads):
    x, w, dy = _inputs(rng, 1)[0]
    fastcnn.set_num_threads(2)
    for _ in range(3):
        _workload(x, w, dy)
    _announce_only(x, w, dy)
    # Helpers watch for at most a millisecond after their last job or announcement, then sleep:
    # a helper that kept spinning would use the whole of the second interval.
    time.sleep(0.05)
    cpu = time.process_time()
    time.sleep(0.25)
    assert time.process_time() - cpu < 0.1


FORK_SCRIPT = textwrap.dedent(
    f"""
    import multiprocessing as mp
    import numpy as np
    import fastcnn
    from fastcnn import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal({CONV_X}).astype(np.float32)
    w = rng.standard_normal({CONV_W}).astype(np.float32)

    def child(q):
        fastcnn.set_num_threads(2)
        q.put((fastcnn.get_num_threads(), F.conv2d(x, w, padding=1)))

    if __name__ == "__main__":
        fastcnn.set_num_threads(2)
        y = F.conv2d(x, w, padding=1)  # starts the helper pool (fast variants) in the parent
        # Announces a section that never starts: the helper is watching when the child forks.
        fastcnn._core.conv2d_backward_weight(y, x, w.shape, 1, 1, 1, 1, False, False)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        threads, y_child = q.get(timeout=60)
        p.join(60)
        assert p.exitcode == 0, p.exitcode
        np.testing.assert_allclose(y_child, y, rtol={THREADS_RTOL}, atol={THREADS_ATOL})
        print("child threads", threads)
        print("parent threads", fastcnn.get_num_threads(), F.conv2d(x, w, padding=1).shape)
        print("variant", fastcnn._core.cpu_variant())
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_runs_kernels_after_the_pool_started(tmp_path):
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_SCRIPT)
    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert p.returncode == 0, p.stderr
    # Helper threads do not survive fork: once the parent's pool started, the child runs on one
    # thread and the parent keeps two. The ref kernels never start the pool, so nothing is lost.
    pool_started = "variant ref" not in p.stdout
    assert ("child threads 1" if pool_started else "child threads 2") in p.stdout
    assert "parent threads 2" in p.stdout


def test_ctrl_c_during_train_exits_130_and_keeps_the_checkpoint(tmp_path):
    ckpt = tmp_path / "model.npz"
    cmd = [
        sys.executable,
        "-m",
        "fastcnn",
        "train",
        "--epochs",
        "200",
        "--train-limit",
        "256",
        "--batch-size",
        "64",
        "--no-progress",
        "--save",
        str(ckpt),
        "--threads",
        "1",
    ]
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: give
    # the child the default disposition, as an interactive terminal would.
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert ckpt.exists(), "no checkpoint was written"
        time.sleep(0.3)  # interrupt mid-epoch
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    checkpoint = fastcnn.load_checkpoint(ckpt)
    assert checkpoint.epoch >= 1
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
