"""Every file fastcnn writes replaces the old one atomically: a failed write leaves the old file
whole and no temporary file behind."""

from __future__ import annotations

import argparse
import os

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
