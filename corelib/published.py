"""Published Kodak rate-distortion curves, drawn beside measured ones as dashed lines.

These numbers were *not* measured here: they are transcribed from their sources (below), so
every report labels them "published". Each point is the mean over the 24 Kodak images.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_lab.corelib.errors import ConfigError, did_you_mean
from codec_lab.corelib.results import CodecDescription, Results

__all__ = ["PUBLISHED", "PublishedCurve", "published"]


@dataclass(frozen=True)
class PublishedCurve:
    """One published curve.

    Attributes:
        key: file-safe id.
        label: legend entry.
        source: where the numbers come from.
        rate_note: what its bpp is (a real file size, or an estimate).
        points: (bpp, PSNR dB, MS-SSIM) per point.
    """

    key: str
    label: str
    source: str
    rate_note: str
    points: tuple[tuple[float, float, float], ...]

    def results(self) -> list[Results]:
        """The points as means-only :class:`Results`."""
        desc = CodecDescription(name=self.label, summary=f"published: {self.source}")
        return [Results(codec=desc, means={"bpp": b, "psnr": p, "ms-ssim": m}) for b, p, m in self.points]


_COMPRESSAI = (
    "CompressAI results/image/8bit-decoded/kodak (bmshj2018-factorized, MSE, q1–q8; PSNR on "
    "8-bit reconstructions), research note compressai-and-peers.md §1h"
)
_CWIC = "limuhit/CWIC results/kodak.txt (TPAMI 2020 content-weighted), methods-spec.md §3.1"

PUBLISHED: dict[str, tuple[PublishedCurve, ...]] = {
    "compressai-factorized": (
        PublishedCurve(
            "compressai-factorized", "bmshj2018-factorized (CompressAI, published)", _COMPRESSAI,
            "real rANS bitstreams",
            ((0.1226, 26.91, 0.9100), (0.1885, 28.21, 0.9360), (0.2878, 29.61, 0.9555),
             (0.4404, 31.27, 0.9704), (0.6481, 32.94, 0.9806), (0.9670, 35.36, 0.9879),
             (1.3512, 37.36, 0.9922), (1.8333, 39.57, 0.9951)),
        ),
    ),
    "cwic": (
        PublishedCurve(
            "cwic-mse", "CWIC TPAMI, MSE-trained (published)", _CWIC,
            "the paper's cross-entropy estimate, not a file size",
            ((0.1052, 27.7708, 0.9100), (0.1201, 28.1946, 0.9202), (0.1768, 29.3271, 0.9424),
             (0.2853, 30.8446, 0.9614), (0.4412, 32.6121, 0.9764), (0.5872, 33.7013, 0.9824),
             (0.7524, 34.5554, 0.9868)),
        ),
        PublishedCurve(
            "cwic-msssim", "CWIC TPAMI, MS-SSIM-trained (published)", _CWIC,
            "the paper's cross-entropy estimate, not a file size",
            ((0.1132, 26.2637, 0.9308), (0.1726, 27.6892, 0.9540), (0.2414, 28.5196, 0.9656),
             (0.3381, 29.2262, 0.9739), (0.5154, 30.4604, 0.9838), (0.6719, 31.4692, 0.9892),
             (0.7909, 32.5287, 0.9909)),
        ),
    ),
}  # fmt: skip
"""``--reference`` name → its curves."""


def published(name: str) -> tuple[PublishedCurve, ...]:
    """The published curves of ``name``, or a clear error with the valid names."""
    if name not in PUBLISHED:
        raise ConfigError(f"unknown reference {name!r}", f"{did_you_mean(name, PUBLISHED)}")
    return PUBLISHED[name]
