"""The compressed-file container, format version 3: compact, binary, tiled, strictly validated.

Layout (``docs/format.md`` documents every byte; integers are little-endian, "varint" is
unsigned LEB128 in its shortest form, at most 5 bytes, below 2**32)::

    magic               2 bytes   b"CD"
    format version      u8        3
    flags               u8        bits 0-3: streams per tile n (1-15); bits 4-7: reserved, 0
    image height        varint    >= 1
    image width         varint    >= 1, height x width <= the pixel limit
    tile size           varint    coding-tile side in units of 16 pixels; 0: one tile (untiled)
    model digest        8 bytes   Codec.weights_digest() (16 hex chars) as bytes
    per tile t < T, per stream i < n (tiles in raster order):
                        [varint byte length, except for the file's last payload]
                        u32 CRC-32 of the stream's decoded symbols, salted with the image and
                        latent sizes and the tile (:func:`symbols_salt`)
    payloads            concatenated in the same order; the last one's length is what is left
    checksum            u32 CRC-32 of every byte before it

The tile count T is not stored: it follows from the image and tile sizes (:func:`tile_grid`).
A one-tile, one-stream file of a Kodak-sized image carries 25 bytes of container. No model
description is stored: the digest identifies the model, and the latent size follows from the
image size (``Codec.latent_size``). :func:`unpack` validates every field for type and range
before anything is allocated; every refusal is a one-line :class:`BitstreamError`. Format 2
(the same without the tile-size field) is still read, as an untiled file.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

from codec_lab.corelib.errors import BitstreamError, ConfigError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_STREAMS",
    "READABLE_VERSIONS",
    "TILE_UNIT",
    "Header",
    "max_pixels_limit",
    "pack",
    "symbols_salt",
    "tile_grid",
    "unpack",
]

MAGIC = b"CD"
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
"""Format 2 files (no tile-size field) read as untiled files."""
MAX_STREAMS = 15
"""Streams per tile a file can hold: the count takes the flags byte's low 4 bits."""
TILE_UNIT = 16
"""Tile sizes are stored in units of this many pixels (1 byte for tiles up to 2,032 pixels)."""
DEFAULT_MAX_PIXELS = 2**28
"""Largest image (height x width) a file may claim unless raised (CODEC_MAX_PIXELS, --max-pixels)."""

_V1_MAGIC = b"CDLB"  # format 1 began b"CDLB", then its version byte
_COUNT_BITS = 0x0F
_DIGEST_BYTES = 8
_CRC = struct.Struct("<I")
_VARINT_MAX_BYTES = 5
_U32 = 1 << 32
_AGAIN = "compress the image again"
_NOT_OURS = "pass a file written by `codec compress`"


@dataclass
class Header:
    """What a compressed file says about itself.

    Attributes:
        digest: the model's ``weights_digest()``: 16 hex characters.
        image_size: (height, width) of the coded image.
        symbol_crcs: per tile (raster order), per stream, the CRC-32 of its decoded symbols
            (salted, see :func:`symbols_salt`): ``tiles x streams`` values, flat.
        lengths: the byte length of every payload, in the same order (set by :func:`pack`
            and :func:`unpack`).
        tile: the coding-tile side in pixels (a multiple of :data:`TILE_UNIT`), or 0: the
            image is one tile.
    """

    digest: str
    image_size: tuple[int, int]
    symbol_crcs: list[int]
    lengths: list[int] = field(default_factory=list)
    tile: int = 0


