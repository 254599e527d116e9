"""The data of a comparison: curves of rate-distortion points, measured or published.

A :class:`Point` is one :class:`~codec_lab.corelib.results.Results` (a codec at one setting
on the evaluation images) with what made it: the swept setting, the training time, the run
folder. A :class:`Curve` is the points of one strategy, baseline or published reference.
Points are saved one JSON file each (CompressAI's schema plus our keys), so a comparison
that was interrupted resumes from the points it finished.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from codec_lab.corelib.bdrate import msssim_db
from codec_lab.corelib.results import Results

__all__ = ["Curve", "CurveKind", "Point", "msssim_db"]

CurveKind = Literal["learned", "baseline", "published"]




@dataclass
class Point:
    """One RD point of a comparison.

    Attributes:
        key: stable id (the file name of its JSON).
        curve: key of the curve it belongs to.
        setting: the swept values, e.g. ``{"model.rate.keep": 0.1}`` or ``{"quality": 40}``.
        results: the measured rows (or, for a published point, the means).
        train_s: seconds of training and coder fitting (None: not trained by this comparison).
        run: the run folder that made it (learned points).
        threads: CPU threads the work ran with.
    """

    key: str
    curve: str
    setting: Mapping[str, Any]
    results: Results
    train_s: float | None = None
    run: str | None = None
    threads: int | None = None

    def mean(self) -> dict[str, float]:
        """The means of the results, plus ``ms-ssim-db`` (dB of the mean MS-SSIM)."""
        m = self.results.mean()
        if "ms-ssim" in m:
            m["ms-ssim-db"] = msssim_db(m["ms-ssim"])
        return m

    def to_json(self) -> dict[str, Any]:
        """CompressAI's schema of one point (``compressai.utils.plot`` reads it), plus ours."""
        return {**self.results.to_compressai(),
                "compare": {"key": self.key, "curve": self.curve, "setting": dict(self.setting),
                            "train_s": self.train_s, "run": self.run, "threads": self.threads}}  # fmt: skip

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Point:
        """Inverse of :meth:`to_json`."""
        meta = doc["compare"]
        return cls(key=str(meta["key"]), curve=str(meta["curve"]), setting=dict(meta["setting"]),
                   results=Results.from_compressai(doc), train_s=meta.get("train_s"),
                   run=meta.get("run"), threads=meta.get("threads"))  # fmt: skip


@dataclass
class Curve:
    """The points of one strategy, coder, baseline or published reference.

    Attributes:
        key: file-safe id.
        label: legend entry.
        kind: ``learned`` (trained and measured here), ``baseline`` (a classical codec
            measured here) or ``published`` (numbers from a paper or repository).
        points: its points (sorted by bpp when drawn).
        note: what a reader must know (e.g. that a published bpp is an estimate).
    """

    key: str
    label: str
    kind: CurveKind
    points: list[Point] = field(default_factory=list)
    note: str = ""

    def sorted_points(self) -> list[Point]:
        """Points with a bpp, by increasing bpp."""
        pts = [p for p in self.points if "bpp" in p.results.mean()]
        return sorted(pts, key=lambda p: p.results.mean()["bpp"])

    def pairs(self, metric: str) -> list[tuple[float, float]]:
        """(bpp, metric) of every point that has both (``metric``: psnr, ms-ssim, ms-ssim-db)."""
        out = []
        for p in self.sorted_points():
            m = p.mean()
            if metric in m and math.isfinite(m[metric]):
                out.append((m["bpp"], m[metric]))
        return out


def curve_results(curves: Sequence[Curve]) -> list[Results]:
    """Every point's results, curve by curve (for tables)."""
    return [p.results for c in curves for p in c.sorted_points()]
