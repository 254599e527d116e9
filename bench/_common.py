"""Shared helpers for the benchmarks: image sets, classical codecs through Pillow, tables.

Every bpp here is the byte length of a real encoded file × 8 / pixels.
"""

from __future__ import annotations

import io
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from codec_lab.corelib.images import list_images, load_image
from codec_lab.corelib.metrics import quality

console = Console(width=200)  # wide: tables are read from logs too

# Pillow format name and the quality range to search for each classical baseline.
CLASSIC = {
    "jpeg": ("JPEG", 1, 95),
    "webp": ("WEBP", 0, 100),
    "jpeg2000": ("JPEG2000", None, None),  # rate set by compression ratio, not quality
    "avif": ("AVIF", 0, 100),
}


def kodak(limit: int | None = None) -> list[Path]:
    """Kodak images from ``$CODEC_DATA/kodak`` (default ``../shared/data``)."""
    root = Path(os.environ.get("CODEC_DATA", "../shared/data")) / "kodak"
    images = list_images(root)
    return images[:limit] if limit else images


def machine() -> str:
    """One line naming the machine the numbers come from."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")  # fmt: skip


@dataclass
class ClassicPoint:
    """One image coded by a classical codec at one setting."""

    codec: str
    setting: float
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    ssim: float
    enc_s: float
    dec_s: float


def _save(im: Image.Image, codec: str, setting: float) -> bytes:
    fmt, _, _ = CLASSIC[codec]
    buf = io.BytesIO()
    if codec == "jpeg2000":
        # Pillow's quality_layers with quality_mode="rates" is a compression ratio.
        im.save(buf, fmt, quality_mode="rates", quality_layers=[setting], irreversible=True)
    elif codec == "jpeg":
        im.save(buf, fmt, quality=int(setting), subsampling="4:2:0", optimize=True)
    else:
        im.save(buf, fmt, quality=int(setting))
    return buf.getvalue()


def classic_point(path: Path, codec: str, setting: float) -> ClassicPoint:
    """Encode ``path`` with ``codec`` at ``setting`` (quality, or ratio for JPEG 2000)."""
    x, _ = load_image(path)
    im = Image.open(path).convert("RGB")
    t0 = time.perf_counter()
    data = _save(im, codec, setting)
    enc_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rec = Image.open(io.BytesIO(data)).convert("RGB")
    rec.load()
    dec_s = time.perf_counter() - t1
    x_hat = torch.from_numpy(np.asarray(rec, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    q = quality(x, x_hat)
    h, w = x.shape[-2:]
    return ClassicPoint(codec, setting, len(data), len(data) * 8 / (h * w), q["psnr"], q["ms-ssim"],
                        q["ssim"], enc_s, dec_s)  # fmt: skip


def _size(im: Image.Image, codec: str, setting: float) -> int:
    return len(_save(im, codec, setting))


def classic_at_bpp(path: Path, codec: str, target_bpp: float) -> ClassicPoint:
    """The setting of ``codec`` whose file is closest to ``target_bpp`` without exceeding it
    when possible (bisection over quality, or over the ratio for JPEG 2000, on file sizes
    alone; quality is measured once, on the chosen file)."""
    im = Image.open(path).convert("RGB")
    budget = target_bpp * im.size[0] * im.size[1] / 8  # bytes
    if codec == "jpeg2000":
        lo, hi = 1.0, 2000.0  # compression ratio: larger is smaller
        best = hi
        for _ in range(14):
            mid = (lo * hi) ** 0.5
            if _size(im, codec, mid) > budget:
                lo = mid
            else:
                hi = best = mid
        return classic_point(path, codec, best)
    _, qlo, qhi = CLASSIC[codec]
    lo, hi, best = qlo, qhi, qlo
    while lo <= hi:
        mid = (lo + hi) // 2
        if _size(im, codec, mid) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return classic_point(path, codec, best)


def mean(values: Sequence[float]) -> float:
    """Mean, ignoring NaNs."""
    vals = [v for v in values if v == v]
    return sum(vals) / len(vals) if vals else float("nan")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Print a rich table and return the same table as Markdown (for RESULTS.md)."""
    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*[str(v) for v in r])
    console.print(table)
    md = [f"| {' | '.join(columns)} |", f"|{'|'.join('---' for _ in columns)}|"]
    md += [f"| {' | '.join(str(v) for v in r)} |" for r in rows]
    return "\n".join(md)