def tile_grid(image_size: tuple[int, int], tile: int) -> tuple[int, int]:
    """Tile rows and columns of an image coded in ``tile``-pixel tiles (0: one tile)."""
    if tile <= 0:
        return 1, 1
    h, w = image_size
    return -(-h // tile), -(-w // tile)


def symbols_salt(image_size: tuple[int, int], latent_size: tuple[int, int],
                 tile: int = 0, position: tuple[int, int] = (0, 0)) -> bytes:  # fmt: skip
    """The salt of a stream's symbol CRC: image height, width, latent height, width, and in a
    tiled file (``tile`` > 0) the stored tile-size field (``tile // TILE_UNIT``), the tile's row
    and column (u32 LE each).

    A file whose image size was changed (and its trailing checksum recomputed) then fails the
    symbol CRC instead of decoding to a scrambled image, and so does one whose tiles were
    swapped. An untiled file's salt is format 2's.
    """
    salt = struct.pack("<4I", *image_size, *latent_size)
    if tile > 0:
        salt += struct.pack("<3I", tile // TILE_UNIT, *position)
    return salt


def max_pixels_limit(value: int | None = None) -> int:
    """The pixel limit: ``value`` if given, else ``$CODEC_MAX_PIXELS``, else 2**28."""
    if value is None:
        raw = os.environ.get("CODEC_MAX_PIXELS", "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"CODEC_MAX_PIXELS must be a positive whole number, got {raw!r}",
                              f"e.g. CODEC_MAX_PIXELS={DEFAULT_MAX_PIXELS}")  # fmt: skip
    if value < 1:
        raise ConfigError(f"the pixel limit must be at least 1, got {value}")
    return value


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Serialise a header and its payloads (per tile, per stream, flat), with the checksum.

    Raises:
        ValueError: a field cannot be written (a bug of the caller, not of a file).
    """
    h, w = (int(v) for v in header.image_size)
    if not (0 < h < _U32 and 0 < w < _U32):
        raise ValueError(f"image size {h}x{w} cannot be written")
    tile = int(header.tile)
    if tile < 0 or tile % TILE_UNIT or tile // TILE_UNIT >= _U32:
        raise ValueError(f"tile size {tile} is not 0 or a multiple of {TILE_UNIT} below 2**36")
    rows, cols = tile_grid((h, w), tile)
    tiles = rows * cols
    if len(streams) % tiles:
        raise ValueError(f"{len(streams)} payloads for {tiles} tiles")
    n = len(streams) // tiles
    if not 1 <= n <= MAX_STREAMS:
        raise ValueError(f"a file holds 1 to {MAX_STREAMS} streams per tile, got {n}")
    if len(header.symbol_crcs) != len(streams):
        raise ValueError(f"{len(header.symbol_crcs)} symbol CRCs for {len(streams)} payloads")
    try:
        digest = bytes.fromhex(header.digest)
    except (ValueError, TypeError) as e:
        raise ValueError(f"model digest {header.digest!r} is not hex") from e
    if len(digest) != _DIGEST_BYTES:
        raise ValueError(f"model digest {header.digest!r} is not {_DIGEST_BYTES} bytes")
    header.lengths = [len(s) for s in streams]
    parts = [MAGIC, bytes((FORMAT_VERSION, n)), _varint(h), _varint(w), _varint(tile // TILE_UNIT), digest]
    last = len(streams) - 1
    for i, crc in enumerate(header.symbol_crcs):
        if not 0 <= crc < _U32:
            raise ValueError(f"symbol CRC {crc} is not a 32-bit value")
        if i < last:  # the last length is implied by the file length
            parts.append(_varint(header.lengths[i]))
        parts.append(_CRC.pack(crc))
    body = b"".join(parts + streams)
    return body + _CRC.pack(zlib.crc32(body))


class _Reader:
    """Reads header fields from the checksummed body, refusing anything malformed."""

    def __init__(self, body: memoryview, where: str) -> None:
        self.body, self.pos, self.where = body, 0, where

    def fail(self, what: str, hint: str = _AGAIN) -> BitstreamError:
        return BitstreamError(f"{self.where} has a damaged header: {what}", hint)

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.body):
            raise self.fail(f"it ends inside the {what}")
        out = self.body[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        value = 0
        for i in range(_VARINT_MAX_BYTES):
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise self.fail(f"the {what} is not in its shortest form")
                if value >= _U32:
                    raise self.fail(f"the {what} is out of range ({value:,})")
                return value
        raise self.fail(f"the {what} runs over {_VARINT_MAX_BYTES} bytes")


def _entry_name(i: int, n: int, tiles: int) -> str:
    """How an error names payload ``i``: ``stream 2`` (one tile) or ``stream 2 of tile 5``."""
    return f"stream {i % n + 1}" + (f" of tile {i // n + 1}" if tiles > 1 else "")


def unpack(data: bytes, where: str = "file", max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """Validate a file's bytes and return its header and payloads (per tile, per stream, flat).

    Checked, in order: length, magic, version, trailing checksum, reserved flags, stream
    count, image size (positive, at most ``max_pixels`` pixels, see :func:`max_pixels_limit`),
    tile size, the entry table fitting in the file, and payload lengths adding up exactly to the
    file. Nothing is allocated before the fields are known to be in range.

    Raises:
        BitstreamError: one line, naming ``where``, with a hint.
    """
    size = len(data)
    if data[: len(_V1_MAGIC)] == _V1_MAGIC:
        version = data[len(_V1_MAGIC)] if size > len(_V1_MAGIC) else "?"
        raise BitstreamError(
            f"{where} has compressed-file format version {version} (the JSON-header container of "
            f"earlier codec-lab builds); this build reads only versions "
            f"{' and '.join(map(str, READABLE_VERSIONS))}",
            "compress the original image again with this build, or decode the file with the "
            "codec-lab build that wrote it",
        )
    if size < len(MAGIC) + 2 + _CRC.size:
        raise BitstreamError(f"{where} is too short to be a codec-lab file ({size} bytes)", _NOT_OURS)
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{where} is not a codec-lab file (bad magic {bytes(data[:2])!r})", _NOT_OURS)
    version, flags = data[2], data[3]
    if version not in READABLE_VERSIONS:
        raise BitstreamError(
            f"{where} has compressed-file format version {version}; this build reads versions "
            f"{' and '.join(map(str, READABLE_VERSIONS))}",
            "use the codec-lab build that wrote it",
        )
    view = memoryview(data)
    body = view[: size - _CRC.size]
    (stored,) = _CRC.unpack_from(view, size - _CRC.size)
    if zlib.crc32(body) != stored:
        raise BitstreamError(f"{where} is truncated or corrupted (checksum mismatch)", _AGAIN)
    r = _Reader(body, where)
    r.pos = 4
    if flags & ~_COUNT_BITS:
        raise r.fail(f"reserved flag bits are set (flags 0x{flags:02x})",
                     "the file is damaged or was written by a newer codec-lab")  # fmt: skip
    n = flags & _COUNT_BITS
    if n == 0:
        raise r.fail("it declares no streams")
    h = r.varint("image height")
    w = r.varint("image width")
    limit = max_pixels_limit(max_pixels)
    if h < 1 or w < 1:
        raise r.fail(f"the image size {h}x{w} is empty")
    if h * w > limit:
        raise BitstreamError(
            f"{where} claims a {h}x{w} image ({h * w:,} pixels), over the limit of {limit:,} pixels",
            "if the file is trusted, raise the limit (--max-pixels or CODEC_MAX_PIXELS)",
        )
    tile = r.varint("tile size") * TILE_UNIT if version >= 3 else 0
    rows, cols = tile_grid((h, w), tile)
    tiles = rows * cols
    digest = r.take(_DIGEST_BYTES, "model digest").hex()
    entries = tiles * n
    # Every entry takes a CRC and (all but the last) a length byte at least: a header claiming
    # more tiles than its bytes can list is refused before any list is sized from it.
    room = len(body) - r.pos
    if tiles > 1 and entries * (_CRC.size + 1) - 1 > room:
        raise r.fail(f"it declares {tiles:,} tiles ({rows}x{cols} of {tile} pixels) x {n} streams, "
                     f"more entries than its {room:,} remaining bytes can hold")  # fmt: skip
    lengths, crcs = [], []
    for i in range(entries):
        name = _entry_name(i, n, tiles)
        if i < entries - 1:
            lengths.append(r.varint(f"length of {name}"))
        (crc,) = _CRC.unpack(r.take(_CRC.size, f"symbol CRC of {name}"))
        crcs.append(crc)
    payload = len(body) - r.pos
    if sum(lengths) > payload:
        shown = lengths if len(lengths) <= 4 else f"[{lengths[0]}, {lengths[1]}, …] ({len(lengths)} lengths)"
        raise r.fail(f"stream lengths {shown} add up to more than the {payload:,} payload bytes")
    lengths.append(payload - sum(lengths))
    streams, pos = [], r.pos
    for k in lengths:
        streams.append(bytes(body[pos : pos + k]))
        pos += k
    return Header(digest, (h, w), crcs, lengths, tile), streams
