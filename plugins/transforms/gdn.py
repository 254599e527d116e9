"""``gdn``: the analysis and synthesis transforms of Ballé et al. 2018 (CompressAI's
``bmshj2018-factorized``), layer for layer.

::

    x ─conv5↓2(3,N)─GDN─conv5↓2(N,N)─GDN─conv5↓2(N,N)─GDN─conv5↓2(N,M) ─► y   (M × H/16 × W/16)
    y ─deconv5↑2(M,N)─IGDN─deconv5↑2(N,N)─IGDN─deconv5↑2(N,N)─IGDN─deconv5↑2(N,3) ─► x̂

The modules are named ``g_a`` and ``g_s`` as in CompressAI, so a ``FactorizedPrior``'s weights
load into ``encoder.g_a``/``decoder.g_s`` unchanged. ``channels`` is N, ``latent_channels`` M
(CompressAI's qualities 1–5 use N=128, M=192).
"""

from __future__ import annotations

from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from codec_lab import hookimpl
from codec_lab.contracts import Decoder, Encoder
from codec_lab.errors import ConfigError

__all__ = ["GDNDecoder", "GDNEncoder"]


def _check(channels: int, latent_channels: int, who: str) -> None:
    for key, value in (("channels", channels), ("latent_channels", latent_channels)):
        if value < 1:
            raise ConfigError(f"{who}: {key} must be >= 1, got {value}")


PRESETS = {
    "quick": {"channels": 32, "latent_channels": 48},
    "cpu": {"channels": 64, "latent_channels": 96},
    "paper": {"channels": 128, "latent_channels": 192},
}
"""N/M per training preset (``paper``: CompressAI's bmshj2018 size)."""

class GDNEncoder(Encoder):
    """CompressAI's bmshj2018 analysis transform ``g_a`` (four 5×5 stride-2 convs, GDN).

    Args:
        channels: N, the width of the hidden layers.
        latent_channels: M, the channels of ``y``.
    """

    name = "gdn"
    summary = "Ballé 2018 analysis transform (CompressAI bmshj2018-factorized g_a)"
    version = "0.1"
    presets = PRESETS
    downsampling_factor = 16

    def __init__(self, channels: int = 128, latent_channels: int = 192) -> None:
        super().__init__()
        _check(channels, latent_channels, "gdn encoder")
        n, m = channels, latent_channels
        self.latent_channels = m
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m),
        )  # fmt: skip

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"y": self.g_a(x)}


class GDNDecoder(Decoder):
    """CompressAI's bmshj2018 synthesis transform ``g_s`` (four 5×5 stride-2 deconvs, IGDN).

    Args:
        channels: N, the width of the hidden layers.
        latent_channels: M, the channels of ``y``.
    """

    name = "gdn"
    summary = "Ballé 2018 synthesis transform (CompressAI bmshj2018-factorized g_s)"
    version = "0.1"
    presets = PRESETS

    def __init__(self, channels: int = 128, latent_channels: int = 192) -> None:
        super().__init__()
        _check(channels, latent_channels, "gdn decoder")
        n, m = channels, latent_channels
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
        )  # fmt: skip

    def forward(self, y: Tensor) -> Tensor:
        return self.g_s(y)


@hookimpl
def codec_register_encoders() -> list[type[Encoder]]:
    return [GDNEncoder]


@hookimpl
def codec_register_decoders() -> list[type[Decoder]]:
    return [GDNDecoder]
