"""fastcnn.viz (confusion matrix, PNG plots, feature maps, save_all), examples/edge_detectors.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref

import fastcnn.functional as F
from fastcnn import viz
from fastcnn.datasets import FASHION_MNIST_CLASSES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "edge_detectors.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_CONV2D = hasattr(F, "conv2d")


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib", reason='plots need the "plot" extra (matplotlib)')


def png_size(path: str) -> tuple[int, int]:
    """(height, width) of a PNG file, after checking its signature and decoding it."""
    import matplotlib.image

    data = Path(path).read_bytes()
    assert data[: len(PNG_SIGNATURE)] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    # A blank canvas would mean nothing was drawn.
    assert pixels[..., :3].std() > 0.01
    return pixels.shape[0], pixels.shape[1]


# --- confusion_matrix ----------------------------------------------------------------------------


def test_confusion_matrix_matches_brute_force_count(rng):
    k = 7
    y_true = rng.integers(0, k, size=503)
    y_pred = rng.integers(0, k, size=503)
    expected = np.zeros((k, k), np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    got = viz.confusion_matrix(y_true, y_pred, k)
    assert got.dtype == np.int64 and got.shape == (k, k)
    np.testing.assert_array_equal(got, expected)


def test_confusion_matrix_empty_and_unused_classes():
    np.testing.assert_array_equal(viz.confusion_matrix([], [], 3), np.zeros((3, 3), np.int64))
    got = viz.confusion_matrix(np.array([0, 0, 2], np.int32), np.array([0, 2, 2], np.uint8), 4)
    np.testing.assert_array_equal(got[3], 0)
    assert got[0, 0] == 1 and got[0, 2] == 1 and got[2, 2] == 1


@pytest.mark.parametrize(
    "y_true, y_pred, k, error, match",
    [
        ([0, 3], [0, 1], 3, ValueError, "y_true"),
        ([0, 1], [0, -1], 3, ValueError, "y_pred"),
        ([0.0, 1.0], [0, 1], 3, TypeError, "y_true"),
        ([0, 1], [0, 1, 1], 3, ValueError, "y_pred"),
        ([[0, 1]], [[0, 1]], 3, ValueError, "y_true"),
        ([0, 1], [0, 1], 0, ValueError, "num_classes"),
    ],
)
def test_confusion_matrix_bad_input(y_true, y_pred, k, error, match):
    with pytest.raises(error, match=match):
        viz.confusion_matrix(y_true, y_pred, k)


# --- plots ---------------------------------------------------------------------------------------


def test_plot_history_png(mpl, tmp_path):
    history = [
        {
            "epoch": e,
            "loss": 2.0 / e,
            "accuracy": 0.5 + 0.1 * e,
            "val_loss": 2.2 / e,
            "val_accuracy": 0.45 + 0.1 * e,
        }
        for e in range(1, 5)
    ]
    path = viz.plot_history(history, tmp_path / "curves.png")
    assert path == str(tmp_path / "curves.png")
    h, w = png_size(path)
    assert w > 2 * h  # two panels side by side


def test_plot_history_without_validation_and_one_epoch(mpl, tmp_path):
    png_size(viz.plot_history([{"loss": 1.0, "accuracy": 0.3}], tmp_path / "one.png"))


def test_plot_history_bad_input(mpl, tmp_path):
    with pytest.raises(ValueError, match="history"):
        viz.plot_history([], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"history\[1\]"):
        viz.plot_history([{"loss": 1.0, "accuracy": 0.1}, {"loss": 1.0}], tmp_path / "x.png")


def test_plot_filters_png(mpl, rng, tmp_path):
    weight = rng.standard_normal((70, 3, 5, 5)).astype(np.float32)
    weight[1] = 0.25  # a constant filter has no contrast and must not divide by zero
    h, w = png_size(viz.plot_filters(weight, tmp_path / "filters.png"))
    assert 0.8 < w / h < 1.25  # 64 of 70 filters: an 8 x 8 grid


def test_plot_filters_bad_input(mpl, tmp_path):
    with pytest.raises(ValueError, match="weight"):
        viz.plot_filters(np.ones((4, 3, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="max_filters"):
        viz.plot_filters(np.ones((4, 1, 3, 3)), tmp_path / "x.png", max_filters=0)


def test_plot_feature_maps_png(mpl, rng, tmp_path):
    maps = rng.standard_normal((1, 4, 10, 40)).astype(np.float32)
    h, w = png_size(viz.plot_feature_maps(maps, tmp_path / "maps.png", title="wide maps"))
    assert w > h  # a 2 x 2 grid of maps four times wider than tall
    png_size(viz.plot_feature_maps(maps[0, :1], tmp_path / "one.png"))


def test_plot_feature_maps_bad_input(mpl, tmp_path):
    with pytest.raises(ValueError, match="maps"):
        viz.plot_feature_maps(np.ones((2, 3, 4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="max_maps"):
        viz.plot_feature_maps(np.ones((3, 4, 4)), tmp_path / "x.png", max_maps=-1)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_png(mpl, rng, tmp_path, normalize):
    names = list(FASHION_MNIST_CLASSES)
    matrix = viz.confusion_matrix(rng.integers(0, 10, 300), rng.integers(0, 10, 300), 10)
    matrix[9] = 0  # a class with no samples: its normalized row stays zero
    h, w = png_size(viz.plot_confusion(matrix, names, tmp_path / "confusion.png", normalize))
    assert 0.9 < w / h < 1.4


def test_plot_confusion_bad_input(mpl, tmp_path):
    with pytest.raises(ValueError, match="class_names"):
        viz.plot_confusion(np.eye(3, dtype=np.int64), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="matrix"):
        viz.plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "x.png")


def test_missing_matplotlib_gives_install_hint(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[plot\]"'):
        viz.plot_history([{"loss": 1.0, "accuracy": 0.5}], tmp_path / "x.png")


def test_fastcnn_imports_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import fastcnn, fastcnn.viz\n"
        "print(fastcnn.viz.confusion_matrix([0, 1], [1, 1], 2).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[[0, 1], [0, 1]]"


# --- feature_maps and save_all -------------------------------------------------------------------


class _Recorder:
    """A layer that scales its input and records the model's mode when called."""

    def __init__(self, model: _Stack, scale: float) -> None:
        self.model, self.scale, self.seen_training = model, scale, []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen_training.append(self.model.training)
        return (x * self.scale).astype(np.float32)


