"""Checkpoints: `.npz` files holding weights, optimizer and scheduler state, epoch, RNG state and
the architecture as JSON.

Written atomically (a temporary file in the same folder, flushed, fsynced, then renamed over the
target), so a crash never leaves a half-written checkpoint in place of a good one. Read without
pickle, and every array header is checked against the expected name, shape and dtype before the
array is read, so a crafted file cannot ask for a huge allocation.
"""

from __future__ import annotations

import json
import os
import tokenize
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastcnn import _random
from fastcnn._atomic import write_atomically
from fastcnn.nn import architecture
from fastcnn.nn.module import Module

FORMAT = "fastcnn-checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"
_MAX_META_BYTES = 16 << 20
_MAX_ARRAY_BYTES = 4 << 30
_ALLOWED_DTYPES = {
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.int64),
    np.dtype(np.uint8),
    np.dtype(np.int32),
    np.dtype(np.bool_),
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt, or does not match the model."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: the rebuilt model and the rest of the saved state."""

    model: Module
    epoch: int | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    rng_state: dict | None = None
    extra: dict = field(default_factory=dict)


# --- nested state <-> (JSON, arrays) ------------------------------------------------------------
def _split(value: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON for `value`, with every ndarray moved into `arrays` and replaced by a reference."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {
            "__dict__": [
                [_split(k, f"{prefix}/k{i}", arrays), _split(v, f"{prefix}/{i}", arrays)]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__} at {prefix}")


def _join(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The value `_split` made `value` from; CheckpointError for anything it does not write."""
    if isinstance(value, dict):
        if "__array__" in value:
            name = value["__array__"]
            if not isinstance(name, str) or name not in arrays:
                raise CheckpointError(f"checkpoint: array {name!r} is referenced but missing")
            return arrays[name]
        pairs = value.get("__dict__")
        if not isinstance(pairs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 for pair in pairs
        ):
            raise CheckpointError("checkpoint: malformed state object")
        joined = {}
        for k, v in pairs:
            key = _join(k, arrays)
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise CheckpointError(f"checkpoint: malformed state object key {k!r:.80}")
            joined[key] = _join(v, arrays)
        return joined
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


# --- writing -------------------------------------------------------------------------------------
def save(
    model: Module,
    path: str | os.PathLike,
    *,
    optimizer=None,
    scheduler=None,
    epoch: int | None = None,
    extra: dict | None = None,
) -> None:
    """Write `model` (architecture and weights), and optionally the optimizer's and scheduler's
    state, the epoch and JSON-able `extra` values, to `path` atomically."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in model.state_dict().items():
        arrays[f"model/{key}"] = value
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture.describe(model),
        "model_keys": list(model.state_dict().keys()),
        "epoch": epoch,
        "optimizer": None
        if optimizer is None
        else _split(optimizer.state_dict(), "optimizer", arrays),
        "scheduler": None
        if scheduler is None
        else _split(scheduler.state_dict(), "scheduler", arrays),
        "rng_state": _split(_random.get_rng_state(), "rng", arrays),
        "extra": _split(extra or {}, "extra", arrays),
    }
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    write_npz_atomically(path, arrays)


def write_npz_atomically(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez into `path`, atomically (see fastcnn._atomic)."""
    write_atomically(path, lambda f: np.savez(f, **arrays))


# --- reading -------------------------------------------------------------------------------------
def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, expect_shape=None, expect_dtype=None
) -> np.ndarray:
    """One .npy member, its header checked before any data is read."""
    name = info.filename[:-4]
    try:
        member = zf.open(info)
    except (NotImplementedError, RuntimeError, OSError) as e:
        # a corrupt zip header asks for a compression, an encryption or an offset it cannot have
        raise CheckpointError(f"checkpoint: array {name!r} cannot be read: {e}") from None
    with member as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise CheckpointError(f"checkpoint: array {name!r} has format version {version}")
        # NumPy parses the header as a Python literal: garbage in it fails to tokenize or parse
        except (ValueError, SyntaxError, tokenize.TokenError) as e:
            raise CheckpointError(f"checkpoint: array {name!r} has a corrupt header: {e}") from None
        if dtype not in _ALLOWED_DTYPES:
            raise CheckpointError(
                f"checkpoint: array {name!r} has dtype {dtype}, not a plain number type"
            )
        if expect_dtype is not None and dtype != np.dtype(expect_dtype):
            raise CheckpointError(
                f"checkpoint: array {name!r} has dtype {dtype}, expected {np.dtype(expect_dtype)}"
            )
        if expect_shape is not None and tuple(shape) != tuple(expect_shape):
            raise CheckpointError(
                f"checkpoint: array {name!r} has shape {tuple(shape)}, the model "
                f"expects {tuple(expect_shape)}"
            )
        count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
        nbytes = count * dtype.itemsize
        if count < 0 or nbytes > _MAX_ARRAY_BYTES or nbytes > info.file_size:
            raise CheckpointError(
                f"checkpoint: array {name!r} claims shape {tuple(shape)}, more "
                f"than the {info.file_size} bytes stored"
            )
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(f"checkpoint: array {name!r} is truncated")
        order = "F" if fortran else "C"
        return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save`: the model rebuilt from its architecture with the saved
    weights, plus optimizer/scheduler state, epoch, RNG state and extras."""
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, NotImplementedError) as e:  # (a zip version from a flip)
        raise CheckpointError(f"{path}: not a readable fastcnn checkpoint ({e})") from None
    with zf:
        members = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise CheckpointError(f"{path}: unexpected entry {info.filename!r}")
            members[info.filename[:-4]] = info
        if _META not in members:
            raise CheckpointError(f"{path}: no {_META} entry; not a fastcnn checkpoint")
        try:
            meta_info = members[_META]
            if meta_info.file_size > _MAX_META_BYTES:
                raise CheckpointError(f"{path}: metadata is implausibly large")
            meta = json.loads(_read_member(zf, meta_info, expect_dtype=np.uint8).tobytes())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a fastcnn checkpoint")
            if meta.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(
                    f"{path}: checkpoint format version "
                    f"{meta.get('format_version')} is not supported"
                )
            try:
                model = architecture.build(meta.get("architecture"))
            except ValueError as e:
                raise CheckpointError(f"{path}: {e}") from None
            epoch = meta.get("epoch")
            if epoch is not None and type(epoch) is not int:
                raise CheckpointError(f"{path}: epoch {epoch!r:.80} is not an int")
            expected = model.state_dict()
            state = {}
            for key, current in expected.items():
                member = members.get(f"model/{key}")
                if member is None:
                    raise CheckpointError(f"{path}: missing weights for {key!r}")
                state[key] = _read_member(zf, member, current.shape, current.dtype)
            unexpected = [m for m in members if m.startswith("model/") and m[6:] not in expected]
            if unexpected:
                raise CheckpointError(f"{path}: weights {unexpected} do not belong to the model")
            model.load_state_dict(state)
            others = {
                name: _read_member(zf, info)
                for name, info in members.items()
                if not name.startswith("model/") and name != _META
            }
            extra = _join(meta.get("extra"), others) or {}
            if not isinstance(extra, dict):
                raise CheckpointError(f"{path}: extra is a {type(extra).__name__}, not a dict")
            return Checkpoint(
                model=model,
                epoch=epoch,
                optimizer=_join(meta.get("optimizer"), others),
                scheduler=_join(meta.get("scheduler"), others),
                rng_state=_join(meta.get("rng_state"), others),
                extra=extra,
            )
        except (zipfile.BadZipFile, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt checkpoint ({e})") from None


def load(path: str | os.PathLike) -> Module:
    """The model saved at `path` (architecture and weights)."""
    return load_checkpoint(path).model
