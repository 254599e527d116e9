"""The compressed-file container: layout, and every way a file can be refused."""

from __future__ import annotations

import struct
import zlib

import pytest

from codec_lab.corelib.container import FORMAT_VERSION, MAGIC, Header, pack, unpack
from codec_lab.corelib.errors import BitstreamError


def _header(**over) -> Header:
    kw = dict(components={"encoder": "cae@0.1", "rate": "admm@0.1"}, digest="0123456789abcdef",
              image_size=(50, 37), latent_size=(7, 5), lengths=[], symbol_crcs=[11, 22])  # fmt: skip
    kw.update(over)
    return Header(**kw)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


STREAMS = [b"side-stream", b"\x00\x01\x02main"]


def test_round_trip() -> None:
    data = pack(_header(), STREAMS)
    assert data.startswith(MAGIC) and data[4] == FORMAT_VERSION
    header, streams = unpack(data)
    assert streams == STREAMS
    assert header.components == {"encoder": "cae@0.1", "rate": "admm@0.1"}
    assert header.digest == "0123456789abcdef"
    assert header.image_size == (50, 37) and header.latent_size == (7, 5)
    assert header.lengths == [len(s) for s in STREAMS] and header.symbol_crcs == [11, 22]


def test_empty_streams_round_trip() -> None:
    header, streams = unpack(pack(_header(symbol_crcs=[0]), [b""]))
    assert streams == [b""]


def test_bad_magic() -> None:
    data = bytearray(pack(_header(), STREAMS))
    data[:4] = b"PNG\x00"
    with pytest.raises(BitstreamError, match="not a codec-lab file"):
        unpack(_recrc(bytes(data[:-4])))


def test_other_format_version() -> None:
    data = bytearray(pack(_header(), STREAMS))
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(BitstreamError, match=f"format version {FORMAT_VERSION + 1}"):
        unpack(_recrc(bytes(data[:-4])))


@pytest.mark.parametrize("where", [0.3, 0.5, 0.9])
def test_any_flipped_byte_fails_the_checksum(where: float) -> None:
    data = bytearray(pack(_header(), STREAMS))
    i = max(7, int(len(data) * where))
    data[i] ^= 0x10
    with pytest.raises(BitstreamError, match="checksum"):
        unpack(bytes(data))


@pytest.mark.parametrize("keep", [0, 3, 10, -1, -5])
def test_truncated(keep: int) -> None:
    data = pack(_header(), STREAMS)
    with pytest.raises(BitstreamError, match="too short|truncated"):
        unpack(data[:keep], "photo.cdl")


def test_error_names_the_file() -> None:
    with pytest.raises(BitstreamError, match="photo.cdl"):
        unpack(b"xx", "photo.cdl")


def test_damaged_header_with_a_valid_checksum() -> None:
    head = b'{"c": 5}'
    body = struct.pack("<4sBH", MAGIC, FORMAT_VERSION, len(head)) + head
    with pytest.raises(BitstreamError, match="header is damaged"):
        unpack(_recrc(body))


def test_not_json_header() -> None:
    head = b"\xff\xfe not json"
    body = struct.pack("<4sBH", MAGIC, FORMAT_VERSION, len(head)) + head
    with pytest.raises(BitstreamError, match="header is damaged"):
        unpack(_recrc(body))


def test_stream_lengths_that_do_not_add_up() -> None:
    data = pack(_header(), STREAMS)
    with pytest.raises(BitstreamError, match="do not add up"):
        unpack(_recrc(data[:-4] + b"extra"))
