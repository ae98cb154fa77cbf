"""Tests of `fastcnn bench`: the NumPy baselines against the float64 oracle, then the bench itself.

Layout key: x is (N, C, H, W), w is (K, C/groups, R, S), y and dy are (N, K, P, Q).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref

import fastcnn
from fastcnn import bench
from fastcnn import numpy_ops as nops

# float32 baselines against the float64 oracle, as for the kernels.
RTOL = 1e-4
ATOL = 1e-5


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _close(actual, expected) -> None:
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


# --- NumPy baselines against the oracle -----------------------------------------------------------

# (x shape, w shape, kwargs): batch 1, odd sizes, stride, padding 2, dilation, groups, depthwise,
# 1x1, and the 7x7 stride-2 stem.
CONV_CASES = [
    ((1, 3, 7, 5), (4, 3, 3, 3), {"padding": 1}),
    ((2, 5, 9, 8), (6, 5, 3, 2), {"stride": 2, "padding": 2}),
    ((2, 4, 11, 10), (6, 2, 3, 3), {"padding": (1, 2), "dilation": 2, "groups": 2}),
    ((3, 6, 8, 7), (6, 1, 3, 3), {"padding": 1, "groups": 6}),
    ((2, 5, 12, 9), (5, 1, 3, 2), {"stride": 2, "padding": 2, "dilation": (2, 1), "groups": 5}),
    ((2, 7, 5, 6), (3, 7, 1, 1), {}),
    ((1, 3, 17, 15), (4, 3, 7, 7), {"stride": 2, "padding": 3}),
]


@pytest.mark.parametrize("xs, ws, kw", CONV_CASES)
def test_numpy_conv2d(rng, xs, ws, kw) -> None:
    x, w, b = _randn(rng, *xs), _randn(rng, *ws), _randn(rng, ws[0])
    y = nops.conv2d(x, w, b, **kw)
    _close(y, ref.conv2d(x, w, b, **kw))
    dy = _randn(rng, *y.shape)
    for got, want in zip(nops.conv2d_backward(dy, x, w, **kw), ref.conv2d_backward(dy, x, w, **kw)):
        _close(got, want)


def test_numpy_conv2d_output_mask(rng) -> None:
    x, w = _randn(rng, 2, 3, 6, 6), _randn(rng, 4, 3, 3, 3)
    dy = _randn(rng, 2, 4, 4, 4)
    dx, dw, db = nops.conv2d_backward(dy, x, w, output_mask=(False, True, False))
    assert dx is None and db is None
    _close(dw, ref.conv2d_backward(dy, x, w)[1])


@pytest.mark.parametrize("shape, k", [((2, 3, 8, 8), 2), ((1, 5, 7, 9), 2), ((2, 2, 10, 11), 3)])
def test_numpy_pooling(rng, shape, k) -> None:
    x = _randn(rng, *shape)
    y_ref, _ = ref.max_pool2d(x, k)
    _close(nops.max_pool2d(x, k), y_ref)
    y, idx = nops.max_pool2d(x, k, return_indices=True)
    _close(y, y_ref)
    dy = _randn(rng, *y.shape)
    want = ref.max_pool2d_backward(dy, x, k)
    _close(nops.max_pool2d_backward(dy, x, k), want)
    _close(nops.max_pool2d_backward(dy, x, k, indices=idx), want)

    _close(nops.avg_pool2d(x, k), ref.avg_pool2d(x, k))
    _close(nops.avg_pool2d_backward(dy, x, k), ref.avg_pool2d_backward(dy, x, k))


def test_numpy_pooling_refuses_overlapping_windows(rng) -> None:
    with pytest.raises(ValueError, match="stride"):
        nops.max_pool2d(_randn(rng, 1, 1, 4, 4), 3, stride=2)


def test_numpy_relu_linear_xent(rng) -> None:
    x, dy = _randn(rng, 3, 5, 7), _randn(rng, 3, 5, 7)
    _close(nops.relu(x), ref.relu(x))
    _close(nops.relu_backward(dy, x), ref.relu_backward(dy, x))
    for op in ("sigmoid", "tanh"):
        _close(getattr(nops, op)(x), getattr(ref, op)(x))
        _close(getattr(nops, op + "_backward")(dy, x), getattr(ref, op + "_backward")(dy, x))

    x, w, b = _randn(rng, 5, 37), _randn(rng, 11, 37), _randn(rng, 11)
    _close(nops.linear(x, w, b), ref.linear(x, w, b))
    dy = _randn(rng, 5, 11)
    for got, want in zip(nops.linear_backward(dy, x, w), ref.linear_backward(dy, x, w)):
        _close(got, want)

    logits, labels = _randn(rng, 7, 10), rng.integers(0, 10, 7)
    assert nops.cross_entropy(logits, labels) == pytest.approx(
        ref.cross_entropy(logits, labels), rel=RTOL
    )
    _close(nops.cross_entropy_backward(logits, labels), ref.cross_entropy_backward(logits, labels))


@pytest.mark.parametrize("training", [True, False])
def test_numpy_batch_norm(rng, training) -> None:
    x = _randn(rng, 3, 5, 7, 6) * 2 + 1
    w, b = _randn(rng, 5), _randn(rng, 5)
    rm, rv = _randn(rng, 5), rng.uniform(0.5, 2, 5).astype(np.float32)
    want_y, want_rm, want_rv, _, _ = ref.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)
    rm32, rv32 = rm.copy(), rv.copy()
    _close(nops.batch_norm(x, rm32, rv32, w, b, training, 0.1, 1e-5), want_y)
    _close(rm32, want_rm)
    _close(rv32, want_rv)
    if training:
        dy = _randn(rng, *x.shape)
        got = nops.batch_norm_backward(dy, x, w, 1e-5)
        for g, e in zip(got, ref.batch_norm_backward(dy, x, w, 1e-5)):
            _close(g, e)


def test_numpy_ops_leave_inputs_unchanged(rng) -> None:
    x, w = _randn(rng, 2, 3, 6, 6), _randn(rng, 4, 3, 3, 3)
    dy = _randn(rng, 2, 4, 6, 6)
    saved = [a.copy() for a in (x, w, dy)]
    nops.conv2d(x, w, padding=1)
    nops.conv2d_backward(dy, x, w, padding=1)
    nops.max_pool2d_backward(dy[:, :3, :3, :3], x, 2)
    for a, s in zip((x, w, dy), saved):
        np.testing.assert_array_equal(a, s)


# --- the bench ------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


def test_bench_quick_json(tmp_path, capsys) -> None:
    out = tmp_path / "out.json"
    assert _run(["--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    text = capsys.readouterr().out
    assert "numpy ms" in text and "OPENBLAS_CORETYPE" in text
    meta, rows = report["meta"], report["rows"]
    assert meta["fastcnn_version"] == fastcnn.__version__
    assert meta["threads"] == fastcnn.get_num_threads()
    assert {r["op"] for r in rows} == set(bench.OPS)
    # Every op is either timed and checked, or skipped because this build lacks it: never failed.
    for r in rows:
        assert r["status"] in ("ok", "skipped"), r
        if r["status"] == "ok":
            assert r["numpy_ms"] > 0 and r["fastcnn_ms"] > 0
            assert r["speedup_vs_numpy"] == pytest.approx(r["numpy_ms"] / r["fastcnn_ms"])
        else:
            assert r["reason"]
    # relu is in every build.
    assert [r["status"] for r in rows if r["op"] == "relu"] == ["ok", "ok"]


def test_bench_ops_filter_and_threads(tmp_path) -> None:
    out = tmp_path / "out.json"
    before = fastcnn.get_num_threads()
    assert (
        _run(["--quick", "--ops", "relu", "--threads", "1", "--repeats", "2", "--json", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    assert {r["op"] for r in report["rows"]} == {"relu"}
    assert report["meta"]["threads"] == 1 and report["meta"]["repeats"] == 2
    assert fastcnn.get_num_threads() == before


def test_bench_refuses_unknown_op(capsys) -> None:
    assert _run(["--quick", "--ops", "relu,conv3d"]) == 2
    assert "conv3d" in capsys.readouterr().err


def test_bench_aborts_row_on_mismatch(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(fastcnn.functional, "relu", lambda x: np.asarray(x) + 1)
    out = tmp_path / "out.json"
    assert _run(["--quick", "--ops", "relu", "--json", str(out)]) == 1
    fwd, bwd = json.loads(out.read_text())["rows"]
    assert fwd["status"] == "mismatch" and fwd["fastcnn_ms"] is None
    assert bwd["status"] == "ok"
    assert "MISMATCH" in capsys.readouterr().out


def test_bench_torch(tmp_path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "out.json"
    assert _run(["--quick", "--torch", "--ops", "relu,conv2d", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    for r in rows:
        if r["status"] == "ok":
            assert r["torch_ms"] > 0 and r["torch_status"] == "ok"


def test_bench_plot(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert _run(["--quick", "--torch", "--ops", "relu", "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_torch_harness_agrees_with_numpy() -> None:
    # The torch column of every row, whatever this fastcnn build has: a wrong aten call shows here.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for case in bench.cases(quick=True):
        d = case.inputs(rng)
        assert bench.compare(case.torch(d, torch)(), case.numpy(d)()) is None, case


def _numpy_stand_ins(monkeypatch) -> None:
    """fastcnn.functional with every op the bench calls, done by numpy_ops."""
    for name in bench.OPS:
        for fn in (name, name + "_backward"):
            monkeypatch.setattr(fastcnn.functional, fn, getattr(nops, fn), raising=False)
    monkeypatch.setattr(
        fastcnn.functional,
        "batch_norm_backward",
        lambda dy, x, w, training, eps, **saved: nops.batch_norm_backward(dy, x, w, eps),
    )
    # The backward row takes the saved statistics from batch_norm_train; NumPy recomputes them.
    monkeypatch.setattr(
        fastcnn.functional, "batch_norm_train", lambda *args: (None, None, None), raising=False
    )


def test_bench_times_every_row_once_ops_exist(monkeypatch, tmp_path) -> None:
    _numpy_stand_ins(monkeypatch)
    out = tmp_path / "out.json"
    assert _run(["--quick", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(bench.cases(quick=True))
    assert all(r["status"] == "ok" and r["fastcnn_rate"] > 0 for r in rows)
    passes = {r["pass"] for r in rows if r["op"] == "conv2d"}
    assert passes == {"forward", "backward-input", "backward-weight"}


def test_bench_blas_threads_without_threadpoolctl(monkeypatch) -> None:
    # The fallback calls OpenBLAS directly; threadpoolctl is optional.
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    blas = bench.BlasThreads()
    if not blas.available:
        pytest.skip("NumPy's BLAS is not an OpenBLAS found in /proc/self/maps")
    before = blas.get()
    blas.set(1)
    assert blas.get() == 1
    blas.restore()
    assert blas.get() == before
    assert "threads" in blas.describe()


def test_bench_plot_without_matplotlib(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "bench.png"
    assert _run(["--quick", "--ops", "relu", "--plot", str(png)]) == 2
    assert not png.exists()
    assert "matplotlib" in capsys.readouterr().err


def test_bench_kernels_script(tmp_path) -> None:
    # The developer script runs the table in a child process with the variant forced at import.
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_kernels.py"
    out = tmp_path / "kernels.json"
    cmd = [sys.executable, str(script), "--op", "relu", "--quick", "--variant", "ref"]
    done = subprocess.run(
        [*cmd, "--json", str(out)], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "git_commit" in done.stdout
    meta = json.loads(out.read_text())["meta"]
    assert meta["cpu_variant"] == "ref" and meta["git_commit"]
