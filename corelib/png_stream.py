"""An 8-bit RGB PNG written a band of rows at a time.

Pillow saves only whole images, so a decoded 50-megapixel photo would sit in memory as a
Pillow image (4 bytes a pixel: 200 MB) before it is written. :class:`PngRowWriter` takes the
rows as the tile rows of the decoder finish them and keeps only the previous row (the PNG
filters refer to it) and zlib's window. Every row uses the Paeth filter (PNG filter type 4),
which suits photographs and, unlike Pillow's adaptive choice, is computed for a whole band
at once with numpy.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

__all__ = ["PngRowWriter"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 20  # IDAT payload per chunk (PNG allows up to 2**31 - 1; readers prefer less)
_FILTER_BYTES = 1 << 20  # rows filtered at once: ~1 MB of samples (~10 MB of temporaries)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def paeth_filter(rows: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Paeth-filtered scanlines of ``rows`` (n, W·3) uint8, ``prev`` the row above the first
    (zeros above the image): (n, 1 + W·3) uint8, each with its filter-type byte 4."""
    x = rows.astype(np.int16)
    b = np.concatenate([prev[None].astype(np.int16), x[:-1]], axis=0)  # above
    a = np.zeros_like(x)
    a[:, 3:] = x[:, :-3]  # left (same channel of the previous pixel)
    c = np.zeros_like(x)
    c[:, 3:] = b[:, :-3]  # above left
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    out = np.empty((x.shape[0], x.shape[1] + 1), np.uint8)
    out[:, 0] = 4
    out[:, 1:] = (x - pred).astype(np.uint8)  # modulo 256, as PNG defines it
    return out


class PngRowWriter:
    """Writes an (height, width) RGB PNG to ``fh`` from bands of rows, top to bottom.

    Args:
        fh: a binary file open for writing.
        width, height: the image size (the IHDR is written at once).
        level: zlib compression level (Pillow's default is 6).
    """

    def __init__(self, fh: BinaryIO, width: int, height: int, level: int = 6) -> None:
        if not (0 < width < 2**31 and 0 < height < 2**31):
            raise ValueError(f"a PNG is 1 to 2**31 - 1 pixels a side, got {width}x{height}")
        self.fh, self.width, self.height, self.rows = fh, width, height, 0
        self.prev = np.zeros(width * 3, np.uint8)
        self.zip = zlib.compressobj(level)
        self.pending = bytearray()
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
        fh.write(_SIGNATURE + _chunk(b"IHDR", ihdr))

    def write(self, band: np.ndarray) -> None:
        """Append rows: (n, width, 3) uint8."""
        if band.dtype != np.uint8 or band.ndim != 3 or band.shape[1:] != (self.width, 3):
            raise ValueError(f"rows must be (n, {self.width}, 3) uint8, got {band.shape} {band.dtype}")
        if self.rows + band.shape[0] > self.height:
            raise ValueError(f"more than the {self.height} rows the PNG declares")
        if not band.shape[0]:
            return
        flat = np.ascontiguousarray(band).reshape(band.shape[0], -1)
        step = max(1, _FILTER_BYTES // flat.shape[1])  # the filter's int16 temporaries stay small
        for i in range(0, flat.shape[0], step):
            rows = flat[i : i + step]
            self.pending += self.zip.compress(paeth_filter(rows, self.prev).tobytes())
            self.prev = rows[-1].copy()
            self._flush(_CHUNK)
        self.rows += band.shape[0]

    def close(self) -> None:
        """Finish the image (every row must have been written)."""
        if self.rows != self.height:
            raise ValueError(f"the PNG declares {self.height} rows, {self.rows} were written")
        self.pending += self.zip.flush()
        self._flush(1)
        self.fh.write(_chunk(b"IEND", b""))

    def _flush(self, least: int) -> None:
        while len(self.pending) >= least and self.pending:
            part = bytes(self.pending[:_CHUNK])
            del self.pending[:_CHUNK]
            self.fh.write(_chunk(b"IDAT", part))
