"""Tables of results: one layout, rendered to the terminal (rich) or to Markdown.

A single :class:`~codec_lab.corelib.results.Results` is laid out per image with a mean row; a
sequence of them (codecs or settings side by side) one row per codec, of its means. The columns
are the standard metrics present in the rows, each stream's bits when a codec has several
streams, and the scalars each codec *declares* (``CodecDescription.columns``, from a rate's
``report_columns``) — nothing codec-specific is known here. Every ``bpp`` is a real file's
bytes × 8 / pixels; the model's likelihood estimate is the column "est. bpp".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from codec_lab.corelib.contracts.base import ReportColumn
from codec_lab.corelib.results import Results

__all__ = ["Grid", "grid", "markdown", "markdown_table", "terminal", "terminal_table"]

_SIZE = "size"  # a derived cell: width x height, not a row key

_HEAD = (
    ReportColumn("bytes", "bytes", ",.0f", "file size"),
    ReportColumn("bpp", "bpp", ".4f", "file bytes × 8 / pixels"),
)
_TAIL = (
    ReportColumn("est_bpp", "est. bpp", ".4f", "the model's likelihood estimate (no file)"),
    ReportColumn("psnr", "PSNR", ".2f", "dB, RGB, 8-bit"),
    ReportColumn("ms-ssim", "MS-SSIM", ".4f"),
    ReportColumn("ssim", "SSIM", ".4f"),
)
_TIMES = (
    ReportColumn("enc_s", "enc s", ".3f", "seconds to write the file"),
    ReportColumn("dec_s", "dec s", ".3f", "seconds to decode the file"),
)


@dataclass
class Grid:
    """A table as text cells, before it is drawn.

    Attributes:
        headers: column labels; the first column is the row label.
        rows: cells of each row.
        footer: rows drawn after a separator (the mean).
        legend: ``label: help`` lines for the codec-declared columns.
    """

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    footer: list[list[str]] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)


def _declared(results: Sequence[Results]) -> list[ReportColumn]:
    """The codecs' declared columns, each key once, in order of appearance."""
    seen: dict[str, ReportColumn] = {}
    for r in results:
        for c in r.codec.columns:
            seen.setdefault(c.key, c)
    return list(seen.values())


def _present(cols: Sequence[ReportColumn], records: Sequence[dict[str, Any]]) -> list[ReportColumn]:
    """Standard columns that some record has (a classical codec has no estimate)."""
    return [c for c in cols if any(c.key in r for r in records)]


def _legend(cols: Sequence[ReportColumn]) -> list[str]:
    return [f"{c.label}: {c.help}" for c in cols if c.help]


def _per_image(res: Results, mean_label: str) -> Grid:
    mean = res.mean()
    records = [*res.rows, mean]
    # One stream's bits are the file's minus its header: a column only when there are several.
    streams = [ReportColumn(f"bpp_{s}", f"{s} bpp", ".4f") for s in res.codec.streams] \
        if len(res.codec.streams) > 1 else []
    declared = list(res.codec.columns)
    cols = [*_present(_HEAD, records), *streams, *_present(_TAIL, records), *declared,
            *_present(_TIMES, records)]  # fmt: skip
    sized = any("width" in r and "height" in r for r in res.rows)
    g = Grid(["image", *([_SIZE] if sized else []), *(c.label for c in cols)], legend=_legend(declared))
    for r in res.rows:
        size = [f"{r['width']}x{r['height']}"] if sized else []
        g.rows.append([str(r.get("image", "")), *size, *(_cell(r.get(c.key), c.fmt) for c in cols)])
    if mean:
        blank = [""] if sized else []
        g.footer.append([mean_label, *blank, *(_cell(mean.get(c.key), c.fmt) for c in cols)])
    return g


def _side_by_side(results: Sequence[Results], labels: Sequence[str] | None) -> Grid:
    means = [r.mean() for r in results]
    declared = _declared(results)
    cols = [*_present(_HEAD[1:], means), *_present(_TAIL, means), *declared, *_present(_TIMES, means)]
    g = Grid(["codec", *(c.label for c in cols)], legend=_legend(declared))
    names = labels if labels is not None else [r.codec.name for r in results]
    for name, r, m in zip(names, results, means, strict=True):
        # A column another codec declares is blank here, not "n/a": it does not apply.
        own = {c.key for c in r.codec.columns}
        g.rows.append([name, *("" if c in declared and c.key not in own else _cell(m.get(c.key), c.fmt)
                               for c in cols)])  # fmt: skip
    return g


def grid(
    results: Results | Sequence[Results], labels: Sequence[str] | None = None, mean_label: str = "mean"
) -> Grid:
    """Lay out results: per image with a mean row (one ``Results``) or one row per codec.

    Args:
        results: one codec's results, or several to compare.
        labels: row labels of a comparison (default: each codec's name).
        mean_label: label of the mean row of a per-image table.
    """
    if isinstance(results, Results):
        return _per_image(results, mean_label)
    return _side_by_side(list(results), labels)


def terminal(g: Grid, title: str | None = None) -> Table:
    """A rich table of a grid (numbers right-aligned; the legend as its caption)."""
    table = Table(title=title, caption="\n".join(g.legend) or None, caption_justify="left")
    for i, h in enumerate(g.headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in g.rows:
        table.add_row(*row)
    if g.footer:
        table.add_section()
        for row in g.footer:
            table.add_row(*row)
    return table


def markdown(g: Grid, legend: bool = True) -> str:
    """A Markdown table of a grid (footer rows after the others), then its legend."""
    lines = [f"| {' | '.join(g.headers)} |", "|" + "---|" * len(g.headers)]
    lines += [f"| {' | '.join(row)} |" for row in [*g.rows, *g.footer]]
    if legend and g.legend:
        lines += ["", *(f"- {line}" for line in g.legend)]
    return "\n".join(lines)


def terminal_table(
    results: Results | Sequence[Results], title: str | None = None, labels: Sequence[str] | None = None
) -> Table:
    """Results as a rich table: see :func:`grid` for the layout."""
    return terminal(grid(results, labels), title)


def markdown_table(results: Results | Sequence[Results], labels: Sequence[str] | None = None) -> str:
    """Results as Markdown (mean row in bold): see :func:`grid` for the layout."""
    return markdown(grid(results, labels, mean_label="**mean**"))
