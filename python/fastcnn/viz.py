"""Pictures of a training run, written as PNG files: loss and accuracy curves, the first layer's
filters, feature maps of one image, and a confusion matrix.

Drawing needs matplotlib (`pip install "fastcnn[plot]"`); `confusion_matrix` and `feature_maps` are
pure NumPy and work without it. Figures are drawn on matplotlib's Agg canvas, never through pyplot,
so no GUI backend is touched and no global figure state is left behind.
Layout key: feature maps are (C, H, W) or (1, C, H, W); filter weights are KCRS.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from fastcnn._atomic import write_atomically

__all__ = [
    "confusion_matrix",
    "feature_maps",
    "plot_confusion",
    "plot_feature_maps",
    "plot_filters",
    "plot_history",
    "save_all",
]

_DPI = 100
# How to get matplotlib, in every message about its absence (here and in the command line's checks).
INSTALL_HINT = 'pip install "fastcnn[plot]"'


def _new_figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas; ImportError with the install hint otherwise."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            f"fastcnn.viz needs matplotlib to draw; install it with: {INSTALL_HINT}"
        ) from e
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> str:
    return write_atomically(path, lambda f: fig.savefig(f, format="png"))


def _grid(n: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid that holds n panels."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


# --- confusion matrix ----------------------------------------------------------------------------


def _class_ids(y, name: str, num_classes: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class ids, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class ids, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(
            f"{name}: class ids must lie in [0, {num_classes}), "
            f"got values in [{a.min()}, {a.max()}]"
        )
    return a.astype(np.int64, copy=False)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes) int64: entry [t, p] is how many samples of true class t
    were predicted as class p. y_true and y_pred are 1-D integer arrays of the same length."""
    num_classes = _count(num_classes, "num_classes")
    t = _class_ids(y_true, "y_true", num_classes)
    p = _class_ids(y_pred, "y_pred", num_classes)
    if t.shape != p.shape:
        raise ValueError(f"y_pred: expected the shape of y_true {t.shape}, got {p.shape}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def plot_confusion(
    matrix, class_names: Sequence[str], path: str | os.PathLike, normalize: bool = True
) -> str:
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), each cell annotated.
    normalize=True shows each row as fractions of that class's samples (recall on the diagonal)."""
    m = np.asarray(matrix)
    names = [str(c) for c in class_names]
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix: expected a square 2-D array, got shape {m.shape}")
    if len(names) != m.shape[0]:
        raise ValueError(f"class_names: expected {m.shape[0]} names, got {len(names)}")
    counts = m.astype(np.float64)
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        # A class with no samples has an empty row: show zeros rather than 0/0.
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        labels = [[f"{v:.2f}" for v in row] for row in values]
    else:
        values = counts
        labels = [[f"{int(v)}" for v in row] for row in m]
    k = m.shape[0]
    side = max(4.0, 0.6 * k + 2.5)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    top = values.max() if values.size and values.max() > 0 else 1.0
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=top)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    font = 9 if k <= 12 else 7
    for i in range(k):
        for j in range(k):
            # Dark text on light cells, light text on dark ones, so every number stays legible.
            color = "white" if values[i, j] > 0.5 * top else "black"
            ax.text(j, i, labels[i][j], ha="center", va="center", color=color, fontsize=font)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(m.sum())
    accuracy = float(np.trace(m)) / total if total else 0.0
    kind = "row-normalized" if normalize else "counts"
    ax.set_title(f"confusion matrix ({kind}), accuracy {accuracy:.3f} on {total} samples")
    fig.tight_layout()
    return _save(fig, path)


# --- training curves -----------------------------------------------------------------------------


def plot_history(history: list[dict], path: str | os.PathLike) -> str:
    """Two panels, loss and accuracy per epoch, from fit()'s history: a list of per-epoch dicts with
    `loss` and `accuracy`, and optionally `val_loss`, `val_accuracy` and `epoch` (1-based)."""
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError(f"history: expected a non-empty list of per-epoch dicts, got {history!r}")
    for i, logs in enumerate(history):
        if not isinstance(logs, dict) or "loss" not in logs or "accuracy" not in logs:
            raise ValueError(
                f"history[{i}]: expected a dict with 'loss' and 'accuracy', got {logs!r}"
            )
    epochs = [float(logs.get("epoch", i + 1)) for i, logs in enumerate(history)]
    fig = _new_figure(10.0, 4.0)
    for col, (key, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 2, col + 1)
        ax.plot(epochs, [float(h[key]) for h in history], "o-", label=f"train {label}")
        val = [(e, float(h[f"val_{key}"])) for e, h in zip(epochs, history) if f"val_{key}" in h]
        if val:
            ax.plot(*zip(*val), "s--", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
        # Epochs are whole numbers: keep the axis from showing 1.5.
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path)


# --- filters and feature maps --------------------------------------------------------------------


