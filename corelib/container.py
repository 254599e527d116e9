"""The compressed-file container.

Layout (all integers little-endian)::

    magic  b"CDLB"          4 bytes
    format version          u8
    header length           u16
    header                  compact JSON (UTF-8)
    streams                 concatenated, lengths in the header
    checksum                u32, CRC-32 of every byte before it

Header keys: ``c`` component ``kind=name@version`` list, ``d`` weights digest, ``s`` image
(H, W), ``l`` latent (h, w), ``n`` stream byte lengths, ``k`` CRC-32 of each stream's
decoded symbols (detects a decoder desync). The decoder validates all of it before decoding.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

from codec_lab.corelib.errors import BitstreamError

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "pack", "unpack"]

MAGIC = b"CDLB"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sBH")


@dataclass
class Header:
    """What a compressed file says about itself."""

    components: dict[str, str]
    digest: str
    image_size: tuple[int, int]
    latent_size: tuple[int, int]
    lengths: list[int]
    symbol_crcs: list[int]

    def to_json(self) -> bytes:
        obj = {
            "c": [f"{k}={v}" for k, v in self.components.items()],
            "d": self.digest,
            "s": list(self.image_size),
            "l": list(self.latent_size),
            "n": self.lengths,
            "k": self.symbol_crcs,
        }
        return json.dumps(obj, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Header:
        try:
            obj = json.loads(raw.decode())
            comps = dict(item.split("=", 1) for item in obj["c"])
            return cls(comps, str(obj["d"]), tuple(obj["s"]), tuple(obj["l"]),  # type: ignore[arg-type]
                       [int(n) for n in obj["n"]], [int(k) for k in obj["k"]])  # fmt: skip
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise BitstreamError(f"{where}: the header is damaged ({e})") from e


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Serialise a header and its streams, with the trailing checksum."""
    header.lengths = [len(s) for s in streams]
    head = header.to_json()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + b"".join(streams)
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes, where: str = "file") -> tuple[Header, list[bytes]]:
    """Validate magic, version, lengths and checksum; return the header and streams."""
    if len(data) < _PREFIX.size + 4:
        raise BitstreamError(f"{where} is too short to be a codec-lab file ({len(data)} bytes)",
                             "pass a file written by `codec compress`")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"{where} is not a codec-lab file (bad magic {magic!r})",
                             "pass a file written by `codec compress`")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"{where} has format version {version}; this build reads "
                             f"version {FORMAT_VERSION}", "use the codec-lab version that wrote it")
    (stored,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != stored:
        raise BitstreamError(f"{where} is truncated or corrupted (checksum mismatch)",
                             "compress the image again")
    start = _PREFIX.size + hlen
    header = Header.from_json(data[_PREFIX.size:start], where)
    end = start + sum(header.lengths)
    if end != len(data) - 4:
        raise BitstreamError(f"{where} is truncated or corrupted (stream lengths do not add up)",
                             "compress the image again")
    streams, pos = [], start
    for n in header.lengths:
        streams.append(data[pos : pos + n])
        pos += n
    return header, streams
