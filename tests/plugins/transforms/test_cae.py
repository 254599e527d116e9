"""The CAE encoder/decoder pair."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.errors import ConfigError
from codec_lab.plugins.transforms.cae import CAEDecoder, CAEEncoder, _ResBlock


@pytest.mark.parametrize("hw", [(16, 16), (48, 40), (24, 64)])
def test_shapes(hw: tuple[int, int]) -> None:
    enc, dec = CAEEncoder(8, 1, 5).eval(), CAEDecoder(8, 1, 5).eval()
    with torch.no_grad():
        y = enc(torch.rand(2, 3, *hw))["y"]
        x_hat = dec(y)
    assert y.shape == (2, 5, hw[0] // 8, hw[1] // 8)
    assert x_hat.shape == (2, 3, *hw)
    assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1


def test_blocks_add_parameters() -> None:
    n0 = sum(p.numel() for p in CAEEncoder(8, 0, 4).parameters())
    n2 = sum(p.numel() for p in CAEEncoder(8, 2, 4).parameters())
    assert n2 > n0


def test_residual_block_starts_as_identity_then_prelu() -> None:
    block = _ResBlock(8).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(block(x), block.act(x))


@pytest.mark.parametrize(("kw", "match"), [({"channels": 6}, "channels"), ({"channels": 0}, "channels"),
                                           ({"blocks": -1}, "blocks"), ({"latent_channels": 0}, "latent")])
def test_bad_params(kw: dict, match: str) -> None:
    for cls in (CAEEncoder, CAEDecoder):
        with pytest.raises(ConfigError, match=match):
            cls(**kw)


def test_output_bn_switch() -> None:
    with_bn, without = CAEDecoder(8, 0, 4), CAEDecoder(8, 0, 4, output_bn=False)
    assert isinstance(with_bn.net[-1][-1], torch.nn.BatchNorm2d)
    last = without.net[-1]
    assert isinstance(last, torch.nn.Conv2d) and last.bias is not None and last.out_channels == 3
    without.train()
    x_hat = without(torch.zeros(2, 4, 3, 3) + torch.randn(2, 4, 1, 1))
    x_hat = x_hat.detach()
    assert x_hat.shape == (2, 3, 24, 24) and 0 <= float(x_hat.min()) <= float(x_hat.max()) <= 1