def _tiles(fig, images: np.ndarray, cmap: str, captions: Sequence[str]) -> None:
    rows, cols = _grid(len(images))
    for i, (img, caption) in enumerate(zip(images, captions)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.set_axis_off()


def plot_filters(weight: np.ndarray, path: str | os.PathLike, max_filters: int = 64) -> str:
    """Grid of the first max_filters filters of a convolution weight (K, C, R, S), each averaged
    over its C input channels (for a one-channel input: the filter itself) and stretched to its own
    [min, max], in gray: bright where the filter weighs the input positively."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"weight: expected a 4-D array (K, C, R, S), got shape {w.shape}")
    if w.shape[0] == 0:
        raise ValueError(f"weight: expected at least one filter, got shape {w.shape}")
    shown = w[: _count(max_filters, "max_filters")].mean(axis=1)
    lo = shown.min(axis=(1, 2), keepdims=True)
    span = shown.max(axis=(1, 2), keepdims=True) - lo
    # A constant filter has no contrast to stretch: draw it mid-gray.
    tiles = np.divide(shown - lo, span, out=np.full_like(shown, 0.5), where=span > 0)
    rows, cols = _grid(len(tiles))
    fig = _new_figure(1.2 * cols + 0.4, 1.2 * rows + 0.8)
    fig.suptitle(
        f"first-layer filters: {len(tiles)} of {w.shape[0]}, "
        f"{w.shape[2]}x{w.shape[3]}, mean over {w.shape[1]} input channel(s)"
    )
    for i, tile in enumerate(tiles):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(tile, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
        ax.set_axis_off()
    fig.tight_layout()
    return _save(fig, path)


def plot_feature_maps(
    maps: np.ndarray, path: str | os.PathLike, max_maps: int = 32, title: str | None = None
) -> str:
    """Grid of the first max_maps channels of maps (C, H, W) or (1, C, H, W), each on its own color
    scale (viridis: yellow is that channel's strongest response)."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(
            f"maps: expected a (C, H, W) or (1, C, H, W) array, got shape {np.shape(maps)}"
        )
    if m.shape[0] == 0:
        raise ValueError(f"maps: expected at least one channel, got shape {np.shape(maps)}")
    shown = m[: _count(max_maps, "max_maps")]
    rows, cols = _grid(len(shown))
    aspect = shown.shape[1] / max(shown.shape[2], 1)
    fig = _new_figure(1.6 * cols + 0.4, 1.6 * aspect * rows + 0.8)
    fig.suptitle(
        title or f"feature maps: {len(shown)} of {m.shape[0]} channels, {m.shape[1]}x{m.shape[2]}"
    )
    _tiles(fig, shown, "viridis", [str(i) for i in range(len(shown))])
    fig.tight_layout()
    return _save(fig, path)


def feature_maps(model, image: np.ndarray, layer_index: int) -> np.ndarray:
    """Output of child layer_index of a Sequential model (negative counts from the end), on one
    image (1, C, H, W), with the layers up to it run in eval mode. The model's training mode is
    restored afterwards, even if a layer raises."""
    x = np.asarray(image)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"image: expected one image of shape (1, C, H, W), got shape {x.shape}")
    n = len(model)
    if isinstance(layer_index, bool) or not isinstance(layer_index, (int, np.integer)):
        raise TypeError(f"layer_index: expected an int, got {type(layer_index).__name__}")
    if not -n <= layer_index < n:
        raise ValueError(f"layer_index: expected an int in [{-n}, {n}), got {layer_index}")
    last = int(layer_index) % n
    was_training = model.training
    model.eval()
    try:
        for i in range(last + 1):
            x = model[i](x)
    finally:
        model.train(was_training)
    return np.asarray(x)


def _is_conv2d(module) -> bool:
    try:
        from fastcnn.nn import Conv2d
    except ImportError:
        # Before fastcnn.nn exists, a convolution is recognized by its 4-D (K, C, R, S) weight.
        weight = getattr(module, "weight", None)
        return np.ndim(getattr(weight, "data", None)) == 4
    return isinstance(module, Conv2d)


def save_all(
    model,
    history: list[dict],
    images: np.ndarray,
    labels,
    predictions,
    class_names: Sequence[str],
    out_dir: str | os.PathLike,
) -> list[str]:
    """Write curves.png (history), filters.png (the first Conv2d child's weights), feature_maps.png
    (that layer's output on images[0]) and confusion.png (labels vs predictions) into out_dir,
    creating it. Returns the paths written. A model with no Conv2d child has no filters or feature
    maps to show, and an empty history no curves: those files are left out."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    if history:
        paths.append(plot_history(history, os.path.join(out_dir, "curves.png")))
    conv_index = next((i for i in range(len(model)) if _is_conv2d(model[i])), None)
    if conv_index is not None:
        conv = model[conv_index]
        paths.append(plot_filters(conv.weight.data, os.path.join(out_dir, "filters.png")))
        first = np.asarray(images[:1], dtype=np.float32)
        if len(first):
            maps = feature_maps(model, first, conv_index)
            title = (
                f"feature maps of layer {conv_index} ({type(conv).__name__}) on one test "
                f"image: {min(maps.shape[1], 32)} of {maps.shape[1]} channels"
            )
            paths.append(
                plot_feature_maps(maps, os.path.join(out_dir, "feature_maps.png"), title=title)
            )
    matrix = confusion_matrix(labels, predictions, len(class_names))
    paths.append(plot_confusion(matrix, class_names, os.path.join(out_dir, "confusion.png")))
    return paths
