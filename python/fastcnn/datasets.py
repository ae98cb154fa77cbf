"""MNIST and Fashion-MNIST from their idx files, and a small Fashion-MNIST subset shipped with
fastcnn.

Loaders return `(images, labels)`: uint8 (N, 28, 28) and int64 (N,). `to_nchw_float` in
`fastcnn.data` turns the images into the float32 (N, 1, 28, 28) batches the layers take.
Files are the four idx files of each dataset, gzipped (`train-images-idx3-ubyte.gz`) or not.
"""

from __future__ import annotations

import gzip
import os
import zlib
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "fashion_mnist",
    "fashion_mnist_subset",
    "fashion_mnist_subset_indices",
    "mnist",
    "read_idx",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

#: where Debian's and Ubuntu's `dataset-fashion-mnist` package installs the files
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
_IMAGE_SIZE = 28
_NUM_CLASSES = 10
_UBYTE = 0x08  # the idx type code of unsigned bytes, the only one these datasets use


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """The uint8 array in an idx file (gzipped if its name ends in .gz) of `ndim` dimensions.

    Raises ValueError, naming the file, if the header is not that of an unsigned-byte idx file of
    `ndim` dimensions or the data is shorter or longer than the header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
            if len(header) < 4 or header[0] != 0 or header[1] != 0:
                raise ValueError(f"{path}: not an idx file (bad magic number {header[:4].hex()})")
            if header[2] != _UBYTE or header[3] != ndim:
                raise ValueError(
                    f"{path}: expected an idx file of unsigned bytes with {ndim} dimensions, "
                    f"got type code 0x{header[2]:02x} with {header[3]} dimensions"
                )
            if len(header) < 4 + 4 * ndim:
                raise ValueError(f"{path}: truncated idx header")
            shape = tuple(int(d) for d in np.frombuffer(header, ">u4", offset=4))
            data = np.empty(shape, np.uint8)
            got = _read_into(f, memoryview(data.reshape(-1)))
            if got != data.size:
                raise ValueError(
                    f"{path}: truncated: the header promises {data.size} bytes of data "
                    f"(shape {shape}), the file holds {got}"
                )
            if f.read(1):
                raise ValueError(f"{path}: more data than the header's shape {shape} holds")
    except (EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read it as an idx file: {e}") from e
    return data


def _read_into(f: BinaryIO, view: memoryview) -> int:
    """Fills `view` from `f` as far as the file goes; returns the number of bytes read."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _candidate_dirs(
    path: str | os.PathLike | None, subdirs: tuple[str, ...], debian: Path | None
) -> list[Path]:
    """The directories to search, in order. An explicit `path` is the only root searched."""
    if path is not None:
        roots = [Path(path)]
    else:
        roots = [Path(os.environ["FASTCNN_DATA"])] if os.environ.get("FASTCNN_DATA") else []
    # Both datasets use the same file names, so a shared root keeps each in its own folder.
    dirs = [root / sub for root in roots for sub in subdirs]
    if path is not None:
        dirs.insert(0, Path(path))
    elif debian is not None:
        dirs.append(debian)
    return dirs


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _load(
    dataset: str,
    split: str,
    path: str | os.PathLike | None,
    subdirs: tuple[str, ...],
    debian: Path | None,
    how_to_get: str,
) -> tuple[np.ndarray, np.ndarray]:
    if split not in _SPLITS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    images_name, labels_name, count = _SPLITS[split]
    dirs = _candidate_dirs(path, subdirs, debian)
    for directory in dirs:
        images_file, labels_file = _find(directory, images_name), _find(directory, labels_name)
        if images_file is not None and labels_file is not None:
            break
    else:
        looked = "\n".join(f"  {d}/{images_name}[.gz] and {labels_name}[.gz]" for d in dirs)
        if not dirs:
            looked = "  nowhere: no path= was given and FASTCNN_DATA is not set"
        raise FileNotFoundError(
            f"{dataset} ({split}) not found. Looked for\n{looked}\n{how_to_get}"
        )
    images = read_idx(images_file, 3)
    labels = read_idx(labels_file, 1)
    if images.shape != (count, _IMAGE_SIZE, _IMAGE_SIZE):
        raise ValueError(
            f"{images_file}: expected {dataset} {split} images of shape "
            f"{(count, _IMAGE_SIZE, _IMAGE_SIZE)}, got {images.shape}"
        )
    if labels.shape != (count,):
        raise ValueError(
            f"{labels_file}: expected {count} {dataset} {split} labels, got {labels.shape[0]}"
        )
    if labels.max(initial=0) >= _NUM_CLASSES:
        raise ValueError(
            f"{labels_file}: labels must be class ids 0..{_NUM_CLASSES - 1}, "
            f"found {int(labels.max())}"
        )
    return images, labels.astype(np.int64)


