"""Mini-batches from NumPy datasets (`DataLoader`) and batch augmentations.

Transforms act on whole NCHW float32 batches at once (no per-image Python loop) and are called as
`transform(x, rng)` with a NumPy Generator: the DataLoader hands each batch a generator derived
from (seed, epoch, batch index), so shuffles and augmentations are reproducible and a run resumed
from `state_dict()` draws exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, Union

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fastcnn._args import as_int, nonnegative_pair, positive_pair

__all__ = [
    "Compose",
    "DataLoader",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "to_nchw_float",
]

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
RngArg = Union[np.random.Generator, int, None]

# The leading words of every SeedSequence this module builds; the fixed length keeps the streams
# apart (SeedSequence pads short entropy with zeros, so [s, e] and [s, e, 0] would collide).
_SHUFFLE_STREAM = 0
_AUGMENT_STREAM = 1


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, C, H, W) -> float32 (N, 1, H, W) or (N, C, H, W) in [0, 1]
    (each value divided by 255, as torchvision's ToTensor does)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images: expected uint8 pixels, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise ValueError(f"images: expected shape (N, H, W) or (N, C, H, W), got {images.shape}")
    out = images.astype(np.float32)
    out /= np.float32(255)
    return out


def _check_batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x: expected an NCHW batch (4 dimensions), got shape {x.shape}")
    return x


class Compose:
    """Applies transforms in order, passing each the same generator: `Compose([t1, t2])(x, rng)`."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"transforms: expected callables, got {type(t).__name__}")

    def __call__(self, x: np.ndarray, rng: RngArg = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomCrop:
    """Zero-pads each image by `padding` on every side, then crops a `size` window at an offset
    drawn independently per image: (N, C, H, W) -> (N, C, size_h, size_w), same dtype.

    `size` and `padding` are an int or a pair (h, w), as in torchvision's RandomCrop with zero fill.
    """

    def __init__(self, size: int | tuple[int, int], padding: int | tuple[int, int] = 0) -> None:
        self.size = positive_pair(size, "size")
        self.padding = nonnegative_pair(padding, "padding")

    def __call__(self, x: np.ndarray, rng: RngArg = None) -> np.ndarray:
        x = _check_batch(x)
        n, c, h, w = x.shape
        (th, tw), (ph, pw) = self.size, self.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        if th > hp or tw > wp:
            raise ValueError(
                f"size: a {th}x{tw} crop does not fit the padded {hp}x{wp} images of x"
            )
        if ph or pw:
            padded = np.zeros((n, c, hp, wp), x.dtype)
            padded[:, :, ph : ph + h, pw : pw + w] = x
        else:
            padded = x
        rng = np.random.default_rng(rng)
        top = rng.integers(0, hp - th + 1, size=n)
        left = rng.integers(0, wp - tw + 1, size=n)
        # (N, C, offsets_h, offsets_w, th, tw) view; picking one offset pair per image copies
        # only the crops
        windows = sliding_window_view(padded, (th, tw), axis=(2, 3))
        return windows[np.arange(n), :, top, left]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Flips each image left-right with probability p, drawn per image: (N, C, H, W), same dtype."""

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x: np.ndarray, rng: RngArg = None) -> np.ndarray:
        x = _check_batch(x)
        flip = np.random.default_rng(rng).random(x.shape[0]) < self.p
        return np.where(flip[:, None, None, None], x[..., ::-1], x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """(x - mean[c]) / std[c] per channel: (N, C, H, W) -> float32. mean and std are a number
    (every channel) or one value per channel."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, np.float32))
        self.std = np.atleast_1d(np.asarray(std, np.float32))
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise ValueError(f"{name}: expected finite numbers, one per channel, got {v}")
        if np.any(self.std == 0):
            raise ValueError(f"std: expected nonzero values, got {self.std}")

    def __call__(self, x: np.ndarray, rng: RngArg = None) -> np.ndarray:
        x = _check_batch(x)
        c = x.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(f"x: has {c} channels, but {name} has {v.size} values")
        out = np.subtract(x, self.mean.reshape(1, -1, 1, 1), dtype=np.float32)
        out /= self.std.reshape(1, -1, 1, 1)
        return out

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class DataLoader:
    """Iterates over a dataset in mini-batches of NumPy arrays.

    `dataset` is a tuple of arrays with the same first dimension, such as `(images, labels)`, or an
    object with `__len__` and `__getitem__` that takes an int64 index array and returns the batch.
    Each iteration yields a tuple of batches, `(xb, yb)`, freshly copied (not views of the dataset).
    `transform(xb, rng)`, if given, is applied to the first array of each batch.

    With `shuffle`, each epoch visits the samples in a new order drawn from (seed, epoch);
    `drop_last` drops the final short batch. `seed=None` draws a seed from the OS, which
    `state_dict()` records. Iteration continues where the previous one stopped: a full pass ends the
    epoch, and a pass interrupted by `break` resumes from the next batch. `state_dict()` /
    `load_state_dict()` save and restore the position, so a resumed run sees the same batches.
    """

    def __init__(
        self,
        dataset: Sequence[np.ndarray] | Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        if isinstance(dataset, (tuple, list)):
            arrays = tuple(np.asarray(a) for a in dataset)
            if not arrays or any(a.ndim == 0 for a in arrays):
                raise ValueError("dataset: expected a tuple of arrays with a batch dimension")
            if len({a.shape[0] for a in arrays}) != 1:
                lengths = [a.shape[0] for a in arrays]
                raise ValueError(f"dataset: arrays differ in length (first dimension): {lengths}")
            self.dataset: Any = arrays
            self._num_samples = arrays[0].shape[0]
        elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
            self.dataset = dataset
            self._num_samples = len(dataset)
        else:
            raise TypeError(
                "dataset: expected a tuple of arrays or an object with __len__ and __getitem__, "
                f"got {type(dataset).__name__}"
            )
        self.batch_size = as_int(batch_size, "batch_size")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {self.batch_size}")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable, got {type(transform).__name__}")
        self.transform = transform
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
        self.seed = self._check_seed(seed)
        self.epoch = 0
        self._batch = 0  # index of the next batch of the current epoch

    @staticmethod
    def _check_seed(seed: object) -> int:
        seed = as_int(seed, "seed")
        if seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {seed}")
        return seed

    def __len__(self) -> int:
        """The number of batches per epoch."""
        if self.drop_last:
            return self._num_samples // self.batch_size
        return math.ceil(self._num_samples / self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self._num_samples)
        rng = np.random.default_rng([self.seed, epoch, _SHUFFLE_STREAM, 0])
        return rng.permutation(self._num_samples)

    def _fetch(self, index: np.ndarray) -> tuple:
        if isinstance(self.dataset, tuple):
            return tuple(np.take(a, index, axis=0) for a in self.dataset)
        batch = self.dataset[index]
        return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)

    def __iter__(self):
        epoch, start, count = self.epoch, self._batch, len(self)
        order = self._order(epoch)
        for b in range(start, count):
            batch = self._fetch(order[b * self.batch_size : (b + 1) * self.batch_size])
            if self.transform is not None:
                rng = np.random.default_rng([self.seed, epoch, _AUGMENT_STREAM, b])
                batch = (self.transform(batch[0], rng), *batch[1:])
            # advance before yielding, so a checkpoint taken while this batch is used resumes at
            # the next one (and after the last batch, at the next epoch)
            if b + 1 == count:
                self.epoch, self._batch = epoch + 1, 0
            else:
                self._batch = b + 1
            yield batch
        if count == 0:
            self.epoch = epoch + 1

    def state_dict(self) -> dict[str, int]:
        """The seed and position: plain ints."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batch": self._batch,
            "batch_size": self.batch_size,
            "num_samples": self._num_samples,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restores a position saved by `state_dict()` from a loader over the same dataset."""
        names = ("seed", "epoch", "batch", "batch_size", "num_samples")
        if not isinstance(state_dict, dict) or not set(names) <= state_dict.keys():
            raise ValueError(f"state_dict: expected a dict with entries {list(names)}")
        seed = self._check_seed(state_dict["seed"])
        epoch = as_int(state_dict["epoch"], "state_dict: epoch")
        batch = as_int(state_dict["batch"], "state_dict: batch")
        num_samples = as_int(state_dict["num_samples"], "state_dict: num_samples")
        if num_samples != self._num_samples:
            raise ValueError(
                f"state_dict: saved for a dataset of {num_samples} samples, "
                f"this one has {self._num_samples}"
            )
        if batch and as_int(state_dict["batch_size"], "batch_size") != self.batch_size:
            raise ValueError(
                f"state_dict: saved mid-epoch with batch_size {state_dict['batch_size']}, "
                f"this loader's is {self.batch_size}"
            )
        if epoch < 0 or not 0 <= batch < max(len(self), 1):
            raise ValueError(
                f"state_dict: epoch {epoch}, batch {batch} is not a position of this loader "
                f"({len(self)} batches per epoch)"
            )
        self.seed, self.epoch, self._batch = seed, epoch, batch

    def __repr__(self) -> str:
        return (
            f"DataLoader({self._num_samples} samples, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
            f"epoch={self.epoch})"
        )
