"""``cae``: the CAE-ADMM residual compressive autoencoder (Zhao 2019, final ``CAEP`` variant).

::

    x ─ConvSame(3,c/4)─PReLU─ConvDown(c/4,c/2)─PReLU─ConvSame(c/2,c)─PReLU─[ResBlock(c)×n]
      ─ConvDown(c,c/2)─ConvDown(c/2,c/4)─ConvSame(c/4,L) ─► y   (L × H/8 × W/8, linear + BN)

    y ─SubPix(L,c/4,1)─SubPix(c/4,c/2,2)─SubPix(c/2,c,2)─PReLU─[ResBlock(c)×n]
      ─SubPix(c,c/2,1)─PReLU─SubPix(c/2,c/4,2)─PReLU─SubPix(c/4,3,1)─(tanh+1)/2 ─► x̂

With the paper's sizes (``channels=128, blocks=15``) this is methods-spec §1.2; ``latent_channels``
is the paper's ``final_len``, its fine rate knob (16 ≈ "bpp 0.5", 32 ≈ "bpp 1.0").
Upsampling is 1×1 conv + BN + PixelShuffle, as in every version of the authors' code (A5).
"""

from __future__ import annotations

import torch
from torch import nn

from codec_lab import hookimpl
from codec_lab.contracts import Decoder, Encoder
from codec_lab.errors import ConfigError

__all__ = ["CAEDecoder", "CAEEncoder"]


def _conv_same(ci: int, co: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(ci, co, 3, bias=False), nn.BatchNorm2d(co)
    )


def _conv_down(ci: int, co: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(2), nn.Conv2d(ci, co, 5, stride=2, bias=False), nn.BatchNorm2d(co)
    )


def _subpix(ci: int, co: int, r: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(ci, co * r * r, 1, bias=False), nn.BatchNorm2d(co * r * r)]
    if r > 1:
        layers.append(nn.PixelShuffle(r))
    return nn.Sequential(*layers)


class _ResBlock(nn.Module):
    """1×1 → 3×3 → 1×1 (no channel reduction), last BN γ initialised to 0, PReLU after add."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.PReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.PReLU(),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
        )  # fmt: skip
        nn.init.zeros_(self.body[-1].weight)  # the block starts as the identity
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")


def _check(channels: int, blocks: int, latent_channels: int) -> None:
    if channels < 4 or channels % 4:
        raise ConfigError(f"cae: channels must be a positive multiple of 4, got {channels}")
    if blocks < 0:
        raise ConfigError(f"cae: blocks must be >= 0, got {blocks}")
    if latent_channels < 1:
        raise ConfigError(f"cae: latent_channels must be >= 1, got {latent_channels}")


ENCODER_PRESETS = {
    "quick": {"channels": 32, "blocks": 1, "latent_channels": 16},
    "cpu": {"channels": 64, "blocks": 2, "latent_channels": 32},
    "paper": {"channels": 128, "blocks": 15, "latent_channels": 16},
}
"""Sizes per training preset (``paper``: the CAE-ADMM network)."""

DECODER_PRESETS = {
    "quick": {"channels": 32, "blocks": 1, "output_bn": False},
    "cpu": {"channels": 64, "blocks": 2, "output_bn": False},
    "paper": {"channels": 128, "blocks": 15},
}
"""The decoder's sizes (inherited from a ``cae`` encoder instead when both are ``cae``). Without
BatchNorm on the output the quick and cpu recipes gained ~3 dB in a 300-step test
(bench/RESULTS.md)."""

class CAEEncoder(Encoder):
    """CAE-ADMM analysis transform (methods-spec §1.2), widths configurable.

    Args:
        channels: trunk width c (paper: 128); the outer stages use c/4 and c/2.
        blocks: residual blocks n at 1/2 resolution (paper: 15).
        latent_channels: latent channels L, the paper's ``final_len`` (paper: 16 or 32).
    """

    name = "cae"
    summary = "CAE-ADMM residual conv encoder (BN + PReLU, 1/8 resolution latent)"
    version = "0.1"
    presets = ENCODER_PRESETS
    downsampling_factor = 8
    min_input_size = 16  # the last ConvDown's ReflectionPad2d(2) needs a 4-px feature map

    def __init__(self, channels: int = 128, blocks: int = 15, latent_channels: int = 16) -> None:
        super().__init__()
        _check(channels, blocks, latent_channels)
        c = channels
        self.latent_channels = latent_channels
        self.net = nn.Sequential(
            _conv_same(3, c // 4), nn.PReLU(),
            _conv_down(c // 4, c // 2), nn.PReLU(),
            _conv_same(c // 2, c), nn.PReLU(),
            *[_ResBlock(c) for _ in range(blocks)],
            _conv_down(c, c // 2),
            _conv_down(c // 2, c // 4),
            _conv_same(c // 4, latent_channels),
        )  # fmt: skip
        _init(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.net(x)}


class CAEDecoder(Decoder):
    """CAE-ADMM synthesis transform (methods-spec §1.2): sub-pixel upsampling, (tanh+1)/2.

    Args:
        channels: trunk width c (paper: 128).
        blocks: residual blocks n (paper: 15).
        latent_channels: latent channels L (set from the encoder by the builder).
        output_bn: end with the authors' 1×1 conv + BatchNorm (True) or a 1×1 conv with a
            bias (False). Measured on this machine (300 steps, bsds500, no rate): without the
            output BN the decoder learns colour faster (kodim02 22.9 vs 21.1 dB).
    """

    name = "cae"
    summary = "CAE-ADMM residual decoder (1x1 conv + PixelShuffle upsampling)"
    version = "0.1"
    presets = DECODER_PRESETS

    def __init__(
        self, channels: int = 128, blocks: int = 15, latent_channels: int = 16, output_bn: bool = True
    ) -> None:
        super().__init__()
        _check(channels, blocks, latent_channels)
        c = channels
        # A batch-normalised output pins each colour channel's batch mean during training.
        last = _subpix(c // 4, 3, 1) if output_bn else nn.Conv2d(c // 4, 3, 1, bias=True)
        self.net = nn.Sequential(
            _subpix(latent_channels, c // 4, 1),
            _subpix(c // 4, c // 2, 2),
            _subpix(c // 2, c, 2), nn.PReLU(),
            *[_ResBlock(c) for _ in range(blocks)],
            _subpix(c, c // 2, 1), nn.PReLU(),
            _subpix(c // 2, c // 4, 2), nn.PReLU(),
            last,
        )  # fmt: skip
        _init(self)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.net(y_hat)) + 1) / 2


@hookimpl
def codec_register_encoders() -> list[type[Encoder]]:
    return [CAEEncoder]


@hookimpl
def codec_register_decoders() -> list[type[Decoder]]:
    return [CAEDecoder]
