"""Checking PNG files without an imaging library (keeps the pytest process small)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def check_png(path: str | Path, min_bytes: int = 5000, min_side: int = 200) -> tuple[int, int]:
    """Assert that ``path`` is a whole, valid PNG with a real picture; returns (width, height).

    Every chunk's CRC is checked, the image data must inflate to exactly the size the
    header announces (so a truncated file fails), and the pixels must not be one colour.
    """
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    assert len(data) >= min_bytes, f"{path}: only {len(data)} bytes"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        chunks.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", f"{path}: chunks {chunks}"
    assert interlace == 0, f"{path}: interlaced PNGs are not checked here"
    row = (width * _CHANNELS[colour] * depth + 7) // 8 + 1  # +1: the filter-type byte
    raw = zlib.decompress(idat)
    assert len(raw) == height * row, f"{path}: image data does not match {width}x{height}"
    assert min(width, height) >= min_side, f"{path}: {width}x{height}"
    assert len(set(raw)) > 16, f"{path}: a blank picture"
    return width, height
