"""``content-weighted``: Li et al.'s content-weighted encoder/decoder (TPAMI 2020, CVPR 2018).

``tpami`` (methods-spec §2.1; 3×3 convs with bias, per-channel PReLU "P", Dense = a densely
connected chain of conv pairs, D2S = depth-to-space = ``nn.PixelShuffle(2)``, A22)::

    x ─conv/2(3,64)─Dense(64)→256─P(conv/2)→128─Dense(128)→320─P(conv/2)→256 = down3
      down3 ─Dense(256)→640─P(conv 640,512)─conv(512,n)─sigmoid ─► y  (n × H/8 × W/8, in (0,1))
      down3 ─P(conv 256,128)─[P(conv)─P(conv)─+]×2─conv(128,1)─sigmoid ─► importance p

    y ─P(conv n,512)─Dense(512)→640─P(conv 640,256)─D2S→64─Dense(64)→320─P(conv 320,128)─D2S→32
      ─Dense(32)→256─P(conv 256,64)─D2S→16 = up3 ─P(conv)─P(conv)─P(conv)→64 = C
      ─conv(cat[up3, C] 80,3) ─► x̂

``cvpr`` (methods-spec §2.2; ReLU everywhere, Res(c) = conv3×3 c→128, conv3×3 128→c, add, ReLU)::

    (x−½)/½ ─conv8×8/4(3,128)─Res─conv4×4/2(128,256)─Res─conv(256,256)─Res = blk3
      blk3 ─conv1×1(256,n)─sigmoid ─► y          blk3 ─conv(256,128)─conv1×1(128,1)─sigmoid ─► p

    y ─conv(n,512)─Res─conv(512,512)─Res─D2S×2→128─conv(128,256)─Res─D2S×4→16─conv(16,32)
      ─conv1×1(32,3) ─► ·½+½ ─► x̂

``width`` multiplies every internal channel count (rounded, at least 4) so that a CPU preset
can train a narrow net; ``width=1`` is exactly the papers' network (tpami ≈ 14.4 M parameters).
The importance map p is returned as the encoder's ``"importance"`` feature for a rate plugin
(the ImpMap mask, §2.4, is the rate plugin's job, not the transform's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from codec_lab import hookimpl
from codec_lab.contracts import Decoder, Encoder
from codec_lab.errors import ConfigError

__all__ = ["ContentWeightedDecoder", "ContentWeightedEncoder"]

Variant = Literal["tpami", "cvpr"]
_VARIANTS = ("tpami", "cvpr")


def _check(variant: str, width: float, latent_channels: int) -> None:
    if variant not in _VARIANTS:
        raise ConfigError(f"content-weighted: variant must be one of {_VARIANTS}, got {variant!r}")
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ConfigError(f"content-weighted: width must be a finite number > 0, got {width!r}")
    if latent_channels < 1:
        raise ConfigError(f"content-weighted: latent_channels must be >= 1, got {latent_channels}")


def _scaler(width: float) -> Callable[[int], int]:
    """The channel-count map of a given ``width``: ``c -> max(4, round(c·width))``."""

    def w(c: int) -> int:
        return max(4, round(c * width))

    return w


def _conv(ci: int, co: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(ci, co, 3, stride=stride, padding=1)


def _pconv(ci: int, co: int, stride: int = 1) -> nn.Sequential:
    """conv3×3 + per-channel PReLU (Caffe's default PReLU has one slope per channel)."""
    return nn.Sequential(_conv(ci, co, stride), nn.PReLU(co))


def _rconv(ci: int, co: int, k: int = 3, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(ci, co, k, stride=stride, padding=k // 2 if padding is None else padding),
        nn.ReLU(inplace=True),
    )


# ---------------------------------------------------------------------------- tpami blocks
class _Dense(nn.Module):
    """TPAMI dense chain: a1→a2→a3, X=[a1,a3]; X+=[P(conv)→P(conv)] twice. Out: ``a + 3g``.

    Args:
        ci: input channels.
        a: channels of a1 (the first conv).
        g: channels of every later conv (the growth per pair).
    """

    def __init__(self, ci: int, a: int, g: int) -> None:
        super().__init__()
        self.a1, self.a2, self.a3 = _pconv(ci, a), _pconv(a, g), _pconv(g, g)
        self.b1, self.b2 = _pconv(a + g, g), _pconv(g, g)
        self.c1, self.c2 = _pconv(a + 2 * g, g), _pconv(g, g)
        self.out_channels = a + 3 * g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self.a1(x)
        h = torch.cat([a1, self.a3(self.a2(a1))], 1)
        h = torch.cat([h, self.b2(self.b1(h))], 1)
        return torch.cat([h, self.c2(self.c1(h))], 1)


class _PRes(nn.Module):
    """TPAMI importance-subnet residual block: P(conv), P(conv), add; no activation after."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_pconv(c, c), _pconv(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# ---------------------------------------------------------------------------- cvpr blocks
class _Res(nn.Module):
    """CVPR ``Res(c; h, c)``: conv3×3 c→h + ReLU, conv3×3 h→c + ReLU, add the input, ReLU."""

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_rconv(c, hidden), _rconv(hidden, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def _init(module: nn.Module, variant: str) -> None:
    # cvpr: Xavier, as in its prototxts (§2.2). tpami: the release has no fillers; Kaiming for
    # PReLU's initial slope keeps activations from shrinking along the 30-conv dense chains.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if variant == "cvpr":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, a=0.25, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------- encoder
PRESETS = {
    "quick": {"width": 0.125},
    "cpu": {"width": 0.25},
    "paper": {"variant": "tpami", "width": 1.0, "latent_channels": 32},
}
"""Network width per training preset (``paper``: the TPAMI network at full width)."""

class ContentWeightedEncoder(Encoder):
    """Content-weighted analysis transform with an importance-map head (methods-spec §2.1/§2.2).

    ``forward`` returns ``{"y": code in (0,1), "importance": p in (0,1)}``, both at 1/8
    resolution; ``importance`` has one channel.

    Args:
        variant: ``"tpami"`` (dense PReLU network, §2.1; takes x in [0,1]) or ``"cvpr"``
            (ReLU residual network, §2.2; normalises x to [-1,1] first).
        width: multiplier of every internal channel count (rounded, at least 4); 1.0 is the
            paper's network.
        latent_channels: code channels n (TPAMI: 32; CVPR: 64 or 128).
    """

    name = "content-weighted"
    summary = "Li et al. content-weighted encoder (sigmoid code + importance map, 1/8 resolution)"
    version = "0.1"
    presets = PRESETS
    downsampling_factor = 8
    features = ("y", "importance")  # the importance-map rate checks for "importance" at build time

    def __init__(self, variant: Variant = "tpami", width: float = 1.0, latent_channels: int = 32) -> None:
        super().__init__()
        _check(variant, width, latent_channels)
        self.variant = variant
        self.latent_channels = latent_channels
        w = _scaler(width)
        if variant == "tpami":
            d1 = _Dense(w(64), w(64), w(64))
            d2 = _Dense(w(128), w(128), w(64))
            d3 = _Dense(w(256), w(256), w(128))
            # down1 has no activation in the release (§2.1); down2/down3 do.
            self.stem = nn.Sequential(
                _conv(3, w(64), 2), d1,
                _pconv(d1.out_channels, w(128), 2), d2,
                _pconv(d2.out_channels, w(256), 2),
            )  # fmt: skip
            self.trunk = nn.Sequential(
                d3, _pconv(d3.out_channels, w(512)), _conv(w(512), latent_channels), nn.Sigmoid()
            )
            self.importance = nn.Sequential(
                _pconv(w(256), w(128)), _PRes(w(128)), _PRes(w(128)), _conv(w(128), 1), nn.Sigmoid()
            )
        else:
            self.stem = nn.Sequential(
                _rconv(3, w(128), k=8, stride=4, padding=2), _Res(w(128), w(128)),
                _rconv(w(128), w(256), k=4, stride=2, padding=1), _Res(w(256), w(128)),
                _rconv(w(256), w(256)), _Res(w(256), w(128)),
            )  # fmt: skip
            self.trunk = nn.Sequential(nn.Conv2d(w(256), latent_channels, 1), nn.Sigmoid())
            self.importance = nn.Sequential(_rconv(w(256), w(128)), nn.Conv2d(w(128), 1, 1), nn.Sigmoid())
        _init(self, variant)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode images.

        Args:
            x: (B, 3, H, W) images in [0, 1], H and W multiples of 8.

        Returns:
            ``"y"``: (B, latent_channels, H/8, W/8) code in (0, 1); ``"importance"``:
            (B, 1, H/8, W/8) importance map in (0, 1).
        """
        if self.variant == "cvpr":
            x = (x - 0.5) / 0.5  # the CVPR model was trained on (x − 127.5)/127.5
        h = self.stem(x)  # tpami: down3 after its PReLU; cvpr: blk3
        return {"y": self.trunk(h), "importance": self.importance(h)}


# ---------------------------------------------------------------------------- decoder
class ContentWeightedDecoder(Decoder):
    """Content-weighted synthesis transform (methods-spec §2.1/§2.2), depth-to-space upsampling.

    The output is not clamped (``Codec.decompress`` clamps). tpami returns its last conv
    directly: the release scales it by 255 only because its input was divided by 255. cvpr
    maps its [-1,1]-domain output back to [0,1] (``·0.5 + 0.5``).

    Args:
        variant: ``"tpami"`` or ``"cvpr"`` (must match the encoder's).
        width: multiplier of every internal channel count (rounded, at least 4).
        latent_channels: code channels n (set from the encoder by the builder).
    """

    name = "content-weighted"
    summary = "Li et al. content-weighted decoder (depth-to-space upsampling)"
    version = "0.1"
    presets = PRESETS

    def __init__(self, variant: Variant = "tpami", width: float = 1.0, latent_channels: int = 32) -> None:
        super().__init__()
        _check(variant, width, latent_channels)
        self.variant = variant
        w = _scaler(width)
        if variant == "tpami":
            # Each stage ends with P(conv → 4·s) + PixelShuffle(2) → s channels (s = 64, 32, 16).
            s0, s1, s2 = w(64), w(32), w(16)
            d0 = _Dense(w(512), w(256), w(128))
            d1 = _Dense(s0, w(128), w(64))
            d2 = _Dense(s1, w(64), w(64))
            self.body = nn.Sequential(
                _pconv(latent_channels, w(512)), d0, _pconv(d0.out_channels, 4 * s0), nn.PixelShuffle(2),
                d1, _pconv(d1.out_channels, 4 * s1), nn.PixelShuffle(2),
                d2, _pconv(d2.out_channels, 4 * s2), nn.PixelShuffle(2),
            )  # fmt: skip
            self.refine = nn.Sequential(_pconv(s2, w(64)), _pconv(w(64), w(64)), _pconv(w(64), w(64)))
            self.out = _conv(s2 + w(64), 3)
        else:
            s1, s2 = w(128), w(16)  # channels after depth-to-space ×2 and ×4
            self.body = nn.Sequential(
                _rconv(latent_channels, 4 * s1), _Res(4 * s1, w(128)),
                _rconv(4 * s1, 4 * s1), _Res(4 * s1, w(128)), nn.PixelShuffle(2),
                _rconv(s1, 16 * s2), _Res(16 * s2, w(128)), nn.PixelShuffle(4),
                _rconv(s2, w(32)),
            )  # fmt: skip
            self.refine = nn.Identity()
            self.out = nn.Conv2d(w(32), 3, 1)
        _init(self, variant)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Decode a (masked, quantized) code.

        Args:
            y_hat: (B, latent_channels, h, w) decoder input.

        Returns:
            (B, 3, 8h, 8w) images, nominally in [0, 1], not clamped.
        """
        h = self.body(y_hat)
        if self.variant == "cvpr":
            return self.out(h) * 0.5 + 0.5
        # The out conv sees the 16-channel depth-to-space output (up3) next to the refined C.
        return self.out(torch.cat([h, self.refine(h)], 1))


@hookimpl
def codec_register_encoders() -> list[type[Encoder]]:
    return [ContentWeightedEncoder]


@hookimpl
def codec_register_decoders() -> list[type[Decoder]]:
    return [ContentWeightedDecoder]