def fashion_mnist(
    split: str = "train", path: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (Zalando, MIT license): 60,000 train or 10,000 test 28x28 grey images of
    clothing in 10 classes (`FASHION_MNIST_CLASSES`).

    Returns `(images, labels)`: uint8 (N, 28, 28), int64 (N,). Looks in `path` (the files directly
    in it, or in its `fashion-mnist/` or torchvision `FashionMNIST/raw/` folder) if given; otherwise
    in `$FASTCNN_DATA/fashion-mnist/` (or `$FASTCNN_DATA/FashionMNIST/raw/`), then in
    /usr/share/datasets/fashion-mnist/ (Debian's `dataset-fashion-mnist` package).
    Raises FileNotFoundError listing every place searched, ValueError for a corrupt file.
    """
    how = (
        "Get it with `sudo apt-get install dataset-fashion-mnist` (Debian, Ubuntu), or download\n"
        "the four files from https://github.com/zalandoresearch/fashion-mnist into a folder\n"
        "DIR/fashion-mnist/ and set FASTCNN_DATA=DIR, or pass path=. For a quick start without\n"
        "any download, fastcnn.datasets.fashion_mnist_subset() ships 2,500 of the images."
    )
    return _load(
        "Fashion-MNIST",
        split,
        path,
        ("fashion-mnist", "FashionMNIST/raw"),
        DEBIAN_FASHION_MNIST_DIR,
        how,
    )


def mnist(
    split: str = "train", path: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST: 60,000 train or 10,000 test 28x28 grey images of handwritten digits 0-9.

    Returns `(images, labels)`: uint8 (N, 28, 28), int64 (N,). Looks in `path` (the files directly
    in it, or in its `mnist/` or torchvision `MNIST/raw/` folder) if given, otherwise in
    `$FASTCNN_DATA/mnist/` (or `$FASTCNN_DATA/MNIST/raw/`). Raises FileNotFoundError listing every
    place searched, ValueError for a corrupt file.
    """
    how = (
        "MNIST has no Debian package: download train-images-idx3-ubyte.gz,\n"
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz\n"
        "(from http://yann.lecun.com/exdb/mnist/ or a mirror) into DIR/mnist/ and set\n"
        "FASTCNN_DATA=DIR, or pass path=."
    )
    return _load("MNIST", split, path, ("mnist", "MNIST/raw"), None, how)


def fashion_mnist_subset(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """A stratified sample of Fashion-MNIST shipped inside fastcnn, for tests and quick demos:
    2,000 train images (200 per class) or 500 test images (50 per class), in their original order.

    Drawn with a fixed seed by scripts/make_fmnist_subset.py. Returns `(images, labels)`: uint8
    (N, 28, 28), int64 (N,). `fashion_mnist_subset_indices(split)` gives each image's index in the
    full split.
    """
    images, labels, _ = _subset(split)
    return images, labels


def fashion_mnist_subset_indices(split: str = "train") -> np.ndarray:
    """The index in the full Fashion-MNIST split of each image of `fashion_mnist_subset(split)`."""
    return _subset(split)[2]


def _subset(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if split not in _SPLITS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    resource = resources.files("fastcnn") / "_data" / "fashion_mnist_subset.npz"
    with resources.as_file(resource) as file, np.load(file, allow_pickle=False) as npz:
        return (
            npz[f"{split}_images"],
            npz[f"{split}_labels"].astype(np.int64),
            npz[f"{split}_indices"].astype(np.int64),
        )