class _Fail:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("layer failed")


class _Stack:
    """The part of fastcnn.nn.Sequential's interface that feature_maps uses."""

    def __init__(self, n: int) -> None:
        self.training = True
        self.layers = [_Recorder(self, 2.0 + i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int):
        return self.layers[i]

    def eval(self) -> _Stack:
        return self.train(False)

    def train(self, mode: bool = True) -> _Stack:
        self.training = bool(mode)
        return self


@pytest.mark.parametrize("mode", [True, False])
def test_feature_maps_runs_prefix_in_eval_mode_and_restores_mode(rng, mode):
    model = _Stack(4).train(mode)
    image = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    got = viz.feature_maps(model, image, 1)
    np.testing.assert_allclose(got, image * 2.0 * 3.0, rtol=1e-6)
    assert [layer.seen_training for layer in model.layers] == [[False], [False], [], []]
    assert model.training is mode
    np.testing.assert_allclose(viz.feature_maps(model, image, -1), image * 120.0, rtol=1e-6)


def test_feature_maps_restores_mode_when_a_layer_raises(rng):
    model = _Stack(2)
    model.layers[1] = _Fail()
    with pytest.raises(RuntimeError, match="layer failed"):
        viz.feature_maps(model, rng.standard_normal((1, 1, 3, 3)), 1)
    assert model.training is True


def test_feature_maps_bad_input(rng):
    model = _Stack(2)
    with pytest.raises(ValueError, match="image"):
        viz.feature_maps(model, rng.standard_normal((2, 1, 3, 3)), 0)
    with pytest.raises(ValueError, match="layer_index"):
        viz.feature_maps(model, rng.standard_normal((1, 1, 3, 3)), 2)
    with pytest.raises(TypeError, match="layer_index"):
        viz.feature_maps(model, rng.standard_normal((1, 1, 3, 3)), 0.0)


def _small_cnn(rng):
    """A conv net to plot: fastcnn.nn once it exists, else a stand-in with the same interface."""
    try:
        from fastcnn import nn
    except ImportError:
        nn = None
    if nn is not None:
        if not HAS_CONV2D:
            pytest.skip("fastcnn.nn.Conv2d needs fastcnn.functional.conv2d")
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(6 * 14 * 14, 10),
        )

    class Conv:
        def __init__(self) -> None:
            self.weight = type("Parameter", (), {})()
            self.weight.data = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return _np_conv2d(x, self.weight.data, padding=2)

    model = _Stack(0)
    model.layers = [lambda x: x, Conv(), np.tanh]
    return model


