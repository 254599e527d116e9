"""Classical codecs through Pillow — JPEG, WebP, JPEG 2000, AVIF — measured like ours.

Each image is written to a real file and decoded from it; ``bpp`` is that file's bytes × 8 /
pixels, quality is measured on the 8-bit decode with the same metrics as the learned codecs,
and the result is a :class:`~codec_lab.corelib.results.Results`, so every renderer shows them
beside learned codecs. A codec's setting (quality, or JPEG 2000's compression ratio) is its
declared report column.

Two ways to pick the setting: one fixed setting for every image (a point of a sweep), or per
image the highest-quality setting whose file is no larger than a byte budget (e.g. another
codec's file for that image: a comparison "at the same bpp").
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image, features

from codec_lab.corelib.contracts.base import ReportColumn
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.images import load_image, to_uint8
from codec_lab.corelib.metrics import quality
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.corelib.progress import NullProgress, Progress
from codec_lab.corelib.results import CodecDescription, Results

__all__ = ["CODECS", "ClassicalCodec", "classical_codec", "evaluate_classical", "sweep"]

_QUALITY = ReportColumn("quality", "quality", ".0f", "the Pillow encoder's quality setting")
_RATIO = ReportColumn("ratio", "ratio", ".1f", "JPEG 2000 compression ratio (larger: smaller file)")


@dataclass(frozen=True)
class ClassicalCodec:
    """A Pillow image format used as a lossy codec.

    Attributes:
        name: key (``jpeg``, ``webp``, ``jpeg2000``, ``avif``).
        pillow_format: Pillow's format name.
        feature: Pillow feature that must be compiled in (``PIL.features.check``).
        suffix: file suffix of the coded files.
        setting: the declared column holding each image's setting.
        low, high: range of the setting.
        sweep: default settings of an RD curve.
        options: extra keyword arguments of ``Image.save``.
    """

    name: str
    pillow_format: str
    feature: str
    suffix: str
    setting: ReportColumn
    low: float
    high: float
    sweep: tuple[float, ...]
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def larger_is_smaller(self) -> bool:
        """Whether a larger setting gives a smaller file (a compression ratio)."""
        return self.setting.key == "ratio"

    def available(self) -> bool:
        """Whether this Pillow can write the format."""
        return bool(features.check(self.feature))

    def encode(self, im: Image.Image, setting: float) -> bytes:
        """The coded bytes of ``im`` at ``setting``."""
        buf = io.BytesIO()
        opts = dict(self.options)
        if self.larger_is_smaller:  # Pillow: quality_layers in "rates" mode are compression ratios
            im.save(buf, self.pillow_format, quality_mode="rates", quality_layers=[setting], **opts)
        else:
            im.save(buf, self.pillow_format, quality=int(setting), **opts)
        return buf.getvalue()

    def describe(self, parameters: dict[str, Any]) -> CodecDescription:
        """Description of results of this codec with ``parameters`` (how settings were chosen)."""
        return CodecDescription(
            name=self.name,
            summary=f"Pillow {PIL.__version__} {self.pillow_format}, real files",
            components={"codec": f"pillow-{self.pillow_format.lower()}@{PIL.__version__}"},
            parameters={**dict(self.options), **parameters},
            columns=(self.setting,),
        )


CODECS: dict[str, ClassicalCodec] = {
    c.name: c
    for c in (
        ClassicalCodec("jpeg", "JPEG", "jpg", ".jpg", _QUALITY, 1, 95,
                       (5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 95),
                       (("subsampling", "4:2:0"), ("optimize", True))),  # fmt: skip
        ClassicalCodec("webp", "WEBP", "webp", ".webp", _QUALITY, 0, 100,
                       (0, 5, 10, 20, 30, 40, 50, 60, 75, 90)),  # fmt: skip
        ClassicalCodec("jpeg2000", "JPEG2000", "jpg_2000", ".jp2", _RATIO, 1, 2000,
                       (400, 200, 120, 80, 60, 48, 32, 24, 16, 12), (("irreversible", True),)),  # fmt: skip
        ClassicalCodec("avif", "AVIF", "avif", ".avif", _QUALITY, 0, 100,
                       (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)),  # fmt: skip
    )
}
"""The built-in classical codecs by name."""


def classical_codec(name: str) -> ClassicalCodec:
    """The classical codec ``name``, refused with the valid names or when Pillow lacks it."""
    if name not in CODECS:
        raise ConfigError(f"unknown classical codec {name!r}", f"valid: {', '.join(CODECS)}")
    codec = CODECS[name]
    if not codec.available():
        raise ConfigError(f"this Pillow ({PIL.__version__}) cannot write {codec.pillow_format}",
                          "install a Pillow build with that format (AVIF: Pillow >= 11.3)")  # fmt: skip
    return codec


def _within(codec: ClassicalCodec, im: Image.Image, budget: int) -> float:
    """The highest-quality setting whose file has at most ``budget`` bytes (sizes only; the
    lowest-quality setting when none fits)."""
    if codec.larger_is_smaller:  # continuous: bisect the ratio geometrically
        lo, hi = codec.low, codec.high
        best = hi
        for _ in range(14):
            mid = (lo * hi) ** 0.5
            if len(codec.encode(im, mid)) > budget:
                lo = mid
            else:
                hi = best = mid
        return best
    lo, hi = int(codec.low), int(codec.high)
    best = lo
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(codec.encode(im, mid)) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return float(best)


def _code(codec: ClassicalCodec, path: Path, setting: float | None, budget: int | None, file: Path,
          overwrite: bool) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """Code one image to ``file`` at ``setting``, or at the best setting within ``budget`` bytes."""
    x, notice = load_image(path)
    im = Image.fromarray(to_uint8(x))
    s = setting if setting is not None else _within(codec, im, int(budget or 0))
    t0 = time.perf_counter()
    data = codec.encode(im, s)
    with atomic_output(file, overwrite=overwrite) as part:
        part.write_bytes(data)
    enc_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with Image.open(file) as coded:
        rec = np.asarray(coded.convert("RGB"), dtype=np.uint8).copy()
    dec_s = time.perf_counter() - t1
    x_hat = torch.from_numpy(rec).permute(2, 0, 1).float().div(255.0)[None]
    h, w = x.shape[-2:]
    size = file.stat().st_size
    row = {"image": path.name, "height": h, "width": w, "bytes": size, "bpp": size * 8 / (h * w),
           **quality(x, x_hat), "enc_s": enc_s, "dec_s": dec_s, codec.setting.key: float(s)}  # fmt: skip
    return row, notice


def evaluate_classical(
    codec: ClassicalCodec | str,
    images: Sequence[Path],
    setting: float | None = None,
    max_bytes: Sequence[int] | None = None,
    keep_dir: Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Results:
    """Code every image to a real file with a classical codec and measure it.

    Args:
        codec: the codec or its name.
        images: image files.
        setting: one setting for every image (quality, or ratio for JPEG 2000).
        max_bytes: instead, per image, a byte budget: the highest-quality setting whose file
            fits it (the lowest-quality setting when none does — its bpp then shows it).
        keep_dir: keep the files (``NAME.<suffix>``, e.g. ``a.png.jpg``) here (default: a
            temporary folder, removed afterwards).
        overwrite: replace files already in ``keep_dir``.
        progress: receives one unit per image.
    """
    c = classical_codec(codec) if isinstance(codec, str) else codec
    if (setting is None) == (max_bytes is None):
        raise ValueError("give either setting or max_bytes")
    if max_bytes is not None and len(max_bytes) != len(images):
        raise ValueError(f"{len(max_bytes)} byte budgets for {len(images)} images")
    names = [f"{p.name}{c.suffix}" for p in images]
    if keep_dir is not None:
        for n in names:
            check_output(Path(keep_dir) / n, overwrite)
    chosen = setting if setting is not None else "highest quality within a byte budget per image"
    result = Results(codec=c.describe({c.setting.key: chosen}))
    progress = progress or NullProgress()
    progress.start(f"{c.name} (images)", len(images))
    with tempfile.TemporaryDirectory(prefix="codec-classical-") as tmp:
        out_dir = Path(keep_dir) if keep_dir is not None else Path(tmp)
        for i, (path, name) in enumerate(zip(images, names, strict=True)):
            budget = None if max_bytes is None else max_bytes[i]
            # A temporary folder holds only our own files: replacing them is safe.
            row, notice = _code(c, path, setting, budget, out_dir / name, overwrite or keep_dir is None)
            if notice:
                result.notices.append(notice)
            result.rows.append(row)
            progress.advance(1, bpp=row["bpp"], psnr=row["psnr"])
    progress.stop()
    return result


def sweep(
    codec: ClassicalCodec | str,
    images: Sequence[Path],
    settings: Sequence[float] | None = None,
    progress: Progress | None = None,
) -> list[Results]:
    """An RD curve: one :class:`Results` per setting (default: the codec's own sweep)."""
    c = classical_codec(codec) if isinstance(codec, str) else codec
    out = []
    for s in settings if settings is not None else c.sweep:
        out.append(evaluate_classical(c, images, setting=s, progress=progress))
    return out
