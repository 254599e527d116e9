"""The content-weighted encoder/decoder pair (TPAMI and CVPR variants)."""

from __future__ import annotations

import math

import pytest
import torch

from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.testing import construct
from codec_lab.plugins.transforms.content_weighted import ContentWeightedDecoder, ContentWeightedEncoder
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, resolve_model

TINY = 0.0625  # internal channels 4 … 32 (64·w = 4, 512·w = 32): a few ten-thousand parameters
VARIANTS = ("tpami", "cvpr")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("hw", [(32, 48), (8, 8), (16, 40)])
def test_shapes_and_ranges(variant: str, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    enc = ContentWeightedEncoder(variant, TINY, 6).eval()
    dec = ContentWeightedDecoder(variant, TINY, 6).eval()
    with torch.no_grad():
        feats = enc(torch.rand(2, 3, *hw))
        x_hat = dec(feats["y"])
    h, w = hw[0] // 8, hw[1] // 8
    assert set(feats) == {"y", "importance"} == set(enc.features)
    assert feats["y"].shape == (2, 6, h, w)
    assert feats["importance"].shape == (2, 1, h, w)
    for t in feats.values():
        assert 0 < float(t.min()) and float(t.max()) < 1  # both are sigmoids
    assert x_hat.shape == (2, 3, *hw)
    assert torch.isfinite(x_hat).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(variant: str) -> None:
    enc, dec = ContentWeightedEncoder(variant, TINY, 4), ContentWeightedDecoder(variant, TINY, 4)
    feats = enc(torch.rand(1, 3, 16, 24))
    (dec(feats["y"]).square().mean() + feats["importance"].mean()).backward()
    for part in (enc, dec):
        for name, p in part.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_output_scaling_per_variant() -> None:
    """tpami returns its last conv raw (unclamped); cvpr maps its [-1, 1] output to [0, 1]."""
    y = torch.rand(1, 4, 2, 3)
    tpami, cvpr = ContentWeightedDecoder("tpami", TINY, 4), ContentWeightedDecoder("cvpr", TINY, 4)
    with torch.no_grad():
        for dec, bias, expected in ((tpami, 2.0, 2.0), (cvpr, 1.0, 1.0), (cvpr, -3.0, -1.0)):
            dec.out.weight.zero_()
            dec.out.bias.fill_(bias)
            assert torch.allclose(dec(y), torch.full((1, 3, 16, 24), expected))


def test_cvpr_normalises_its_input() -> None:
    """The cvpr encoder sees (x − 0.5)/0.5: a mid-grey image is a zero input to conv1."""
    enc = ContentWeightedEncoder("cvpr", TINY, 4).eval()
    conv1 = enc.stem[0][0]
    seen: list[torch.Tensor] = []
    conv1.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        enc(torch.full((1, 3, 16, 16), 0.5))
    assert torch.equal(seen[0], torch.zeros(1, 3, 16, 16))


def test_tpami_parameter_count_matches_the_spec() -> None:
    """methods-spec §2.1: encoder 7.45 M, importance subnet 0.89 M, decoder 6.04 M (≈14.4 M)."""
    enc, dec = ContentWeightedEncoder("tpami", 1.0, 32), ContentWeightedDecoder("tpami", 1.0, 32)
    n_imp = _count(enc.importance)
    n_enc, n_dec = _count(enc) - n_imp, _count(dec)
    for got, spec in ((n_enc, 7.45e6), (n_imp, 0.89e6), (n_dec, 6.04e6), (n_enc + n_imp + n_dec, 14.4e6)):
        assert math.isclose(got, spec, rel_tol=0.05), (got, spec)


def test_cvpr_parameter_count_is_the_prototxt_arithmetic() -> None:
    """§2.2 with n = 64, conv weights + biases (ReLU has none)."""

    def conv(ci: int, co: int, k: int = 3) -> int:
        return ci * co * k * k + co

    def res(c: int) -> int:
        return conv(c, 128) + conv(128, c)

    enc_trunk = (conv(3, 128, 8) + res(128) + conv(128, 256, 4) + res(256) + conv(256, 256) + res(256)
                 + conv(256, 64, 1))  # fmt: skip
    imp = conv(256, 128) + conv(128, 1, 1)
    dec = (conv(64, 512) + res(512) + conv(512, 512) + res(512) + conv(128, 256) + res(256)
           + conv(16, 32) + conv(32, 3, 1))  # fmt: skip
    e, d = ContentWeightedEncoder("cvpr", 1.0, 64), ContentWeightedDecoder("cvpr", 1.0, 64)
    assert _count(e.importance) == imp
    assert _count(e) - imp == enc_trunk
    assert _count(d) == dec


@pytest.mark.parametrize("variant", VARIANTS)
def test_width_scales_the_network(variant: str) -> None:
    small, half = ContentWeightedEncoder(variant, TINY, 8), ContentWeightedEncoder(variant, 0.5, 8)
    assert _count(small) < _count(half)
    assert _count(ContentWeightedDecoder(variant, TINY, 8)) < _count(ContentWeightedDecoder(variant, 0.5, 8))


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"width": 0.0}, "width"), ({"width": -1.0}, "width"), ({"width": math.nan}, "width"),
     ({"latent_channels": 0}, "latent"), ({"variant": "eccv"}, "variant")],
)  # fmt: skip
def test_bad_params(kw: dict, match: str) -> None:
    for cls in (ContentWeightedEncoder, ContentWeightedDecoder):
        with pytest.raises(ConfigError, match=match):
            cls(**kw)


def test_registry_lists_both_and_validates_the_variant() -> None:
    registry = Registry()
    for kind in ("encoder", "decoder"):
        info = registry.get(kind, "content-weighted")
        assert info.source == "built-in"
        with pytest.raises(ConfigError, match="variant"):
            construct(info, {"variant": "eccv", "width": TINY})
        part = construct(info, {"variant": "cvpr", "width": 1, "latent_channels": 4})  # int width accepted
        assert part.variant == "cvpr"
    assert registry.get("encoder", "content_weighted").cls is ContentWeightedEncoder


def test_decoder_inherits_the_encoder_architecture() -> None:
    cfg = assemble_config(
        Registry(),
        components={"encoder": "content-weighted", "decoder": "content-weighted"},
        sets={"model": {"encoder": {"variant": "cvpr", "width": TINY, "latent_channels": 8}}},
    )
    dec = resolve_model(cfg["model"], Registry())["decoder"]
    assert (dec["variant"], dec["width"], dec["latent_channels"]) == ("cvpr", TINY, 8)
