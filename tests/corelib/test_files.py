"""Image ⇄ file: refusal of other models' files, and decoding in a fresh process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import pack, tile_grid, unpack
from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.files import decode_bytes, encode_image, read_compressed
from codec_lab.corelib.images import save_image, to_uint8
from codec_lab.registry.runs import load_run
from tests.helpers import decode_in_fresh_process, image_tensor


def test_encode_decode_round_trip(trained_codec: Codec) -> None:
    x = image_tensor(50, 37)
    data = encode_image(trained_codec, x)
    header, streams = unpack(data)
    assert header.digest == trained_codec.weights_digest()
    assert header.image_size == (50, 37) and trained_codec.latent_size(50, 37) == (7, 5)
    assert len(streams) == 1 and len(data) - len(streams[0]) == 23  # 1-byte height, width and tile size
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


def test_file_with_another_digest_is_refused(trained_codec: Codec) -> None:
    """The digest identifies the model (format 2 stores no component list)."""
    header, streams = unpack(encode_image(trained_codec, image_tensor(32, 32)))
    header.digest = "00" * 8
    with pytest.raises(BitstreamError, match="made by another model.*model digest 0000000000000000"):
        decode_bytes(trained_codec, pack(header, streams))


def test_stream_count_mismatch_is_refused(trained_codec: Codec) -> None:
    header, streams = unpack(encode_image(trained_codec, image_tensor(32, 32)))
    header.symbol_crcs *= 2
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


@pytest.mark.parametrize("image_size", [(63, 64), (64, 57), (1, 1), (1000, 1000), (16384, 16384)])
def test_changed_image_size_is_refused(trained_codec: Codec, image_size) -> None:
    """The image size is in the symbol CRC's salt: the same latent size (63x64) fails the CRC,
    a larger one the symbol count, never decoding to a wrong image."""
    header, streams = unpack(encode_image(trained_codec, image_tensor(64, 64, seed=3)))
    header.image_size = image_size
    if tile_grid(image_size, header.tile) != (1, 1):
        header.tile = 0  # one tile, so that the one payload is still a consistent file
    with pytest.raises(BitstreamError) as info:
        decode_bytes(trained_codec, pack(header, streams))
    assert "\n" not in str(info.value)


def test_pixel_limit(trained_codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_image(trained_codec, image_tensor(64, 64, seed=3))
    with pytest.raises(BitstreamError, match="over the limit of 4,000 pixels"):
        decode_bytes(trained_codec, data, max_pixels=4000)
    monkeypatch.setenv("CODEC_MAX_PIXELS", "4000")
    with pytest.raises(BitstreamError, match="over the limit of 4,000 pixels"):
        decode_bytes(trained_codec, data)
    assert decode_bytes(trained_codec, data, max_pixels=4096).shape == (1, 3, 64, 64)


def test_version_1_file_is_refused(trained_codec: Codec) -> None:
    with pytest.raises(BitstreamError, match="format version 1.*reads only versions 2 and 3"):
        decode_bytes(trained_codec, b"CDLB\x01\x10\x00" + b'{"c":[]}' * 2 + b"\0" * 8, "old.cdl")


def test_weights_digest_is_cached_and_follows_the_weights(trained_codec: Codec) -> None:
    saved = {k: v.clone() for k, v in trained_codec.state_dict().items()}
    first = trained_codec.weights_digest()
    assert trained_codec.weights_digest() == first == trained_codec.weights_digest(cached=False)
    param = next(trained_codec.parameters())
    with torch.no_grad():
        param.add_(1.0)  # in place: the version counter moves
    changed = trained_codec.weights_digest()
    assert changed != first and changed == trained_codec.weights_digest(cached=False)
    trained_codec.load_state_dict(saved)  # copied in place
    assert trained_codec.weights_digest() == first
    buf = dict(trained_codec.named_buffers())
    name = next(n for n in buf if n != "config_digest" and buf[n].is_floating_point())
    buf[name].data = buf[name].data + 1  # a replaced tensor (new storage)
    assert trained_codec.weights_digest() == trained_codec.weights_digest(cached=False) != first


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


def test_cli_pixel_limit_and_version_1(trained_run: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``codec decompress --max-pixels`` (and CODEC_MAX_PIXELS); a format-1 file: one-line errors."""
    from tests.cli.conftest import assert_clean_failure, invoke

    cdl = tmp_path / "a.cdl"
    cdl.write_bytes(encode_image(load_run(trained_run), image_tensor(64, 64, seed=3)))
    args = ("decompress", cdl, "-m", trained_run)
    err = assert_clean_failure(invoke(*args, "-o", tmp_path / "a.png", "--max-pixels", "4000"))
    assert "64x64 image (4,096 pixels), over the limit of 4,000 pixels" in err and "--max-pixels" in err
    monkeypatch.setenv("CODEC_MAX_PIXELS", "4000")
    assert_clean_failure(invoke(*args, "-o", tmp_path / "a.png"), contains="over the limit of 4,000")
    assert not (tmp_path / "a.png").exists()
    assert invoke(*args, "-o", tmp_path / "a.png", "--max-pixels", "4096").exit_code == 0
    cdl.write_bytes(b"CDLB\x01\x10\x00" + b'{"c":[],"d":""}' + b"\0" * 12)
    assert_clean_failure(invoke(*args, "-o", tmp_path / "b.png"), contains="format version 1")


def test_coding_only_skips_the_density_but_not_the_bytes() -> None:
    """encode_image skips the likelihoods (CompressAI's compress does too): same payload,
    same image; outside the block, or with gradients on, the density is evaluated."""
    from compressai.models import FactorizedPrior

    from codec_lab.corelib.entropy_models import coding_only
    from codec_lab.registry.compressai_zoo import from_factorized_prior

    torch.manual_seed(0)
    ref = FactorizedPrior(8, 12)
    ref.update(force=True)
    codec = from_factorized_prior(ref.state_dict()).eval()
    x = image_tensor(48, 64, seed=5)
    data = encode_image(codec, x)
    _, streams = unpack(data)
    assert streams == [codec.compress(x)["strings"][0][0]] == [ref.compress(x)["strings"][0][0]]
    assert torch.equal(decode_bytes(codec, data), codec.decompress(**codec.compress(x))["x_hat"])
    bottleneck = codec.rate.bottleneck
    values = torch.randn(1, 12, 3, 4)
    with coding_only():
        with torch.no_grad():
            assert torch.equal(bottleneck.likelihood(values), torch.ones_like(values))
        assert not torch.equal(bottleneck.likelihood(values), torch.ones_like(values))  # gradients on
    with torch.no_grad():
        assert not torch.equal(bottleneck.likelihood(values), torch.ones_like(values))
