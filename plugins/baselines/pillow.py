"""``jpeg``, ``webp``, ``jpeg2000``, ``avif``: classical codecs through Pillow.

Each codes with Pillow's own encoder into a complete file (what ``Image.save`` writes) and
decodes the file's bytes with Pillow's decoder, converted to 8-bit RGB. Settings:

* ``jpeg``: quality 1–95, 4:2:0 chroma subsampling, optimized Huffman tables;
* ``webp``: quality 0–100 (lossy);
* ``jpeg2000``: compression ratio 1–2000 (OpenJPEG, ``quality_mode="rates"``), the
  irreversible 9/7 wavelet;
* ``avif``: quality 0–100 (needs a Pillow with AVIF, >= 11.3).
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import PIL
from PIL import Image, features

from codec_lab import hookimpl
from codec_lab.contracts import Baseline, ReportColumn

__all__ = ["AVIF", "JPEG", "JPEG2000", "PillowBaseline", "WebP"]

QUALITY = ReportColumn("quality", "quality", ".0f", "the Pillow encoder's quality setting")
RATIO = ReportColumn("ratio", "ratio", ".1f", "JPEG 2000 compression ratio (larger: smaller file)")


class PillowBaseline(Baseline):
    """A Pillow image format used as a lossy codec.

    Class attributes (beside the contract's):
        pillow_format: Pillow's format name (``Image.save(..., format)``).
        feature: the ``PIL.features`` name that must be compiled in.
        codec_library: the name of the library behind the feature (shown with its version).
        save_options: extra keyword arguments of ``Image.save``.
    """

    pillow_format: ClassVar[str] = ""
    feature: ClassVar[str] = ""
    codec_library: ClassVar[str] = ""
    save_options: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def unavailable(self) -> str | None:
        if features.check(self.feature):
            return None
        return (f"this Pillow ({PIL.__version__}) cannot write {self.pillow_format}: install a Pillow "
                f"built with {self.codec_library}")

    def encode(self, image: np.ndarray, setting: float) -> bytes:
        im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
        buf = io.BytesIO()
        im.save(buf, self.pillow_format, **self._setting_options(setting), **dict(self.save_options))
        return buf.getvalue()

    def _setting_options(self, setting: float) -> dict[str, Any]:
        return {"quality": int(setting)}

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as coded:
            coded.load()
            if coded.format != self.pillow_format:
                raise ValueError(f"{self.name}: the data is {coded.format}, not {self.pillow_format}")
            return np.asarray(coded.convert("RGB"), dtype=np.uint8).copy()

    def library(self) -> str:
        version = features.version(self.feature)
        lib = f" ({self.codec_library} {version})" if version else ""
        return f"Pillow {PIL.__version__} {self.pillow_format}{lib}"

    def options(self) -> dict[str, Any]:
        return dict(self.save_options)


class JPEG(PillowBaseline):
    """JPEG (baseline DCT), 4:2:0, optimized Huffman tables."""

    name = "jpeg"
    summary = "JPEG through Pillow (libjpeg): 4:2:0, optimized Huffman tables"
    version = "0.1"
    setting = QUALITY
    sweep = (5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 95)
    low, high = 1, 95
    suffix = ".jpg"
    pillow_format, feature, codec_library = "JPEG", "jpg", "libjpeg"
    save_options = (("subsampling", "4:2:0"), ("optimize", True))

    def library(self) -> str:
        if features.check_feature("libjpeg_turbo"):
            return f"Pillow {PIL.__version__} JPEG (libjpeg-turbo {features.version('libjpeg_turbo')})"
        return super().library()


class WebP(PillowBaseline):
    """Lossy WebP."""

    name = "webp"
    summary = "lossy WebP through Pillow (libwebp)"
    version = "0.1"
    setting = QUALITY
    sweep = (0, 5, 10, 20, 30, 40, 50, 60, 75, 90)
    low, high = 0, 100
    suffix = ".webp"
    pillow_format, feature, codec_library = "WEBP", "webp", "libwebp"


class JPEG2000(PillowBaseline):
    """JPEG 2000 with the irreversible (9/7) wavelet, set by compression ratio."""

    name = "jpeg2000"
    summary = "JPEG 2000 through Pillow (OpenJPEG): irreversible wavelet, set by compression ratio"
    version = "0.1"
    setting = RATIO
    sweep = (400, 200, 120, 80, 60, 48, 32, 24, 16, 12)
    low, high = 1, 2000
    larger_is_smaller = True
    suffix = ".jp2"
    pillow_format, feature, codec_library = "JPEG2000", "jpg_2000", "OpenJPEG"
    save_options = (("irreversible", True),)

    def _setting_options(self, setting: float) -> dict[str, Any]:
        # Pillow: in "rates" mode, quality_layers are compression ratios.
        return {"quality_mode": "rates", "quality_layers": [setting]}


class AVIF(PillowBaseline):
    """AVIF (AV1 intra)."""

    name = "avif"
    summary = "AVIF through Pillow (libavif; Pillow >= 11.3)"
    version = "0.1"
    setting = QUALITY
    sweep = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
    low, high = 0, 100
    suffix = ".avif"
    pillow_format, feature, codec_library = "AVIF", "avif", "libavif"

    def unavailable(self) -> str | None:
        if features.check(self.feature):
            return None
        return (f"this Pillow ({PIL.__version__}) cannot write AVIF: install Pillow >= 11.3 "
                "built with libavif (the PyPI wheels are)")


@hookimpl
def codec_register_baselines() -> list[type[Baseline]]:
    return [JPEG, WebP, JPEG2000, AVIF]
