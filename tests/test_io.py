"""Checkpoints: round trip without pickle, atomic replacement, and clear errors for damaged,
mismatched or crafted files."""

from __future__ import annotations

import io as stdlib_io
import json
import os
import zipfile

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import io, models, nn


def _trained_copy(rng):
    net = models.fmnist_bn()
    net(rng.standard_normal((4, 1, 28, 28)).astype(np.float32))  # moves the running stats
    return net


def test_round_trip_restores_architecture_and_weights(tmp_path, rng):
    net = _trained_copy(rng)
    path = tmp_path / "model.npz"
    fc.save(net, path, epoch=3, extra={"note": "hello", "mean": 0.25})
    loaded = fc.load(path)
    assert repr(loaded) == repr(net)
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    net.eval()
    loaded.eval()
    np.testing.assert_array_equal(net(x), loaded(x))
    ckpt = fc.load_checkpoint(path)
    assert ckpt.epoch == 3 and ckpt.extra == {"note": "hello", "mean": 0.25}
    with np.load(path, allow_pickle=False) as f:  # plain npz, readable without pickle
        assert "model/0.weight" in f.files


def test_residual_models_round_trip(tmp_path, rng):
    net = models.resnet_mini()
    fc.save(net, tmp_path / "r.npz")
    loaded = fc.load(tmp_path / "r.npz")
    x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
    net.eval()
    loaded.eval()
    np.testing.assert_array_equal(net(x), loaded(x))


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, rng, monkeypatch):
    net = _trained_copy(rng)
    path = tmp_path / "model.npz"
    fc.save(net, path, epoch=1)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", explode)
    with pytest.raises(OSError, match="disk full"):
        fc.save(net, path, epoch=2)
    assert path.read_bytes() == before
    assert fc.load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, 0.9])
def test_truncated_file_is_a_clear_error(tmp_path, rng, cut):
    path = tmp_path / "model.npz"
    fc.save(models.lenet5(), path)
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    path.write_bytes(data[:n])
    with pytest.raises(io.CheckpointError):
        fc.load(path)


def test_flipped_bytes_are_detected(tmp_path):
    path = tmp_path / "model.npz"
    fc.save(models.lenet5(), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(io.CheckpointError):
        fc.load(path)


def test_any_flipped_header_bit_is_a_checkpoint_error_or_harmless(tmp_path):
    """Bits of the zip headers (local and central: versions, flags such as encryption, compression
    method, sizes, offsets) and of the .npy headers, flipped one at a time: loading raises
    CheckpointError or returns exactly what was saved (a flip in a field nothing reads, such as a
    timestamp). Such flips used to escape as NotImplementedError, RuntimeError, OSError or
    tokenize.TokenError. Every bit of the version, flag and method fields; one bit, turn about, of
    every other header byte."""
    net = nn.Sequential(nn.Linear(2, 2))
    opt = fc.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net[0].weight.grad += 1.0
    opt.step()
    path = tmp_path / "model.npz"
    fc.save(net, path, optimizer=opt, epoch=1)
    data = path.read_bytes()
    want = fc.load_checkpoint(path)
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    central = data.index(b"PK\x01\x02")
    every_bit, one_bit = set(), set(range(central, len(data)))
    for info in infos:
        start = info.header_offset
        every_bit.update(range(start + 4, start + 10))
        one_bit.update(range(start, start + 30 + len(info.filename) + 64))  # + the .npy header
    for entry in range(len(infos)):
        start = data.index(b"PK\x01\x02", central if entry == 0 else start + 4)
        every_bit.update(range(start + 4, start + 12))
    damaged = tmp_path / "damaged.npz"
    flips = [(o, b) for o in every_bit for b in range(8)]
    flips += [(o, o % 8) for o in one_bit - every_bit]
    for offset, bit in flips:
        flipped = bytearray(data)
        flipped[offset] ^= 1 << bit
        damaged.write_bytes(bytes(flipped))
        try:
            got = fc.load_checkpoint(damaged)
        except io.CheckpointError:
            continue
        for key, value in want.model.state_dict().items():
            np.testing.assert_array_equal(got.model.state_dict()[key], value)
        state = got.optimizer["state"][0]["momentum_buffer"]
        np.testing.assert_array_equal(state, want.optimizer["state"][0]["momentum_buffer"])
        assert got.epoch == 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("optimizer", {"__dict__": 5}),
        ("optimizer", {"__dict__": [[1]]}),
        ("optimizer", {"__array__": ["a"]}),
        ("extra", {"__dict__": [[{"__dict__": []}, 1]]}),
        ("extra", [1, 2]),
        ("epoch", "three"),
        ("architecture", 5),
    ],
)
def test_crafted_metadata_is_a_checkpoint_error(tmp_path, field, value):
    """Well-formed JSON that save never writes (a state object of the wrong shape, an epoch that
    is not an int, an architecture that is not one) raises CheckpointError, not TypeError."""
    path = tmp_path / "model.npz"
    fc.save(nn.Sequential(nn.Linear(2, 2)), path, epoch=1)
    with np.load(path, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta[field] = value
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    io.write_npz_atomically(path, arrays)
    with pytest.raises(io.CheckpointError):
        fc.load_checkpoint(path)


def _write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)


