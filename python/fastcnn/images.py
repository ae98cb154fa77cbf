"""Minimal PNG reading and writing (8-bit, non-interlaced) with zlib alone, so `fastcnn predict`
takes PNG files without an imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from fastcnn._atomic import write_atomically

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_MAX_PIXELS = 1 << 26


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth)."""
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    pos = 0
    for y in range(height):
        kind = raw[pos]
        row = np.frombuffer(raw, np.uint8, stride, pos + 1).astype(np.int32)
        pos += stride + 1
        if kind == 0:
            cur = row
        elif kind == 2:
            cur = (row + prev) & 0xFF
        elif kind in (1, 3, 4):
            cur = row.copy()
            for i in range(stride):  # each byte depends on the one decoded bpp bytes before it
                left = cur[i - bpp] if i >= bpp else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + prev[i]) >> 1
                else:
                    up_left = prev[i - bpp] if i >= bpp else 0
                    p = left + prev[i] - up_left
                    pa, pb, pc = abs(p - left), abs(p - prev[i]), abs(p - up_left)
                    pred = left if pa <= pb and pa <= pc else (prev[i] if pb <= pc else up_left)
                cur[i] = (cur[i] + pred) & 0xFF
        else:
            raise ValueError(f"PNG: unknown row filter {kind}")
        out[y] = cur
        prev = cur
    return out


def read_png(path: str) -> np.ndarray:
    """A PNG as uint8 (H, W) for grayscale or (H, W, C) for colour; 8-bit images only."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos = len(_SIGNATURE)
    header = None
    chunks = []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path}: truncated PNG")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: PNG without a header")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise ValueError(f"{path}: only 8-bit, non-interlaced gray/RGB(A) PNGs are supported")
    if width * height > _MAX_PIXELS:
        raise ValueError(f"{path}: {width}x{height} is too large for a classifier input")
    channels = _CHANNELS[colour]
    raw = zlib.decompress(b"".join(chunks))
    if len(raw) != height * (width * channels + 1):
        raise ValueError(f"{path}: corrupt PNG data")
    pixels = _unfilter(raw, height, width * channels, channels).reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


def write_png(path: str, image: np.ndarray) -> None:
    """Write a uint8 (H, W) grayscale image."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 2:
        raise ValueError(f"image: expected a 2-D (H, W) array, got shape {image.shape}")
    height, width = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    png = (
        _SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    write_atomically(path, lambda f: f.write(png))


def to_gray28(image: np.ndarray) -> np.ndarray:
    """An image as float32 (28, 28) in [0, 1]: colour averaged to gray (alpha dropped), resized by
    area averaging (or nearest neighbour when enlarging)."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[:, :, :3].mean(axis=2) if img.shape[2] >= 3 else img[:, :, 0]
    img = img.astype(np.float32)
    if img.max(initial=0) > 1.0:
        img = img / 255.0
    h, w = img.shape
    rows = np.minimum((np.arange(28) * h) // 28, h - 1)
    cols = np.minimum((np.arange(28) * w) // 28, w - 1)
    if h >= 28 and w >= 28:
        # area average: sum each block of the grid that maps onto one output pixel
        rs = np.append((np.arange(28) * h) // 28, h)
        cs = np.append((np.arange(28) * w) // 28, w)
        block = np.add.reduceat(np.add.reduceat(img, rs[:-1], axis=0), cs[:-1], axis=1)
        return (block / np.outer(np.diff(rs), np.diff(cs))).astype(np.float32)
    return img[np.ix_(rows, cols)]
