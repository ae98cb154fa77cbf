"""DataLoader batching, shuffling, resumption; batch transforms; to_nchw_float."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastcnn.data import (
    Compose,
    DataLoader,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    to_nchw_float,
)


def dataset(rng: np.random.Generator, n: int = 10, c: int = 1, h: int = 6, w: int = 5):
    return rng.standard_normal((n, c, h, w)).astype(np.float32), np.arange(n)


def epoch_batches(loader: DataLoader) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.copy(a) for a in batch) for batch in loader]


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b):
        for x, y in zip(batch_a, batch_b):
            np.testing.assert_array_equal(x, y)


# --- to_nchw_float -------------------------------------------------------------------------------


def test_to_nchw_float_scales_to_unit_range(rng):
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = (0, 255)
    x = to_nchw_float(images)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    assert x[0, 0, 0, 0] == 0.0 and x[0, 0, 0, 1] == 1.0
    assert to_nchw_float(images[:, None]).shape == (5, 1, 28, 28)
    assert to_nchw_float(images[:0]).shape == (0, 1, 28, 28)


def test_to_nchw_float_refuses_other_inputs():
    with pytest.raises(TypeError, match="images"):
        to_nchw_float(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="images"):
        to_nchw_float(np.zeros((4, 4), np.uint8))


# --- DataLoader ----------------------------------------------------------------------------------


def test_batches_in_order_without_shuffle(rng):
    x, y = dataset(rng)
    loader = DataLoader((x, y), batch_size=3)
    batches = epoch_batches(loader)
    assert len(loader) == 4 and [len(b[1]) for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert_same_batches(batches, epoch_batches(loader))  # the next epoch is the same


def test_drop_last(rng):
    x, y = dataset(rng)
    loader = DataLoader((x, y), batch_size=3, drop_last=True, shuffle=True, seed=1)
    batches = epoch_batches(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [3, 3, 3]
    empty = DataLoader((x, y), batch_size=11, drop_last=True)
    assert len(empty) == 0 and epoch_batches(empty) == [] and empty.epoch == 1
    assert len(DataLoader((x, y), batch_size=11)) == 1


def test_batches_are_copies(rng):
    x, y = dataset(rng)
    original = x.copy()
    for xb, _ in DataLoader((x, y), batch_size=4):
        xb += 1
    np.testing.assert_array_equal(x, original)


def test_shuffle_is_a_new_permutation_each_epoch_and_reproducible(rng):
    x, y = dataset(rng, n=50)
    loader = DataLoader((x, y), batch_size=8, shuffle=True, seed=7)
    orders = [np.concatenate([yb for _, yb in loader]) for _ in range(3)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), y)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    for xb_yb in DataLoader((x, y), batch_size=50, shuffle=True, seed=7):
        np.testing.assert_array_equal(xb_yb[0], x[xb_yb[1]])  # images stay with their labels
    again = DataLoader((x, y), batch_size=8, shuffle=True, seed=7)
    for order in orders:
        np.testing.assert_array_equal(np.concatenate([yb for _, yb in again]), order)
    other = DataLoader((x, y), batch_size=8, shuffle=True, seed=8)
    assert not np.array_equal(np.concatenate([yb for _, yb in other]), orders[0])


def test_seed_none_draws_a_seed_that_reproduces_the_run(rng):
    x, y = dataset(rng, n=30)
    flip = RandomHorizontalFlip()
    loader = DataLoader((x, y), batch_size=4, shuffle=True, transform=flip)
    seed = loader.state_dict()["seed"]
    assert isinstance(seed, int) and seed >= 0
    replay = DataLoader((x, y), batch_size=4, shuffle=True, seed=seed, transform=flip)
    assert_same_batches(epoch_batches(loader), epoch_batches(replay))


def test_augmentation_is_reproducible_and_differs_per_epoch(rng):
    x, y = dataset(rng, n=20, h=8, w=8)

    def make():
        transform = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])
        return DataLoader((x, y), batch_size=6, shuffle=False, seed=3, transform=transform)

    a, b = make(), make()
    first, second = epoch_batches(a), epoch_batches(a)
    assert_same_batches(first, epoch_batches(b))
    assert_same_batches(second, epoch_batches(b))
    assert not np.array_equal(first[0][0], second[0][0])


@pytest.mark.parametrize("with_transform", [False, True])
def test_resume_from_state_dict_continues_the_same_batches(rng, with_transform):
    x, y = dataset(rng, n=23, h=6, w=6)
    transform = Compose([RandomCrop(6, 1), RandomHorizontalFlip()]) if with_transform else None

    def make(seed):
        return DataLoader((x, y), batch_size=4, shuffle=True, seed=seed, transform=transform)

    a = make(11)
    epoch_batches(a)
    iterator = iter(a)
    head = [next(iterator), next(iterator)]
    saved = json.loads(json.dumps(a.state_dict()))
    assert saved["epoch"] == 1 and saved["batch"] == 2
    rest_a = [tuple(np.copy(v) for v in batch) for batch in iterator] + epoch_batches(a)

    b = make(None)
    b.load_state_dict(saved)
    rest_b = epoch_batches(b) + epoch_batches(b)
    assert_same_batches(rest_a, rest_b)

    replay = make(11)
    epoch_batches(replay)
    assert_same_batches(head + rest_a, epoch_batches(replay) + epoch_batches(replay))


def test_state_after_the_last_batch_points_at_the_next_epoch(rng):
    x, y = dataset(rng)
    loader = DataLoader((x, y), batch_size=5)
    states = [loader.state_dict() for _ in loader]
    assert [(s["epoch"], s["batch"]) for s in states] == [(0, 1), (1, 0)]


def test_break_then_iterate_resumes_mid_epoch(rng):
    x, y = dataset(rng, n=12)
    loader = DataLoader((x, y), batch_size=3, shuffle=True, seed=2)
    full = np.concatenate([yb for _, yb in DataLoader((x, y), batch_size=3, shuffle=True, seed=2)])
    seen = []
    for _, yb in loader:
        seen.append(yb)
        if len(seen) == 2:
            break
    seen += [yb for _, yb in loader]
    np.testing.assert_array_equal(np.concatenate(seen), full)
    assert loader.epoch == 1


def test_load_state_dict_checks(rng):
    x, y = dataset(rng)
    loader = DataLoader((x, y), batch_size=3, seed=1)
    saved = loader.state_dict()
    with pytest.raises(ValueError, match="10 samples"):
        DataLoader((x[:9], y[:9]), batch_size=3).load_state_dict(saved)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader((x, y), batch_size=2).load_state_dict(dict(saved, batch=1))
    with pytest.raises(ValueError, match="batch 4"):
        loader.load_state_dict(dict(saved, batch=4))
    with pytest.raises(ValueError, match="seed"):
        loader.load_state_dict(dict(saved, seed=-1))
    with pytest.raises(ValueError, match="entries"):
        loader.load_state_dict({"seed": 1})
    assert loader.state_dict() == saved
    DataLoader((x, y), batch_size=2).load_state_dict(saved)  # at an epoch boundary: fine


def test_dataset_object_with_index_arrays(rng):
    x, y = dataset(rng, n=9)

    class Pairs:
        def __len__(self):
            return len(y)

        def __getitem__(self, index):
            assert isinstance(index, np.ndarray) and index.dtype.kind == "i"
            return x[index] * 2, y[index]

    batches = epoch_batches(DataLoader(Pairs(), batch_size=4, shuffle=True, seed=0))
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(np.sort(labels), y)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[labels] * 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"seed": -3}, ValueError, "seed"),
        ({"transform": "flip"}, TypeError, "transform"),
    ],
)
def test_bad_loader_arguments(rng, kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(dataset(rng), **kwargs)


def test_bad_datasets(rng):
    x, y = dataset(rng)
    with pytest.raises(ValueError, match="dataset"):
        DataLoader((x, y[:-1]))
    with pytest.raises(ValueError, match="dataset"):
        DataLoader(())
    with pytest.raises(TypeError, match="dataset"):
        DataLoader(42)


# --- transforms ----------------------------------------------------------------------------------


def find_offset(crop: np.ndarray, padded: np.ndarray) -> tuple[int, int] | None:
    th, tw = crop.shape[-2:]
    for i in range(padded.shape[-2] - th + 1):
        for j in range(padded.shape[-1] - tw + 1):
            if np.array_equal(padded[..., i : i + th, j : j + tw], crop):
                return i, j
    return None


def test_random_crop_gives_shifted_copies_of_the_padded_image(rng):
    x = rng.random((64, 3, 7, 9)).astype(np.float32) + 1  # nonzero, so padding is recognizable
    original = x.copy()
    crop = RandomCrop((7, 9), padding=2)
    y = crop(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(x, original)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = [find_offset(y[n], padded[n]) for n in range(len(x))]
    assert None not in offsets
    assert len(set(offsets)) > 15  # offsets drawn per image, over the whole 5x5 range
    assert {i for i, _ in offsets} == set(range(5)) and {j for _, j in offsets} == set(range(5))
    np.testing.assert_array_equal(y, crop(x, np.random.default_rng(0)))


def test_random_crop_smaller_than_the_image(rng):
    x = rng.random((8, 2, 10, 12)).astype(np.float32)
    y = RandomCrop((4, 5), padding=(0, 1))(x, rng)
    assert y.shape == (8, 2, 4, 5)
    padded = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1)))
    assert all(find_offset(y[n], padded[n]) is not None for n in range(8))
    np.testing.assert_array_equal(RandomCrop((10, 12))(x, rng), x)
    assert RandomCrop(3)(x[:0], rng).shape == (0, 2, 3, 3)


def test_random_crop_errors(rng):
    x = rng.random((2, 1, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="size"):
        RandomCrop(9, padding=1)(x, rng)
    with pytest.raises(ValueError, match="x"):
        RandomCrop(4)(x[0], rng)
    with pytest.raises(ValueError, match="size"):
        RandomCrop(0)
    with pytest.raises(ValueError, match="padding"):
        RandomCrop(4, padding=-1)


def test_random_horizontal_flip(rng):
    x = rng.random((200, 2, 3, 4)).astype(np.float32)
    y = RandomHorizontalFlip()(x, rng)
    flipped = np.array([np.array_equal(y[n], x[n, :, :, ::-1]) for n in range(len(x))])
    kept = np.array([np.array_equal(y[n], x[n]) for n in range(len(x))])
    assert np.all(flipped ^ kept) and 60 < flipped.sum() < 140
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x, rng), x)
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x, rng), x[..., ::-1])
    with pytest.raises(ValueError, match="p"):
        RandomHorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="x"):
        RandomHorizontalFlip()(x[:, 0], rng)


def test_normalize(rng):
    x = rng.random((4, 3, 5, 5)).astype(np.float32)
    mean, std = [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]
    y = Normalize(mean, std)(x)
    expected = (x - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_allclose(Normalize(0.5, 0.25)(x), (x - 0.5) / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="x"):
        Normalize([0.1, 0.2], [1.0, 1.0])(x)
    with pytest.raises(ValueError, match="std"):
        Normalize(0.0, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mean"):
        Normalize(float("nan"), 1.0)


def test_compose_threads_one_generator(rng):
    x = rng.random((16, 1, 6, 6)).astype(np.float32)
    steps = [RandomCrop(6, 1), RandomHorizontalFlip(), Normalize(0.5, 0.5)]
    y = Compose(steps)(x, np.random.default_rng(4))
    g = np.random.default_rng(4)
    expected = x
    for t in steps:
        expected = t(expected, g)
    np.testing.assert_array_equal(y, expected)
    with pytest.raises(TypeError, match="transforms"):
        Compose([RandomHorizontalFlip(), 3])
