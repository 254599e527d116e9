"""The composed Codec: bit-exact compress/decompress, any image size, CompressAI's API."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.codec import Codec, symbols_crc
from codec_lab.corelib.errors import BitstreamError
from codec_lab.registry.compose import build_codec
from tests.helpers import image_tensor


def _forward_x_hat(codec: Codec, x: torch.Tensor) -> torch.Tensor:
    codec.eval()
    with torch.no_grad():
        return codec(x)["x_hat"].clamp(0, 1)


def test_trained_codec_has_an_active_mask(trained_codec: Codec) -> None:
    rate = trained_codec.rate
    assert bool(rate.projected) and bool(rate.frozen)
    assert trained_codec.coder.fitted
    mask = rate.mask((8, 8))
    assert mask is not None and mask.any() and not mask.all()


@pytest.mark.parametrize("hw", [(64, 64), (32, 96)])
def test_compress_decompress_is_bit_exact(trained_codec: Codec, hw: tuple[int, int]) -> None:
    codec = trained_codec
    assert hw[0] % codec.downsampling_factor == 0 and hw[1] % codec.downsampling_factor == 0
    x = image_tensor(*hw, seed=5)
    enc = codec.compress(x)
    streams = codec.streams(x)
    h, w = enc["shape"]
    assert (h, w) == (hw[0] // 8, hw[1] // 8)
    decoded: dict[str, torch.Tensor] = {}
    for k, spec in enumerate(codec.specs):
        mask = codec.rate.decode_mask(spec, decoded, (h, w))
        sent = streams[k].full_mask()[0]
        assert not sent.all(), "the trained ADMM template should mask positions"
        sym = codec.coder.decode(enc["strings"][k][0], spec, (spec.channels, h, w), mask)
        assert torch.equal(sym[sent], streams[k].symbols[0][sent]), "decoded symbols differ"
        decoded[spec.name] = sym
    out = codec.decompress(**enc)
    assert torch.equal(out["x_hat"], _forward_x_hat(codec, x))


@pytest.mark.parametrize("hw", [(50, 37), (9, 9), (17, 100), (64, 9)])
def test_any_image_size_round_trips_at_its_size(trained_codec: Codec, hw: tuple[int, int]) -> None:
    codec = trained_codec
    x = image_tensor(*hw, seed=6)
    enc = codec.compress(x)
    out = codec.decompress(**enc)["x_hat"]
    assert out.shape == (1, 3, *hw)
    ref = _forward_x_hat(codec, codec.pad(x))[..., : hw[0], : hw[1]]
    assert torch.equal(out, ref)


@pytest.mark.parametrize("hw", [(8, 64), (1, 1)])
def test_tiny_images_round_trip(trained_codec: Codec, hw: tuple[int, int]) -> None:
    x = image_tensor(*hw, seed=6)
    out = trained_codec.decompress(**trained_codec.compress(x))["x_hat"]
    assert out.shape == (1, 3, *hw)


def test_batch_of_two_round_trips_like_two_single_images(trained_codec: Codec) -> None:
    codec = trained_codec
    x = torch.cat([image_tensor(48, 40, seed=1), image_tensor(48, 40, seed=2)])
    enc = codec.compress(x)
    assert len(enc["strings"]) == len(codec.specs) and len(enc["strings"][0]) == 2
    out = codec.decompress(**enc)["x_hat"]
    for i in range(2):
        one = codec.decompress(**codec.compress(x[i : i + 1]))["x_hat"]
        assert torch.equal(out[i : i + 1], one)


def test_decompress_without_image_size_keeps_the_padded_size(trained_codec: Codec) -> None:
    enc = trained_codec.compress(image_tensor(50, 37))
    out = trained_codec.decompress(enc["strings"], enc["shape"])["x_hat"]
    assert out.shape == (1, 3, 56, 40)


def test_decompress_refuses_the_wrong_number_of_streams(trained_codec: Codec) -> None:
    enc = trained_codec.compress(image_tensor(32, 32))
    with pytest.raises(BitstreamError, match="expected 1 streams"):
        trained_codec.decompress(enc["strings"] * 2, enc["shape"])


def test_decompress_detects_a_symbol_checksum_mismatch(trained_codec: Codec) -> None:
    enc = trained_codec.compress(image_tensor(32, 32))
    enc["crc"] = [[c[0] ^ 1] for c in enc["crc"]]
    with pytest.raises(BitstreamError, match="checksum mismatch"):
        trained_codec.decompress(**enc)


def test_symbols_crc_ignores_masked_positions() -> None:
    sym = torch.arange(12).view(1, 3, 4)
    mask = sym % 2 == 0
    other = torch.where(mask, sym, torch.full_like(sym, 99))
    assert symbols_crc(sym, mask) == symbols_crc(other, mask)
    assert symbols_crc(sym, None) != symbols_crc(other, None)


def test_pad_replicates_to_a_multiple_of_the_factor(tiny_codec: Codec) -> None:
    x = image_tensor(10, 17)
    p = tiny_codec.pad(x)
    assert p.shape[-2:] == (16, 24)
    assert torch.equal(p[..., :10, :17], x)
    assert torch.equal(p[..., 15, :17], x[..., 9, :])
    assert tiny_codec.pad(image_tensor(16, 24)).shape[-2:] == (16, 24)


def test_components_and_parts(tiny_codec: Codec) -> None:
    assert list(tiny_codec.parts) == ["encoder", "quantizer", "rate", "coder", "decoder"]
    assert tiny_codec.components()["rate"] == ("admm", "0.1")
    assert tiny_codec.config["encoder"]["channels"] == 8
    assert tiny_codec.downsampling_factor == 8


def test_weights_digest_identifies_the_weights(tiny_codec: Codec) -> None:
    d = tiny_codec.weights_digest()
    assert len(d) == 16 and d == tiny_codec.weights_digest()
    with torch.no_grad():
        next(tiny_codec.parameters()).view(-1)[0] += 1e-3
    assert tiny_codec.weights_digest() != d


def test_forward_returns_compressai_keys(tiny_codec: Codec) -> None:
    x = image_tensor(32, 40)
    out = tiny_codec(x)
    assert {"x_hat", "likelihoods", "rate_loss", "rate", "y"} <= set(out)
    assert out["x_hat"].shape == x.shape
    assert set(out["likelihoods"]) == {s.name for s in tiny_codec.specs}
    for lk in out["likelihoods"].values():
        assert torch.all((lk > 0) & (lk <= 1))


# ---------------------------------------------------------------- CompressAI compatibility
def test_compressai_rate_distortion_loss_trains_the_codec(tiny_codec: Codec) -> None:
    from compressai.losses import RateDistortionLoss

    tiny_codec.train()
    x = image_tensor(48, 48)
    loss = RateDistortionLoss(lmbda=0.01)(tiny_codec(x), x)
    assert {"loss", "bpp_loss", "mse_loss"} <= set(loss)
    assert torch.isfinite(loss["loss"]) and float(loss["bpp_loss"]) > 0
    loss["loss"].backward()
    grads = [p.grad for p in tiny_codec.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_compressai_update_and_aux_loss(trained_codec: Codec) -> None:
    before = trained_codec.weights_digest()
    trained_codec.update(force=True)
    trained_codec.update()
    assert float(trained_codec.aux_loss().detach()) == 0.0
    assert trained_codec.weights_digest() == before


def test_state_dict_round_trip_gives_the_same_digest(trained_codec: Codec, registry) -> None:
    torch.manual_seed(123)
    fresh = build_codec(trained_codec.config, registry)
    assert fresh.weights_digest() != trained_codec.weights_digest()
    fresh.load_state_dict(trained_codec.state_dict())
    assert fresh.weights_digest() == trained_codec.weights_digest()
    fresh.eval()
    x = image_tensor(32, 32)
    assert torch.equal(fresh.decompress(**fresh.compress(x))["x_hat"],
                       trained_codec.decompress(**trained_codec.compress(x))["x_hat"])  # fmt: skip


def test_compressai_eval_model_inference(trained_codec: Codec) -> None:
    """CompressAI's own ``eval_model`` inference runs on the codec unchanged."""
    from compressai.ops import compute_padding
    from compressai.utils.eval_model.__main__ import inference

    h, w = 168, 176  # CompressAI's MS-SSIM needs more than 160 px
    x = image_tensor(h, w)[0]
    res = inference(trained_codec, x)
    pad, _ = compute_padding(h, w, min_div=64)
    enc = trained_codec.compress(torch.nn.functional.pad(x[None], pad, mode="constant", value=0))
    assert res["bpp"] == pytest.approx(sum(len(s[0]) for s in enc["strings"]) * 8 / (h * w))
    assert res["psnr-rgb"] > 0 and 0 < res["ms-ssim-rgb"] <= 1


