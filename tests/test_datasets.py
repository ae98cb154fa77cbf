"""MNIST / Fashion-MNIST readers: real files (gzipped and raw), search order, corrupt files, and the
Fashion-MNIST subset shipped in the package."""

from __future__ import annotations

import gzip
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from fastcnn import datasets
from fastcnn.datasets import (
    FASHION_MNIST_CLASSES,
    fashion_mnist,
    fashion_mnist_subset,
    fashion_mnist_subset_indices,
    mnist,
    read_idx,
)

DEBIAN = datasets.DEBIAN_FASHION_MNIST_DIR
needs_debian = pytest.mark.skipif(
    not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist package",
)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("FASTCNN_DATA", raising=False)


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(array).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray, split="test", gz=True):
    ext = ".gz" if gz else ""
    prefix = "t10k" if split == "test" else "train"
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


def blank_test_split() -> tuple[np.ndarray, np.ndarray]:
    """A well-formed test split (10,000 images) that compresses to almost nothing."""
    images = np.zeros((10000, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(10000) % 251
    return images, (np.arange(10000) % 10).astype(np.uint8)


# --- real files ----------------------------------------------------------------------------------


@needs_debian
def test_fashion_mnist_from_the_debian_package():
    x, y = fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [1000] * 10
    assert x.flags.writeable and 60 < x.mean() < 90  # grey clothing on black, not noise or zeros
    x_train, y_train = fashion_mnist("train")
    assert x_train.shape == (60000, 28, 28) and np.bincount(y_train).tolist() == [6000] * 10


@needs_debian
def test_raw_files_read_like_gzipped_ones(tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(DEBIAN / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    x_raw, y_raw = fashion_mnist("test", path=tmp_path)
    x_gz, y_gz = fashion_mnist("test")
    np.testing.assert_array_equal(x_raw, x_gz)
    np.testing.assert_array_equal(y_raw, y_gz)


def test_env_var_comes_before_the_debian_folder(tmp_path, monkeypatch):
    images, labels = blank_test_split()
    write_split(tmp_path / "fashion-mnist", images, labels, gz=False)
    monkeypatch.setenv("FASTCNN_DATA", str(tmp_path))
    x, y = fashion_mnist("test")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_torchvision_layout_and_explicit_path(tmp_path):
    images, labels = blank_test_split()
    write_split(tmp_path / "MNIST" / "raw", images, labels)
    x, y = mnist("test", path=tmp_path)
    np.testing.assert_array_equal(x, images)
    assert y.dtype == np.int64
    x, _ = mnist("test", path=tmp_path / "MNIST" / "raw")
    np.testing.assert_array_equal(x, images)


def test_mnist_never_takes_fashion_files_from_a_shared_root(tmp_path, monkeypatch):
    images, labels = blank_test_split()
    write_split(tmp_path, images, labels)  # straight in the root: which dataset is it?
    write_split(tmp_path / "fashion-mnist", images, labels)
    monkeypatch.setenv("FASTCNN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MNIST"):
        mnist("test")


def test_missing_files_name_every_place_and_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    monkeypatch.setenv("FASTCNN_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist("train")
    message = str(info.value)
    for place in ("data/fashion-mnist", "data/FashionMNIST/raw", "debian"):
        assert str(tmp_path / place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "FASTCNN_DATA" in message
    assert "train-images-idx3-ubyte" in message

    with pytest.raises(FileNotFoundError) as info:
        mnist("test", path=tmp_path / "mine")
    message = str(info.value)
    assert str(tmp_path / "mine") in message and str(tmp_path / "data") not in message
    assert "FASTCNN_DATA" in message and "t10k-labels-idx1-ubyte" in message


def test_mnist_without_any_place_to_look():
    with pytest.raises(FileNotFoundError, match="FASTCNN_DATA is not set"):
        mnist()


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("validation")
    with pytest.raises(ValueError, match="split"):
        fashion_mnist_subset("val")


# --- corrupt files -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, rng, suffix):
    array = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / f"a{suffix}", array), 3), array)
    assert read_idx(write_idx(tmp_path / f"e{suffix}", np.zeros(0, np.uint8)), 1).shape == (0,)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "magic"),
        (b"\x01\x00\x08\x03" + bytes(12), "magic"),
        (b"\x00\x00\x0d\x03" + bytes(12), "type code 0x0d"),
        (b"\x00\x00\x08\x01" + bytes(4), "3 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00", "header"),
        (b"\x00\x00\x08\x03" + np.array([2, 2, 2], ">u4").tobytes() + bytes(7), "truncated"),
        (b"\x00\x00\x08\x03" + np.array([2, 2, 2], ">u4").tobytes() + bytes(9), "more data"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, suffix, data, match):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path, 3)
    assert str(path) in str(info.value)


def test_read_idx_rejects_broken_gzip(tmp_path, rng):
    good = gzip.compress(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for name, data in [("cut.gz", good[: len(good) // 2]), ("plain.gz", b"not gzip at all")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_idx(tmp_path / name, 1)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.gz", 1)


def test_wrong_counts_and_labels_are_refused(tmp_path):
    images, labels = blank_test_split()
    cases = {
        "images of shape": (images[:9999], labels),
        "10000 Fashion-MNIST test labels": (images, labels[:9999]),
        "class ids": (images, np.where(np.arange(10000) == 5, 10, labels).astype(np.uint8)),
    }
    for i, (match, (x, y)) in enumerate(cases.items()):
        write_split(tmp_path / str(i), x, y)
        with pytest.raises(ValueError, match=match):
            fashion_mnist("test", path=tmp_path / str(i))
    write_split(tmp_path / "small", images[:, :27, :27], labels)
    with pytest.raises(ValueError, match=r"\(10000, 27, 27\)"):
        fashion_mnist("test", path=tmp_path / "small")


# --- the shipped subset --------------------------------------------------------------------------


def test_subset_is_stratified_and_plain():
    for split, per_class in (("train", 200), ("test", 50)):
        x, y = fashion_mnist_subset(split)
        assert x.shape == (10 * per_class, 28, 28) and x.dtype == np.uint8
        assert y.dtype == np.int64 and np.bincount(y).tolist() == [per_class] * 10
        indices = fashion_mnist_subset_indices(split)
        assert indices.shape == y.shape and np.all(np.diff(indices) > 0)
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"

    folder = resources.files("fastcnn") / "_data"
    with resources.as_file(folder / "fashion_mnist_subset.npz") as file:
        assert file.stat().st_size < 1_200_000
        with np.load(file, allow_pickle=False) as npz:
            assert all(npz[name].dtype.kind == "u" for name in npz.files)
    license_text = (folder / "LICENSE-fashion-mnist.txt").read_text()
    assert "Zalando SE" in license_text and "MIT" in license_text


@needs_debian
def test_subset_images_are_the_real_ones():
    for split in ("train", "test"):
        x, y = fashion_mnist(split)
        sx, sy = fashion_mnist_subset(split)
        indices = fashion_mnist_subset_indices(split)
        np.testing.assert_array_equal(sx, x[indices])
        np.testing.assert_array_equal(sy, y[indices])