def _npy(array: np.ndarray) -> bytes:
    buf = stdlib_io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _meta(arch) -> bytes:
    meta = {
        "format": "fastcnn-checkpoint",
        "format_version": 1,
        "architecture": arch,
        "epoch": None,
        "optimizer": None,
        "scheduler": None,
        "rng_state": None,
        "extra": {},
    }
    return _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


LINEAR_ARCH = {
    "type": "Sequential",
    "children": [
        ["0", {"type": "Linear", "config": {"in_features": 3, "out_features": 2, "bias": True}}]
    ],
}


def test_mismatched_shapes_are_rejected_before_reading(tmp_path):
    path = tmp_path / "bad.npz"
    _write_zip(
        path,
        {
            "__meta__.npy": _meta(LINEAR_ARCH),
            "model/0.weight.npy": _npy(np.ones((5, 3), np.float32)),
            "model/0.bias.npy": _npy(np.ones(2, np.float32)),
        },
    )
    with pytest.raises(io.CheckpointError, match="0.weight"):
        fc.load(path)


def test_header_claiming_more_data_than_stored_is_rejected(tmp_path):
    body = _npy(np.ones((2, 3), np.float32))[:-8]  # right header, data cut short
    path = tmp_path / "short.npz"
    _write_zip(
        path,
        {
            "__meta__.npy": _meta(LINEAR_ARCH),
            "model/0.weight.npy": body,
            "model/0.bias.npy": _npy(np.ones(2, np.float32)),
        },
    )
    with pytest.raises(io.CheckpointError, match="0.weight"):
        fc.load(path)


def test_header_claiming_a_huge_array_is_rejected(tmp_path):
    buf = stdlib_io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    path = tmp_path / "huge.npz"
    _write_zip(
        path,
        {
            "__meta__.npy": _meta(LINEAR_ARCH),
            "model/0.weight.npy": _npy(np.ones((2, 3), np.float32)),
            "model/0.bias.npy": _npy(np.ones(2, np.float32)),
            "optimizer/x.npy": buf.getvalue() + b"\0" * 64,
        },
    )
    with pytest.raises(io.CheckpointError, match="optimizer/x"):
        fc.load_checkpoint(path)


def test_pickled_object_arrays_are_refused(tmp_path):
    buf = stdlib_io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    path = tmp_path / "pickle.npz"
    _write_zip(
        path,
        {
            "__meta__.npy": _meta(LINEAR_ARCH),
            "model/0.weight.npy": buf.getvalue(),
            "model/0.bias.npy": _npy(np.ones(2, np.float32)),
        },
    )
    with pytest.raises(io.CheckpointError, match="dtype"):
        fc.load(path)


@pytest.mark.parametrize(
    "arch",
    [
        {"type": "os.system", "config": {}},
        {"type": "Linear", "config": {"in_features": "x"}},
        {"type": "Sequential", "children": "nope"},
        [1, 2, 3],
    ],
)
def test_unknown_or_malformed_architecture_is_refused(tmp_path, arch):
    path = tmp_path / "arch.npz"
    _write_zip(path, {"__meta__.npy": _meta(arch)})
    with pytest.raises(ValueError, match="architecture"):
        fc.load(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.ones(3))
    with pytest.raises(io.CheckpointError, match="__meta__"):
        fc.load(path)
    with pytest.raises(FileNotFoundError):
        fc.load(tmp_path / "missing.npz")


def test_custom_modules_cannot_be_described(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="Custom"):
        fc.save(nn.Sequential(Custom()), tmp_path / "c.npz")
