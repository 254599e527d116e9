"""The compressed-file container (format 3, format 2 read): layout, size, tiles, and every way a
file can be refused."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from codec_lab.corelib.container import (
    DEFAULT_MAX_PIXELS,
    FORMAT_VERSION,
    MAGIC,
    MAX_STREAMS,
    TILE_UNIT,
    Header,
    max_pixels_limit,
    pack,
    symbols_salt,
    tile_grid,
    unpack,
)
from codec_lab.corelib.errors import BitstreamError, ConfigError

DIGEST = "0123456789abcdef"
STREAMS = [b"side-stream", b"\x00\x01\x02main"]


def _header(**over) -> Header:
    kw = dict(digest=DIGEST, image_size=(50, 37), symbol_crcs=[11, 22])
    kw.update(over)
    return Header(**kw)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def _file(*, magic: bytes = MAGIC, version: int = FORMAT_VERSION, flags: int = 1, h: bytes = b"\x32",
          w: bytes = b"\x25", tile: bytes = b"\x40", digest: bytes = bytes.fromhex(DIGEST),
          entries: bytes = b"\0\0\0\0", payload: bytes = b"payload!") -> bytes:  # fmt: skip
    """A file built field by field (raw bytes, so that any field can be malformed), checksummed.
    The tile size is left out of a version-2 file."""
    tile = tile if version >= 3 else b""
    return _recrc(magic + bytes([version, flags]) + h + w + tile + digest + entries + payload)


def _refused(data: bytes, match: str, **kw) -> BitstreamError:
    with pytest.raises(BitstreamError, match=match) as info:
        unpack(data, "photo.cdl", **kw)
    assert "\n" not in str(info.value) and "photo.cdl" in str(info.value)
    return info.value


# ---------------------------------------------------------------- layout
def test_round_trip() -> None:
    data = pack(_header(), STREAMS)
    assert data.startswith(MAGIC) and data[2] == FORMAT_VERSION and data[3] == 2
    header, streams = unpack(data)
    assert streams == STREAMS
    assert header == Header(DIGEST, (50, 37), [11, 22], [len(s) for s in STREAMS])


def test_layout_byte_by_byte() -> None:
    """docs/format.md, example: one stream of a 512x768 (Kodak) image in 1024-pixel tiles."""
    data = pack(Header(DIGEST, (512, 768), [0xDEADBEEF], tile=1024), [b"\x01\x02\x03\x04"])
    assert data[:-4] == (b"CD" + b"\x03" + b"\x01" + b"\x80\x04" + b"\x80\x06" + b"\x40"
                         + bytes.fromhex(DIGEST) + b"\xef\xbe\xad\xde" + b"\x01\x02\x03\x04")  # fmt: skip
    assert data[-4:] == struct.pack("<I", zlib.crc32(data[:-4]))
    assert data[-4:] == bytes.fromhex("baaa5e14")  # as docs/format.md shows it


def test_tiled_layout_byte_by_byte() -> None:
    """docs/format.md, second example: a 40x24 image in 16-pixel tiles (3x2), two streams each."""
    payloads = [bytes([t * 2 + i]) * (i + 1) for t in range(6) for i in range(2)]
    data = pack(Header(DIGEST, (40, 24), list(range(12)), tile=16), payloads)
    entries = b"".join((bytes([len(p)]) if k < 11 else b"") + struct.pack("<I", k)
                       for k, p in enumerate(payloads))  # fmt: skip
    assert data[:-4] == b"CD\x03\x02\x28\x18\x01" + bytes.fromhex(DIGEST) + entries + b"".join(payloads)
    header, out = unpack(data)
    assert out == payloads and header.tile == 16 and header.symbol_crcs == list(range(12))
    assert tile_grid((40, 24), 16) == (3, 2)


def test_one_stream_container_is_at_most_25_bytes() -> None:
    """One byte more than format 2 (the tile size, 1 byte up to 2,032-pixel tiles)."""
    payload = b"x" * 1000
    for size in [(512, 768), (768, 512), (16383, 16383)]:
        assert len(pack(Header(DIGEST, size, [1]), [payload])) - len(payload) <= 25
    assert len(pack(Header(DIGEST, (48, 40), [1], tile=1024), [payload])) - len(payload) == 23


def test_two_streams_add_a_length_and_a_crc() -> None:
    one = len(pack(Header(DIGEST, (512, 768), [1]), [b"y" * 300]))
    two = len(pack(Header(DIGEST, (512, 768), [1, 2]), [b"m" * 100, b"y" * 200]))
    assert two - one == 1 + 4  # the first stream's length (a 1-byte varint) and its CRC


def test_empty_streams_round_trip() -> None:
    header, streams = unpack(pack(_header(symbol_crcs=[0]), [b""]))
    assert streams == [b""] and header.lengths == [0]
    header, streams = unpack(pack(_header(symbol_crcs=[0, 5]), [b"", b"abc"]))
    assert streams == [b"", b"abc"]


def test_symbols_salt_encodes_image_and_latent_sizes() -> None:
    salts = {symbols_salt((h, w), (lh, lw)) for h, w, lh, lw in
             [(64, 64, 8, 8), (63, 64, 8, 8), (64, 63, 8, 8), (64, 64, 8, 9), (64, 64, 9, 8)]}  # fmt: skip
    assert len(salts) == 5
    assert symbols_salt((512, 768), (32, 48)) == struct.pack("<4I", 512, 768, 32, 48)


@pytest.mark.parametrize(("over", "streams", "words"), [
    ({}, [], "1 to 15 streams"),
    ({"symbol_crcs": [0] * 16}, [b""] * 16, "1 to 15 streams"),
    ({"symbol_crcs": [1]}, STREAMS, "1 symbol CRCs for 2"),
    ({"image_size": (0, 5)}, STREAMS, "cannot be written"),
    ({"image_size": (5, 2**32)}, STREAMS, "cannot be written"),
    ({"digest": "xyz"}, STREAMS, "not hex"),
    ({"digest": "abcd"}, STREAMS, "not 8 bytes"),
    ({"tile": 24}, STREAMS, "tile size 24 is not 0 or a multiple of 16"),
    ({"tile": -16}, STREAMS, "tile size -16"),
    ({"tile": 16}, STREAMS, "2 payloads for 12 tiles"),
    ({"symbol_crcs": [1, 2**32]}, STREAMS, "32-bit"),
])  # fmt: skip
def test_pack_refuses_what_it_cannot_write(over, streams, words) -> None:
    with pytest.raises(ValueError, match=words):
        pack(_header(**over), streams)


def test_max_streams_round_trip() -> None:
    streams = [bytes([i]) * i for i in range(MAX_STREAMS)]
    header, out = unpack(pack(_header(symbol_crcs=list(range(MAX_STREAMS))), streams))
    assert out == streams and header.symbol_crcs == list(range(MAX_STREAMS))


# ---------------------------------------------------------------- refusals
def test_bad_magic() -> None:
    data = bytearray(pack(_header(), STREAMS))
    data[:2] = b"PN"
    _refused(_recrc(bytes(data[:-4])), "not a codec-lab file")


def test_version_1_file_is_refused_by_name() -> None:
    """A file of the JSON-header format 1 (b"CDLB", version 1, header length, JSON, ...)."""
    head = json.dumps({"c": ["encoder=cae@0.1"], "d": DIGEST, "s": [50, 37], "l": [7, 5],
                       "n": [4], "k": [1]}, separators=(",", ":")).encode()  # fmt: skip
    v1 = _recrc(struct.pack("<4sBH", b"CDLB", 1, len(head)) + head + b"abcd")
    err = _refused(v1, "format version 1")
    assert "this build reads only versions 2 and 3" in str(err)
    assert "compress the original image again" in str(err)
    _refused(b"CDLB\x01", "format version 1")  # even a truncated one


def test_other_format_version() -> None:
    data = bytearray(pack(_header(), STREAMS))
    data[2] = FORMAT_VERSION + 1
    _refused(_recrc(bytes(data[:-4])), f"format version {FORMAT_VERSION + 1}")


@pytest.mark.parametrize("where", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_any_flipped_byte_fails_the_checksum(where: float) -> None:
    data = bytearray(pack(_header(), STREAMS))
    i = min(len(data) - 1, max(4, int(len(data) * where)))
    data[i] ^= 0x10
    _refused(bytes(data), "checksum")


@pytest.mark.parametrize("keep", [0, 3, 7, 10, -1, -5])
def test_truncated(keep: int) -> None:
    data = pack(_header(), STREAMS)
    _refused(data[:keep], "too short|truncated")


def test_error_names_the_file() -> None:
    _refused(b"xx", "too short")


# Every header field out of range, in a file whose checksum is right.
@pytest.mark.parametrize(("fields", "words"), [
    ({"flags": 0x11}, r"reserved flag bits are set \(flags 0x11\)"),
    ({"flags": 0x80}, "reserved flag bits"),
    ({"flags": 0}, "declares no streams"),
    ({"h": b"\x00"}, "image size 0x37 is empty"),
    ({"w": b"\x00"}, "image size 50x0 is empty"),
    ({"h": b"\xb2\x00"}, "image height is not in its shortest form"),
    ({"w": b"\x80\x80\x80\x80\x80\x01"}, "image width runs over 5 bytes"),
    ({"h": b"\xff\xff\xff\xff\x1f"}, "image height is out of range"),
    ({"h": _varint(2**14), "w": _varint(2**14 + 1)}, r"claims a 16384x16385 image .* over the limit"),
    ({"h": _varint(2**28), "w": b"\x02"}, "over the limit of 268,435,456 pixels"),
    ({"flags": 2, "entries": b"\x7f" + b"\0" * 8}, r"stream lengths \[127\] add up to more than"),
    ({"flags": 3, "entries": b"\x05\0\0\0\0\x04\0\0\0\0\0\0\0\0"}, "add up to more than the 0 payload"),
])  # fmt: skip
def test_header_field_out_of_range(fields, words) -> None:
    kw = {"payload": b""} if fields.get("flags") == 3 else {}
    _refused(_file(**fields, **kw), words)


@pytest.mark.parametrize("cut", [1, 3, 9, 12, 13])
def test_header_that_ends_early(cut: int) -> None:
    """A file cut inside its header, checksum recomputed: the field it ends in is named."""
    good = _file(payload=b"")[:-4]
    _refused(_recrc(good[:-cut]), "damaged header: it ends inside the")


def test_length_varint_that_runs_off_the_end() -> None:
    _refused(_file(flags=2, entries=b"\x81", payload=b""), "ends inside the length of stream 1")


def test_pixel_limit_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _file(h=_varint(100), w=_varint(100))
    assert unpack(data)[0].image_size == (100, 100)
    _refused(data, "10,000 pixels\\), over the limit of 9,999", max_pixels=9_999)
    assert unpack(data, max_pixels=10_000)[0].image_size == (100, 100)
    monkeypatch.setenv("CODEC_MAX_PIXELS", "5000")
    _refused(data, "over the limit of 5,000 pixels.*--max-pixels or CODEC_MAX_PIXELS")
    assert unpack(data, max_pixels=10_000)[0].image_size == (100, 100)  # the option wins
    big = _file(h=_varint(2**15), w=_varint(2**14), tile=b"\0")
    monkeypatch.setenv("CODEC_MAX_PIXELS", str(2**29))
    assert unpack(big)[0].image_size == (2**15, 2**14)


@pytest.mark.parametrize("value", ["lots", "0", "-3", "1.5"])
def test_bad_pixel_limit_in_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CODEC_MAX_PIXELS", value)
    with pytest.raises(ConfigError, match="CODEC_MAX_PIXELS must be a positive whole number"):
        max_pixels_limit()


def test_default_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEC_MAX_PIXELS", raising=False)
    assert max_pixels_limit() == DEFAULT_MAX_PIXELS == 2**28
    with pytest.raises(ConfigError):
        max_pixels_limit(0)


def test_stream_lengths_that_do_not_add_up() -> None:
    """Extra bytes go to the last stream (its length is implied); lengths past the end fail."""
    data = pack(_header(), STREAMS)
    header, streams = unpack(_recrc(data[:-4] + b"extra"))
    assert streams == [STREAMS[0], STREAMS[1] + b"extra"]
    _refused(_recrc(data[:-4][: -len(STREAMS[1]) - 2]), "add up to more than")


# ---------------------------------------------------------------- tiles and format 2
def test_format_2_file_reads_as_one_tile() -> None:
    """Format 2 is format 3 without the tile-size field: it reads as an untiled file."""
    v2 = _file(version=2, flags=2, entries=b"\x03" + b"\x0b\0\0\0" + b"\x16\0\0\0", payload=b"abcdefgh")
    header, streams = unpack(v2)
    assert header == Header(DIGEST, (50, 37), [11, 22], [3, 5], tile=0)
    assert streams == [b"abc", b"defgh"]


def test_tile_grid() -> None:
    assert tile_grid((512, 768), 0) == (1, 1) == tile_grid((512, 768), 1024)
    assert tile_grid((1025, 2048), 1024) == (2, 2)
    assert tile_grid((40, 24), 16) == (3, 2)


def test_tiled_round_trip_and_size() -> None:
    """Per tile and stream: a length varint and a CRC; a one-tile file costs the untiled size."""
    payloads = [bytes([k]) * k for k in range(12)]  # 6 tiles x 2 streams
    data = pack(_header(image_size=(48, 32), tile=16, symbol_crcs=list(range(12))), payloads)
    header, out = unpack(data)
    assert out == payloads and header.tile == 16 and header.lengths == [len(p) for p in payloads]
    one = pack(_header(image_size=(48, 32), tile=TILE_UNIT * 4, symbol_crcs=[1, 2]), payloads[:2])
    assert len(data) - len(one) == 10 * (1 + 4) + sum(map(len, payloads[2:]))


@pytest.mark.parametrize(("fields", "words"), [
    # A tile size that makes more tiles than the file has entries for.
    ({"tile": b"\x01", "entries": b"\0\0\0\0"},
     r"declares 12 tiles \(4x3 of 16 pixels\) x 1 streams, more entries"),
    ({"tile": b"\x01", "flags": 2, "entries": b"\0" * 9}, "declares 12 tiles"),
    ({"tile": b"\x80\x00"}, "tile size is not in its shortest form"),
    ({"tile": b"\xff\xff\xff\xff\x7f"}, "tile size is out of range"),
    # 2**28 pixels in 16-pixel tiles: a million entries claimed, refused before any is read.
    ({"h": _varint(2**14), "w": _varint(2**14), "tile": b"\x01"}, r"declares 1,048,576 tiles"),
])  # fmt: skip
def test_tile_fields_out_of_range(fields, words) -> None:
    _refused(_file(**fields), words)


def test_tiled_entries_are_named_by_tile() -> None:
    """Entries that run off the end name the stream and the tile."""
    data = _file(h=b"\x30", w=b"\x10", tile=b"\x01", entries=b"\x05\0\0\0\0" + b"\x81" * 9, payload=b"")
    _refused(data, "damaged header: the length of stream 1 of tile 2 runs over 5 bytes")


def test_symbols_salt_names_the_tile() -> None:
    base = symbols_salt((64, 64), (8, 8))
    assert symbols_salt((64, 64), (8, 8), 0, (3, 4)) == base  # untiled: format 2's salt
    tiled = {symbols_salt((64, 64), (8, 8), t, p) for t, p in [(16, (0, 0)), (16, (0, 1)), (16, (1, 0)),
                                                                 (32, (0, 0))]}  # fmt: skip
    assert len(tiled) == 4 and base not in tiled
    assert symbols_salt((64, 64), (8, 8), 16, (1, 2)) == base + struct.pack("<3I", 1, 1, 2)