def _kodak_image() -> torch.Tensor:
    """kodim23 from ``$CODEC_DATA/kodak`` when the data is there, else a synthetic 512×768."""
    import os
    from pathlib import Path

    from codec_lab.corelib.images import load_image

    path = Path(os.environ.get("CODEC_DATA", "../shared/data")) / "kodak" / "kodim23.png"
    return load_image(path)[0] if path.is_file() else image_tensor(512, 768, seed=23)


def test_kodak_sized_image_round_trips_and_the_file_matches_the_estimate(trained_codec: Codec) -> None:
    """A full 768×512 photo: bit-exact, and the real stream size stays near the likelihood estimate."""
    from codec_lab.corelib.files import decode_bytes, encode_image
    from codec_lab.corelib.metrics import bpp_from_likelihoods

    codec = trained_codec
    x = _kodak_image()
    data = encode_image(codec, x)
    out = decode_bytes(codec, data)
    assert out.shape == x.shape and torch.equal(out, _forward_x_hat(codec, codec.pad(x)))
    with torch.no_grad():
        est = float(bpp_from_likelihoods(codec(x)["likelihoods"], x.shape[-2] * x.shape[-1]))
    real = len(data) * 8 / (x.shape[-2] * x.shape[-1])
    # A few hundred bytes of header and per-channel ANS words on top of the estimate.
    assert est * 0.99 <= real <= est * 1.15 + 0.02, (real, est)
