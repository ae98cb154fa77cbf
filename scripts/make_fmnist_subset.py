"""Writes python/fastcnn/_data/fashion_mnist_subset.npz: a stratified sample of Fashion-MNIST.

Draws, with a fixed seed, the same number of images of each class from the train and the test
split of the full dataset, keeps them in their original order, and stores per split
`<split>_images` uint8 (N, 28, 28), `<split>_labels` uint8 (N,) and `<split>_indices` uint16 (N,),
the position of each image in the full split. Rerunning it reproduces the file byte for byte.

    python scripts/make_fmnist_subset.py [--path DIR] [--train-per-class 200] [--test-per-class 50]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

from fastcnn.datasets import fashion_mnist

SEED = 20170825  # the day Fashion-MNIST was published
OUT = (
    Path(__file__).resolve().parent.parent
    / "python"
    / "fastcnn"
    / "_data"
    / "fashion_mnist_subset.npz"
)


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """`per_class` indices of each class, drawn without replacement, in increasing order."""
    picks = [
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for c in range(int(labels.max()) + 1)
    ]
    return np.sort(np.concatenate(picks))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz that np.load reads, written with fixed timestamps and maximal compression so that
    the same arrays always give the same bytes (np.savez_compressed stamps the current time)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="folder with the Fashion-MNIST idx files (default: search)")
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    arrays = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        images, labels = fashion_mnist(split, args.path)
        chosen = stratified(labels, per_class, rng)
        arrays[f"{split}_images"] = images[chosen]
        arrays[f"{split}_labels"] = labels[chosen].astype(np.uint8)
        arrays[f"{split}_indices"] = chosen.astype(np.uint16)
    write_npz(args.out, arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
