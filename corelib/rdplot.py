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

from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.results import Results

__all__ = ["METRIC_LABELS", "Series", "plot_rd"]

METRIC_LABELS = {"psnr": "PSNR (dB)", "ms-ssim": "MS-SSIM", "ssim": "SSIM"}
"""Row key → axis label of the metrics a plot can show."""


@dataclass(frozen=True)
class Series:
    """One line of an RD plot.

    Attributes:
        label: legend entry.
        points: its RD points (plotted at their means, sorted by bpp).
        annotate: mark each point and write its codec name beside it (separately trained
            models); otherwise a plain curve (a quality sweep).
    """

    label: str
    points: Sequence[Results]
    annotate: bool = False


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
        max_bpp: right end of the bpp axis (default: matplotlib's choice).
        overwrite: replace an existing file (otherwise it is refused).
        dpi: resolution.
    """
    fig = Figure(figsize=(6 * len(metrics), 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for s in series:
            pts = sorted(((p.mean(), p.codec.name) for p in s.points), key=lambda t: t[0].get("bpp", 0.0))
            pts = [(m["bpp"], m[metric], name) for m, name in pts if "bpp" in m and metric in m]
            xs, ys = [b for b, _, _ in pts], [v for _, v, _ in pts]
            if s.annotate:
                ax.plot(xs, ys, "o--", markersize=8, label=s.label)
                for b, v, name in pts:
                    ax.annotate(name, (b, v), fontsize=6, xytext=(4, -9), textcoords="offset points")
            else:
                ax.plot(xs, ys, "-", marker=".", label=s.label)
        if max_bpp is not None:
            ax.set_xlim(0, max_bpp)
        ax.set_xlabel("bpp (real files)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    if series:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    target = Path(path)
    with atomic_output(target, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return target