def test_save_all_writes_four_pngs(mpl, rng, tmp_path):
    model = _small_cnn(rng)
    history = [
        {"loss": 1.0 / e, "accuracy": 0.1 * e, "val_loss": 1.1 / e, "val_accuracy": 0.1 * e}
        for e in range(1, 4)
    ]
    images = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    labels, predictions = rng.integers(0, 10, 5), rng.integers(0, 10, 5)
    out = tmp_path / "plots" / "run1"
    paths = viz.save_all(
        model, history, images, labels, predictions, [f"c{i}" for i in range(10)], out
    )
    names = ["curves.png", "filters.png", "feature_maps.png", "confusion.png"]
    assert paths == [str(out / n) for n in names]
    for p in paths:
        png_size(p)
    assert model.training is True


# --- examples/edge_detectors.py ------------------------------------------------------------------


def _np_conv2d(x, weight, bias=None, stride=1, padding=0, **_):
    """Stand-in for F.conv2d until it exists: stride-1 cross-correlation by shifted slices."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    _, _, R, S = weight.shape
    P, Q = xp.shape[2] - R + 1, xp.shape[3] - S + 1
    y = sum(
        np.einsum("nchw,kc->nkhw", xp[:, :, r : r + P, s : s + Q], weight[:, :, r, s])
        for r in range(R)
        for s in range(S)
    )
    return y.astype(np.float32)


@pytest.fixture
def example(monkeypatch):
    if not HAS_CONV2D:
        monkeypatch.setattr(F, "conv2d", _np_conv2d, raising=False)
    spec = importlib.util.spec_from_file_location("edge_detectors", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_edge_maps_match_float64_correlation(example, rng):
    images = rng.random((3, 28, 28)).astype(np.float32)
    got = example.edge_maps(images)
    assert got.shape == (3, 5, 28, 28) and got.dtype == np.float32
    want = ref.conv2d(images[:, None], example.kernel_weight(), padding=1)
    want = np.concatenate([want, np.hypot(want[:, :1], want[:, 1:2])], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_sobel_x_is_not_flipped(example):
    # Dark left half, bright right half: cross-correlation with Sobel x gives +4 on the edge.
    step = np.zeros((1, 28, 28), np.float32)
    step[:, :, 14:] = 1.0
    maps = example.edge_maps(step)
    np.testing.assert_allclose(maps[0, 0, 5:23, 13:15], 4.0)
    np.testing.assert_allclose(maps[0, 1, 5:23, 5:23], 0.0, atol=1e-6)


def test_example_main_writes_png(mpl, example, tmp_path, capsys):
    out = tmp_path / "edges.png"
    assert example.main(["--count", "3", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    h, w = png_size(str(out))
    assert w > h  # three rows of six panels


@pytest.mark.skipif(not HAS_CONV2D, reason="fastcnn.functional.conv2d is not built yet")
def test_example_runs_as_a_script(mpl, tmp_path):
    out = tmp_path / "edge_maps.png"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run(
        [sys.executable, str(EXAMPLE), "--count", "2", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    png_size(str(out))
