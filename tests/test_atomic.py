"""Every file fastcnn writes replaces the old one atomically: a failed write leaves the old file
whole and no temporary file behind."""

from __future__ import annotations

import argparse
import os
import signal
import threading

import numpy as np
import pytest

from fastcnn import _atomic, bench, images, viz


def _disk_full(*args, **kwargs):
    raise OSError("disk full")


def test_new_contents_replace_old(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    assert _atomic.write_atomically(path, lambda f: f.write(b"new")) == str(path)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, where):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"half of the new")
        if where == "write":
            raise ValueError("not serializable")

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", _disk_full)
    if where == "rename":
        monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises((OSError, ValueError)):
        _atomic.write_atomically(path, write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def _png(path):
    images.write_png(str(path), np.arange(12, dtype=np.uint8).reshape(3, 4))


def _history_plot(path):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (optional)")
    history = [
        {"epoch": 1, "loss": 1.0, "accuracy": 0.5},
        {"epoch": 2, "loss": 0.7, "accuracy": 0.6},
    ]
    viz.plot_history(history, path)


def _bench_json(path):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    bench.run(parser.parse_args(["--quick", "--ops", "relu", "--json", str(path)]))


@pytest.mark.parametrize("writer", [_png, _history_plot, _bench_json])
def test_each_writer_is_atomic(tmp_path, monkeypatch, writer):
    path = tmp_path / "out"
    writer(path)
    written = path.read_bytes()
    assert written
    path.write_bytes(b"old")
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(OSError, match="disk full"):
        writer(path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_unwritable_folder_is_reported_by_the_file_asked_for(tmp_path):
    """A missing folder raises FileNotFoundError naming the target file (it named the temporary
    sibling, '.h.json.x1y2z3.tmp', which the caller never asked for)."""
    target = tmp_path / "missing" / "history.json"
    with pytest.raises(FileNotFoundError) as info:
        _atomic.write_atomically(target, lambda f: f.write(b"{}"))
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)


def _write_pressing_ctrl_c(f):
    f.write(b"new, ")
    signal.raise_signal(signal.SIGINT)
    f.write(b"whole")


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as in an interpreter started from a terminal. A process
    started in the background (`pytest &`, nohup, some CI runners) inherits SIGINT ignored, and
    Python keeps it ignored: there the held Ctrl-C is rightly dropped, and nothing is raised."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_a_write_is_raised_once_the_file_is_in_place(tmp_path, ctrl_c_raises):
    """Ctrl-C could land between mkstemp and the `try` that removes its file, or inside that
    cleanup, and leave a stray temporary beside a checkpoint (seen once in CI): it is held until
    the rename."""
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        _atomic.write_atomically(path, _write_pressing_ctrl_c)
    assert path.read_bytes() == b"new, whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_ctrl_c_stays_ignored(tmp_path):
    """With SIGINT ignored (a background job), a Ctrl-C during the write is not turned into a
    KeyboardInterrupt, and the disposition is put back."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _atomic.write_atomically(tmp_path / "out.bin", _write_pressing_ctrl_c)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert (tmp_path / "out.bin").read_bytes() == b"new, whole"


def test_a_held_ctrl_c_reaches_the_users_own_handler(tmp_path):
    received = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        _atomic.write_atomically(tmp_path / "out.bin", _write_pressing_ctrl_c)
        assert received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, before)
    assert (tmp_path / "out.bin").read_bytes() == b"new, whole"


def test_a_write_from_another_thread_needs_no_signal_handler(tmp_path):
    """Only the main thread may set signal handlers; other threads write without holding Ctrl-C."""
    errors = []

    def save():
        try:
            _atomic.write_atomically(tmp_path / "out.bin", lambda f: f.write(b"new"))
        except Exception as e:  # the assertion below reports it
            errors.append(e)

    worker = threading.Thread(target=save)
    worker.start()
    worker.join()
    assert errors == []
    assert (tmp_path / "out.bin").read_bytes() == b"new"
