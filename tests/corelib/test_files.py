"""Image ⇄ file: refusal of other models' files, and decoding in a fresh process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import pack, unpack
from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.files import component_tags, decode_bytes, encode_image, read_compressed
from codec_lab.corelib.images import save_image, to_uint8
from codec_lab.registry.runs import load_run
from tests.helpers import decode_in_fresh_process, image_tensor


def test_encode_decode_round_trip(trained_codec: Codec) -> None:
    x = image_tensor(50, 37)
    data = encode_image(trained_codec, x)
    header, _ = unpack(data)
    assert header.components == component_tags(trained_codec)
    assert header.digest == trained_codec.weights_digest()
    assert header.image_size == (50, 37) and header.latent_size == (7, 5)
    x_hat = decode_bytes(trained_codec, data)
    assert torch.equal(x_hat, trained_codec.decompress(**trained_codec.compress(x))["x_hat"])


def test_encode_is_deterministic(trained_codec: Codec) -> None:
    x = image_tensor(40, 48)
    assert encode_image(trained_codec, x) == encode_image(trained_codec, x)


def test_encode_image_takes_one_image(trained_codec: Codec) -> None:
    with pytest.raises(ValueError, match="one image"):
        encode_image(trained_codec, torch.rand(2, 3, 16, 16))


def test_file_of_another_model_is_refused(trained_codec: Codec, other_run: Path) -> None:
    data = encode_image(load_run(other_run), image_tensor(32, 32))
    with pytest.raises(BitstreamError, match="made by another model"):
        decode_bytes(trained_codec, data, "x.cdl")


def test_file_of_another_composition_is_refused(trained_codec: Codec) -> None:
    header, streams = unpack(encode_image(trained_codec, image_tensor(32, 32)))
    header.components = {**header.components, "coder": "histogram@9.9"}
    with pytest.raises(BitstreamError, match="different codec.*histogram@9.9"):
        decode_bytes(trained_codec, pack(header, streams))


def test_stream_count_mismatch_is_refused(trained_codec: Codec) -> None:
    header, streams = unpack(encode_image(trained_codec, image_tensor(32, 32)))
    with pytest.raises(BitstreamError, match="2 streams"):
        decode_bytes(trained_codec, pack(header, streams * 2))


def test_damaged_stream_with_a_valid_checksum_is_detected(trained_codec: Codec) -> None:
    """A payload changed behind the container's back still fails, by the symbol CRC."""
    header, streams = unpack(encode_image(trained_codec, image_tensor(64, 64, seed=3)))
    bad = bytearray(streams[0])
    for i in range(len(bad) // 4, len(bad) - 4):  # keep the last word (tested below)
        bad[i] ^= 0xA5
    with pytest.raises(BitstreamError):
        decode_bytes(trained_codec, pack(header, [bytes(bad)]))


def test_stream_ending_in_a_zero_word_is_a_bitstream_error(trained_codec: Codec) -> None:
    header, streams = unpack(encode_image(trained_codec, image_tensor(64, 64, seed=3)))
    with pytest.raises(BitstreamError):
        decode_bytes(trained_codec, pack(header, [streams[0][:-4] + b"\0\0\0\0"]))


@pytest.mark.parametrize("image_size", [(0, 0), (1000, 1000)])
def test_header_image_size_must_match_the_latent(trained_codec: Codec, image_size) -> None:
    header, streams = unpack(encode_image(trained_codec, image_tensor(64, 64, seed=3)))
    header.image_size = image_size
    with pytest.raises(BitstreamError):
        decode_bytes(trained_codec, pack(header, streams))


def test_read_compressed(tmp_path: Path) -> None:
    with pytest.raises(BitstreamError, match="does not exist"):
        read_compressed(tmp_path / "missing.cdl")
    with pytest.raises(BitstreamError, match="does not exist"):
        read_compressed(tmp_path)
    (tmp_path / "a.cdl").write_bytes(b"abc")
    assert read_compressed(tmp_path / "a.cdl") == b"abc"


def test_file_decodes_identically_in_a_fresh_process(trained_run: Path, tmp_path: Path) -> None:
    codec = load_run(trained_run)
    data = encode_image(codec, image_tensor(96, 80, seed=9))
    here, proc = decode_in_fresh_process(trained_run, data, tmp_path, threads=2)
    save_image(here, tmp_path / "here.png")
    assert proc.stdout.strip().endswith("2")
    there_png = np.asarray(Image.open(tmp_path / "there.png"))
    here_png = np.asarray(Image.open(tmp_path / "here.png"))
    assert there_png.shape == (96, 80, 3)
    assert np.array_equal(there_png, here_png)
    assert np.array_equal(there_png, to_uint8(here))
    assert np.array_equal(np.load(tmp_path / "there.npy"), here.numpy())
