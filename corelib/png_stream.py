"""8-bit RGB PNGs read and written a band of rows at a time.

Pillow decodes and saves only whole images, so a 50-megapixel photo sits in memory as a
Pillow image (4 bytes a pixel: 200 MB) while it is coded. :class:`PngRowWriter` takes the
rows as the decoder's tile rows finish them, keeping only the previous row (the PNG filters
refer to it) and zlib's window; every row uses the Paeth filter (type 4), which suits
photographs and is computed for many rows at once with numpy. :class:`PngRowReader` gives
the rows a tile needs, decoding forward and forgetting rows above the tiles still to come;
it reads the common photographic case, non-interlaced 8-bit RGB without transparency, and
declines everything else (Pillow then reads the file whole).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from codec_lab.corelib.errors import ImageError

__all__ = ["PngRowReader", "PngRowWriter"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HINT = "the file is damaged: pass a readable PNG or JPEG image"
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


def _unfilter(raw: np.ndarray, out: np.ndarray, prev: np.ndarray) -> int:
    """:func:`_unfilter_rows`, compiled on first use (numba is imported only by a reader)."""
    global _compiled
    if _compiled is None:
        import numba

        _compiled = numba.njit(cache=True, nogil=True)(_unfilter_rows)
    return int(_compiled(raw, out, prev))


_compiled = None


def _unfilter_rows(raw, out, prev):  # type: ignore[no-untyped-def]  # compiled by numba
    """Undo the PNG filters of ``out.shape[0]`` scanlines ``raw`` (each a filter-type byte, then
    the row), 3 bytes a pixel, ``prev`` the row above the first; returns -1 or the first row
    whose filter type is not 0–4."""
    n, stride = out.shape
    for i in range(n):
        kind = raw[i * (stride + 1)]
        src = i * (stride + 1) + 1
        for j in range(stride):
            x = np.int32(raw[src + j])
            a = np.int32(out[i, j - 3]) if j >= 3 else np.int32(0)
            b = np.int32(out[i - 1, j]) if i > 0 else np.int32(prev[j])
            if kind == 0:
                v = x
            elif kind == 1:
                v = x + a
            elif kind == 2:
                v = x + b
            elif kind == 3:
                v = x + (a + b) // 2
            elif kind == 4:
                if j >= 3:
                    c = np.int32(out[i - 1, j - 3]) if i > 0 else np.int32(prev[j - 3])
                else:
                    c = np.int32(0)
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                v = x + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))
            else:
                return i
            out[i, j] = v & 255
    return -1


class PngRowReader:
    """Rows of a non-interlaced 8-bit RGB PNG, decoded forward as they are asked for.

    Use :meth:`open`, which returns None for any other PNG. Memory: the rows between the lowest
    row still wanted and the highest asked for, zlib's window and one IDAT chunk.

    Attributes:
        size: (height, width).
    """

    def __init__(self, path: Path, width: int, height: int, data_at: int) -> None:
        self.path, self.size = path, (height, width)
        self.stride = width * 3
        self._data_at = data_at
        self._restart()

    @classmethod
    def open(cls, path: str | Path) -> PngRowReader | None:
        """A reader for ``path`` if it is a PNG this class reads (see the module), else None."""
        p = Path(path)
        try:
            with p.open("rb") as fh:
                if fh.read(8) != _SIGNATURE:
                    return None
                length, kind = struct.unpack(">I4s", fh.read(8))
                if kind != b"IHDR" or length != 13:
                    return None
                w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", fh.read(13))
                if (depth, color, interlace) != (8, 2, 0) or not (w and h):
                    return None
                fh.read(4)  # IHDR's CRC
                while True:  # to the first IDAT: a tRNS before it means transparency
                    at = fh.tell()
                    head = fh.read(8)
                    if len(head) < 8:
                        return None
                    length, kind = struct.unpack(">I4s", head)
                    if kind == b"IDAT":
                        return cls(p, w, h, at)
                    if kind == b"tRNS":
                        return None
                    fh.seek(length + 4, 1)
        except (OSError, struct.error):
            return None

    def _restart(self) -> None:
        self._fh = self.path.open("rb")
        self._fh.seek(self._data_at)
        self._zip = zlib.decompressobj()
        self._raw = bytearray()  # decompressed scanlines not yet unfiltered
        self._first = 0  # image row of self._rows[0]
        self._rows = np.zeros((0, self.stride), np.uint8)
        self._prev = np.zeros(self.stride, np.uint8)  # the row above self._rows[0]
        self._eof = False

    def _more(self) -> None:
        """Decompress the next IDAT chunk's bytes into ``_raw``."""
        while not self._eof:
            head = self._fh.read(8)
            if len(head) < 8:
                raise ImageError(f"cannot read image {self.path}: the PNG ends before its last row", _HINT)
            length, kind = struct.unpack(">I4s", head)
            if kind != b"IDAT":
                self._eof = True
                self._raw += self._zip.flush()
                return
            chunk = self._fh.read(length)
            self._fh.read(4)  # CRC: zlib's own checksum guards the data
            if len(chunk) < length:
                raise ImageError(f"cannot read image {self.path}: the PNG is truncated", _HINT)
            try:
                self._raw += self._zip.decompress(chunk)
            except zlib.error as e:
                raise ImageError(f"cannot read image {self.path}: damaged PNG data ({e})", _HINT) from e
            return

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Rows y0:y1 as a (y1 - y0, width, 3) uint8 array (a view: copy what is kept). Rows
        above ``y0`` are forgotten; asking for them again decodes the file again."""
        height = self.size[0]
        if not 0 <= y0 < y1 <= height:
            raise ValueError(f"rows {y0}:{y1} of a {height}-row image")
        if y0 < self._first:
            self._fh.close()
            self._restart()
        if y0 > self._first:  # forget what no later tile needs
            drop = min(y0 - self._first, len(self._rows))
            if drop:
                self._prev = self._rows[drop - 1].copy()
                self._rows = self._rows[drop:]
                self._first += drop
        have = self._first + len(self._rows)
        if y1 > have:
            need = y1 - have
            line = self.stride + 1
            while len(self._raw) < need * line and not self._eof:
                self._more()
            if len(self._raw) < need * line:
                raise ImageError(f"cannot read image {self.path}: the PNG ends before its last row", _HINT)
            raw = np.frombuffer(bytes(self._raw[: need * line]), np.uint8)
            del self._raw[: need * line]
            new = np.empty((need, self.stride), np.uint8)
            above = self._rows[-1] if len(self._rows) else self._prev
            bad = _unfilter(raw, new, above)
            if bad >= 0:
                raise ImageError(f"cannot read image {self.path}: damaged PNG (row {have + bad} has an "
                                 "unknown filter)", _HINT)  # fmt: skip
            self._rows = np.concatenate([self._rows, new]) if len(self._rows) else new
        start = y0 - self._first
        return self._rows[start : start + (y1 - y0)].reshape(y1 - y0, self.size[1], 3)

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def height(self) -> int:
        return self.size[0]

    def close(self) -> None:
        """Close the file (the reader cannot be used after)."""
        self._fh.close()
