"""Hand-made feature detectors: the 3x3 kernels image processing used before CNNs learned their own.

Sobel-x, Sobel-y, the Laplacian and a diagonal Prewitt kernel are applied to a few Fashion-MNIST
images with `fastcnn.functional.conv2d`, the same call a Conv2d layer makes, and the gradient
magnitude sqrt(gx^2 + gy^2) is computed from the two Sobel responses. A PNG grid shows each image
beside its maps: red where a kernel responds positively, blue where negatively.

"Convolution" in CNNs (fastcnn, PyTorch, every framework) is cross-correlation: the kernel is slid
over the image without being flipped, y[i, j] = sum_{r, s} w[r, s] * x[i + r - 1, j + s - 1] with
padding 1. So the Sobel-x kernel below, negative on the left column and positive on the right,
responds positively where brightness rises from left to right. A learned first layer does not care
about the flip (it would just learn the flipped weights), which is why frameworks skip it.

    python examples/edge_detectors.py --count 4 --out edge_maps.png
    python examples/edge_detectors.py --data DIR   # the full Fashion-MNIST files in DIR

Needs matplotlib: pip install "fastcnn[plot]".
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fastcnn.functional as F

# Each kernel is written as it is applied (cross-correlation, no flip), rows top to bottom.
KERNELS = {
    "Sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "Sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "Laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "Prewitt diagonal": [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]],
}
MAP_NAMES = (*KERNELS, "gradient magnitude")


def kernel_weight() -> np.ndarray:
    """The four kernels as one convolution weight (K=4, C=1, R=3, S=3), float32."""
    return np.array(list(KERNELS.values()), dtype=np.float32)[:, None]


def edge_maps(images: np.ndarray) -> np.ndarray:
    """images (N, H, W) float32 -> maps (N, 5, H, W): the four kernel responses (same size, padding
    1) and the Sobel gradient magnitude sqrt(gx^2 + gy^2)."""
    x = np.asarray(images, dtype=np.float32)[:, None]
    responses = F.conv2d(x, kernel_weight(), padding=1)
    gx, gy = responses[:, 0], responses[:, 1]
    magnitude = np.sqrt(gx * gx + gy * gy)
    return np.concatenate([responses, magnitude[:, None]], axis=1)


def _synthetic_images(count: int) -> tuple[np.ndarray, list[str]]:
    """Shapes with edges in every direction, for when no Fashion-MNIST data is at hand."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    shapes = {
        "square": ((np.abs(xx - 13.5) < 8) & (np.abs(yy - 13.5) < 8)),
        "disk": (xx - 13.5) ** 2 + (yy - 13.5) ** 2 < 81,
        "diamond": np.abs(xx - 13.5) + np.abs(yy - 13.5) < 10,
        "stripes": (xx + yy) % 8 < 4,
    }
    names = list(shapes)[:count]
    return np.stack([shapes[n].astype(np.float32) for n in names]), names


def load_images(count: int, data: str | None) -> tuple[np.ndarray, list[str]]:
    """Up to `count` test images in [0, 1], (N, 28, 28) float32, one a class, and their captions."""
    try:
        from fastcnn import datasets
    except ImportError:
        print("fastcnn.datasets is not available: using synthetic shapes", file=sys.stderr)
        return _synthetic_images(count)
    if data is not None:
        images, labels = datasets.fashion_mnist("test", path=data)
    else:
        images, labels = datasets.fashion_mnist_subset("test")
    names = getattr(datasets, "FASHION_MNIST_CLASSES", None)
    # The first image of each class in turn, so that the examples differ.
    _, first = np.unique(labels, return_index=True)
    picks = np.sort(first)[:count]
    captions = [names[labels[i]] if names else f"class {labels[i]}" for i in picks]
    return images[picks].astype(np.float32) / 255.0, captions


def plot_edge_maps(images: np.ndarray, maps: np.ndarray, captions: list[str], path: str) -> str:
    """One row per image: the image, then each map of edge_maps on a symmetric color scale."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError('this example needs matplotlib: pip install "fastcnn[plot]"') from e
    rows, cols = len(images), 1 + maps.shape[1]
    fig = Figure(figsize=(1.9 * cols, 2.0 * rows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    for r in range(rows):
        ax = fig.add_subplot(rows, cols, r * cols + 1)
        ax.imshow(images[r], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(captions[r], fontsize=9)
        ax.set_axis_off()
        for c, name in enumerate(MAP_NAMES):
            ax = fig.add_subplot(rows, cols, r * cols + c + 2)
            m = maps[r, c]
            if name == "gradient magnitude":
                ax.imshow(m, cmap="magma", vmin=0.0, vmax=max(float(m.max()), 1e-6))
            else:
                # Symmetric limits keep zero white, so the sign of each response reads at a glance.
                limit = max(float(np.abs(m).max()), 1e-6)
                ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
            if r == 0:
                ax.set_title(name, fontsize=9)
            ax.set_axis_off()
    fig.suptitle("hand-made 3x3 feature detectors (cross-correlation, padding 1)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4, help="images to show (default 4)")
    parser.add_argument(
        "--out", default="edge_maps.png", help="PNG to write (default edge_maps.png)"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="full Fashion-MNIST files instead of the subset that ships with fastcnn",
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count: expected a positive int, got {args.count}")
    images, captions = load_images(args.count, args.data)
    maps = edge_maps(images)
    print(f"wrote {plot_edge_maps(images, maps, captions, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
