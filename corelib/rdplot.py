"""Rate-distortion plots (PNG) of results: one panel per metric, bpp of real files on x.

Drawn on matplotlib's Agg canvas directly (no pyplot), so plotting needs no display and never
changes the backend of the program that calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from codec_lab.corelib.comparison import msssim_db
from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.results import Results

__all__ = ["METRIC_LABELS", "Series", "plot_rd"]

METRIC_LABELS = {"psnr": "PSNR (dB)", "ms-ssim": "MS-SSIM", "ms-ssim-db": "MS-SSIM (dB)", "ssim": "SSIM"}
"""Row key → axis label of the metrics a plot can show."""


@dataclass(frozen=True)
class Series:
    """One line of an RD plot.

    Attributes:
        label: legend entry.
        points: its RD points (plotted at their means, sorted by bpp).
        annotate: mark each point and write its codec name beside it (separately trained
            models); otherwise a plain curve (a quality sweep).
        dashed: draw a dashed line without markers (published numbers, not measured here).
        marker: matplotlib marker of a plain curve's points.
    """

    label: str
    points: Sequence[Results]
    annotate: bool = False
    dashed: bool = False
    marker: str = "."


def _value(mean: dict[str, float], metric: str) -> float | None:
    """A metric of a point's means; ``ms-ssim-db`` is the dB of the mean MS-SSIM."""
    if metric == "ms-ssim-db":
        return msssim_db(mean["ms-ssim"]) if "ms-ssim" in mean else None
    return mean.get(metric)


def plot_rd(
    series: Sequence[Series],
    path: str | Path,
    title: str = "",
    metrics: Sequence[str] = ("psnr", "ms-ssim"),
    max_bpp: float | None = None,
    *,
    overwrite: bool = False,
    dpi: int = 110,
) -> Path:
    """Draw ``series`` into a PNG at ``path`` (written atomically) and return the path.

    Args:
        series: the lines.
        path: the PNG file.
        title: figure title.
        metrics: one panel per metric (keys of :data:`METRIC_LABELS`).
        max_bpp: right end of the bpp axis (default: matplotlib's choice); points beyond it
            do not stretch the quality axis.
        overwrite: replace an existing file (otherwise it is refused).
        dpi: resolution.
    """
    # The legend goes right of the panels: inside, it covered points (a lone learned point in
    # the lower left, where low-rate curves start). Its width follows the longest label.
    longest = max((len(s.label) for s in series), default=0)
    legend_in = min(6.0, 0.7 + 0.055 * longest) if series else 0.0
    width = 6 * len(metrics) + legend_in
    fig = Figure(figsize=(width, max(4.5, 0.2 * len(series) + 1.0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for s in series:
            pts = sorted(((p.mean(), p.codec.name) for p in s.points), key=lambda t: t[0].get("bpp", 0.0))
            pts = [(m["bpp"], v, name) for m, name in pts
                   if "bpp" in m and (v := _value(m, metric)) is not None]  # fmt: skip
            if max_bpp is not None:  # one point past the edge keeps the line running off it
                inside = sum(1 for b, _, _ in pts if b <= max_bpp)
                pts = pts[: inside + 1]
            xs, ys = [b for b, _, _ in pts], [v for _, v, _ in pts]
            if s.dashed:
                ax.plot(xs, ys, "--", linewidth=1.2, label=s.label)
            elif s.annotate:
                ax.plot(xs, ys, "o--", markersize=8, label=s.label)
                for b, v, name in pts:
                    ax.annotate(name, (b, v), fontsize=6, xytext=(4, -9), textcoords="offset points")
            else:
                ax.plot(xs, ys, "-", marker=s.marker, markersize=4 if s.marker == "." else 5, label=s.label)
        if max_bpp is not None:
            ax.set_xlim(0, max_bpp)
        ax.set_xlabel("bpp (real files)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    if series:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, (width - legend_in) / width, 1))
    target = Path(path)
    with atomic_output(target, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return target
