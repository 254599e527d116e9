"""Baselines (classical codecs, registered by plugins) measured like ours.

Each image is written to a real file holding exactly the bytes the baseline's ``encode``
returned, and decoded from that file with its ``decode``; ``bpp`` is that file's bytes × 8 /
pixels, quality is measured on the 8-bit decode with the same metrics as the learned codecs,
and the result is a :class:`~codec_lab.corelib.results.Results`, so every renderer shows them
beside learned codecs. A baseline's setting (quality, or e.g. a compression ratio) is its
declared report column.

Two ways to pick the setting: one fixed setting for every image (a point of a sweep), or per
image the highest-quality setting whose file is no larger than a byte budget (e.g. another
codec's file for that image: a comparison "at the same bpp").

Baselines are plugins (``codec_register_baselines``); get one from the registry
(``Registry.baseline(name)``). Nothing here names any.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec_lab.corelib.contracts.baseline import Baseline
from codec_lab.corelib.errors import CodecError, ConfigError
from codec_lab.corelib.images import load_image, to_uint8
from codec_lab.corelib.metrics import quality
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.corelib.progress import NullProgress, Progress
from codec_lab.corelib.results import CodecDescription, Results

__all__ = ["describe", "ensure_available", "evaluate_classical", "sweep"]


def ensure_available(baseline: Baseline) -> None:
    """Refuse a baseline whose ``unavailable()`` gives a reason (a :class:`ConfigError`)."""
    reason = baseline.unavailable()
    if reason:
        raise ConfigError(f"baseline {baseline.name!r} is not available: {reason}",
                          "run `codec plugins` to see which baselines are")  # fmt: skip


def describe(baseline: Baseline, parameters: dict[str, Any]) -> CodecDescription:
    """Description of results of ``baseline`` with ``parameters`` (how settings were chosen):
    it names the baseline (``components["baseline"]``, ``name@version``) and its library."""
    return CodecDescription(
        name=baseline.name,
        summary=f"{baseline.library()}, real files",
        components={"baseline": f"{baseline.name}@{baseline.version}"},
        parameters={"library": baseline.library(), **baseline.options(), **parameters},
        columns=(baseline.setting,),
    )


def _encode(baseline: Baseline, image: np.ndarray, setting: float) -> bytes:
    data = baseline.encode(image, setting)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"baseline {baseline.name!r}: encode returned {type(data).__name__}, not bytes",
                         "report it to the baseline plugin's author")  # fmt: skip
    return bytes(data)


def _within(baseline: Baseline, image: np.ndarray, budget: int) -> float:
    """The highest-quality setting whose file has at most ``budget`` bytes (sizes only; the
    lowest-quality setting when none fits)."""
    if baseline.larger_is_smaller:  # continuous: bisect the ratio geometrically
        lo, hi = baseline.low, baseline.high
        best = hi
        for _ in range(14):
            mid = (lo * hi) ** 0.5
            if len(_encode(baseline, image, mid)) > budget:
                lo = mid
            else:
                hi = best = mid
        return best
    lo, hi = int(baseline.low), int(baseline.high)
    best = lo
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(_encode(baseline, image, mid)) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return float(best)


def _decode(baseline: Baseline, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    rec = baseline.decode(data)
    if not (isinstance(rec, np.ndarray) and rec.dtype == np.uint8 and rec.shape == shape):
        got = f"{rec.dtype} {rec.shape}" if isinstance(rec, np.ndarray) else type(rec).__name__
        raise CodecError(f"baseline {baseline.name!r}: decode returned {got}, not uint8 {shape}",
                         "report it to the baseline plugin's author")  # fmt: skip
    return rec


def _code(baseline: Baseline, path: Path, setting: float | None, budget: int | None, file: Path,
          overwrite: bool) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """Code one image to ``file`` at ``setting``, or at the best setting within ``budget`` bytes."""
    x, notice = load_image(path)
    image = np.ascontiguousarray(to_uint8(x))
    s = setting if setting is not None else _within(baseline, image, int(budget or 0))
    t0 = time.perf_counter()
    data = _encode(baseline, image, s)
    with atomic_output(file, overwrite=overwrite) as part:
        part.write_bytes(data)
    enc_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rec = _decode(baseline, file.read_bytes(), image.shape)
    dec_s = time.perf_counter() - t1
    x_hat = torch.from_numpy(rec.copy()).permute(2, 0, 1).float().div(255.0)[None]
    h, w = x.shape[-2:]
    size = file.stat().st_size
    row = {"image": path.name, "height": h, "width": w, "bytes": size, "bpp": size * 8 / (h * w),
           **quality(x, x_hat), "enc_s": enc_s, "dec_s": dec_s, baseline.setting.key: float(s)}  # fmt: skip
    return row, notice


def evaluate_classical(
    baseline: Baseline,
    images: Sequence[Path],
    setting: float | None = None,
    max_bytes: Sequence[int] | None = None,
    keep_dir: Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Results:
    """Code every image to a real file with a baseline and measure it.

    Args:
        baseline: the baseline (an instance, e.g. ``Registry().baseline(name)``).
        images: image files.
        setting: one setting for every image (its ``setting`` column: quality, ratio, …).
        max_bytes: instead, per image, a byte budget: the highest-quality setting whose file
            fits it (the lowest-quality setting when none does — its bpp then shows it).
        keep_dir: keep the files (``NAME<suffix>``, e.g. ``a.png.jpg``) here (default: a
            temporary folder, removed afterwards).
        overwrite: replace files already in ``keep_dir``.
        progress: receives one unit per image.
    """
    ensure_available(baseline)
    if (setting is None) == (max_bytes is None):
        raise ValueError("give either setting or max_bytes")
    if max_bytes is not None and len(max_bytes) != len(images):
        raise ValueError(f"{len(max_bytes)} byte budgets for {len(images)} images")
    names = [f"{p.name}{baseline.suffix}" for p in images]
    if keep_dir is not None:
        for n in names:
            check_output(Path(keep_dir) / n, overwrite)
    chosen = setting if setting is not None else "highest quality within a byte budget per image"
    result = Results(codec=describe(baseline, {baseline.setting.key: chosen}))
    progress = progress or NullProgress()
    progress.start(f"{baseline.name} (images)", len(images))
    with tempfile.TemporaryDirectory(prefix="codec-classical-") as tmp:
        out_dir = Path(keep_dir) if keep_dir is not None else Path(tmp)
        for i, (path, name) in enumerate(zip(images, names, strict=True)):
            budget = None if max_bytes is None else max_bytes[i]
            # A temporary folder holds only our own files: replacing them is safe.
            replace = overwrite or keep_dir is None
            row, notice = _code(baseline, path, setting, budget, out_dir / name, replace)
            if notice:
                result.notices.append(notice)
            result.rows.append(row)
            progress.advance(1, bpp=row["bpp"], psnr=row["psnr"])
    progress.stop()
    return result


def sweep(
    baseline: Baseline,
    images: Sequence[Path],
    settings: Sequence[float] | None = None,
    progress: Progress | None = None,
) -> list[Results]:
    """An RD curve: one :class:`Results` per setting (default: the baseline's own ``sweep``)."""
    out = []
    for s in settings if settings is not None else baseline.sweep:
        out.append(evaluate_classical(baseline, images, setting=s, progress=progress))
    return out
